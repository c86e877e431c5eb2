rule lipsync:
    input:
        unpack(lipsync_inputs),
    output:
        video=at("lipsync/output.mp4"),
    log:
        at("logs/lipsync/output.log"),
    benchmark:
        at("benchmarks/lipsync/output.tsv")
    conda:
        "envs/va.yaml"
    params:
        job=job_file,
        run=run_dir,
    script:
        "../scripts/lipsync.py"
