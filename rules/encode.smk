rule encode:
    input:
        unpack(encode_inputs),
    output:
        final=final_video(),
    log:
        f"logs/{final_video()}.log",
    benchmark:
        f"benchmarks/{final_video()}.tsv"
    conda:
        "envs/va.yaml"
    threads: 2
    params:
        job=str(JOB.path),
    script:
        "../scripts/encode.py"
