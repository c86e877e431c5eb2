rule lipsync:
    input:
        still="frames/still.png",
        audio="prepare/padded.wav",
        plan="prepare/plan.json",
    output:
        video="lipsync/output.mp4",
    log:
        "logs/lipsync/output.log",
    benchmark:
        "benchmarks/lipsync/output.tsv"
    conda:
        "envs/va.yaml"
    params:
        job=str(JOB.path),
    script:
        "../scripts/lipsync.py"
