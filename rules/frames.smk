rule hold_start_frame:
    input:
        start=str(JOB.start),
    output:
        still="frames/still.png",
    log:
        "logs/frames/still.log",
    benchmark:
        "benchmarks/frames/still.tsv"
    conda:
        "envs/va.yaml"
    params:
        job=str(JOB.path),
    script:
        "../scripts/hold_start_frame.py"
