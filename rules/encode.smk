rule encode:
    input:
        still="frames/still.png",
        audio="prepare/padded.wav",
        plan="prepare/plan.json",
    output:
        final=final_video(),
    log:
        f"logs/{final_video()}.log",
    benchmark:
        f"benchmarks/{final_video()}.tsv"
    params:
        job=str(JOB.path),
    threads: 2
    script:
        "../scripts/encode.py"
