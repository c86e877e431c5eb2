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
        run=run_dir,
        settings=plan_settings("lipsync"),
    script:
        "../scripts/lipsync.py"
