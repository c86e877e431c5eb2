# The held still with a camera move (motion.strength > 0, no ComfyUI): docs/MOTION.md.


rule camera_motion:
    input:
        still=at("frames/still.png"),
    output:
        video=at("motion/output.mp4"),
    log:
        at("logs/motion/output.log"),
    benchmark:
        at("benchmarks/motion/output.tsv")
    group:
        video_group
    conda:
        "envs/va.yaml"
    threads: 2
    params:
        run=RUN_DIR,
        settings=plan_settings("camera_motion"),
    script:
        "../scripts/camera_motion.py"
