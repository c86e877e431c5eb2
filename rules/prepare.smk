checkpoint prepare_audio:
    input:
        audio=job_audio,
        start=job_start,
    output:
        padded=at("prepare/padded.wav"),
        plan=at("prepare/plan.json"),
    log:
        at("logs/prepare/padded.log"),
    benchmark:
        at("benchmarks/prepare/padded.tsv")
    conda:
        "envs/va.yaml"
    params:
        job=job_file,
        run=run_dir,
    script:
        "../scripts/prepare_audio.py"
