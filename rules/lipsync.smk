rule lipsync:
    input:
        unpack(lipsync_inputs),
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
