checkpoint prepare_audio:
    input:
        audio=str(JOB.audio),
        start=str(JOB.start),
    output:
        padded="prepare/padded.wav",
        plan="prepare/plan.json",
    log:
        "logs/prepare/padded.log",
    benchmark:
        "benchmarks/prepare/padded.tsv"
    conda:
        "envs/va.yaml"
    params:
        job=str(JOB.path),
    script:
        "../scripts/prepare_audio.py"
