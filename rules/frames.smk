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
    priority: COMFYUI_INPUT_PRIORITY
    group:
        video_group
    conda:
        "envs/va.yaml"
    params:
        run=RUN_DIR,
        settings=plan_settings("hold_start_frame"),
    script:
        "../scripts/hold_start_frame.py"
