rule hold_start_frame:
    input:
        start=job_start,
    output:
        still=at("frames/still.png"),
        loop=at("frames/still.mp4"),
    log:
        at("logs/frames/still.log"),
    benchmark:
        at("benchmarks/frames/still.tsv")
    conda:
        "envs/va.yaml"
    params:
        run=run_dir,
        settings=plan_settings("hold_start_frame"),
    script:
        "../scripts/hold_start_frame.py"
