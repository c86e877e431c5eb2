# The held still with a camera move (motion.strength > 0, no ComfyUI): docs/MOTION.md.


rule camera_motion:
    input:
        still=at("frames/still.png"),
        plan=at("prepare/plan.json"),
    output:
        video=at("motion/output.mp4"),
    log:
        at("logs/motion/output.log"),
    benchmark:
        at("benchmarks/motion/output.tsv")
    conda:
        "envs/va.yaml"
    threads: 2
    params:
        job=job_file,
        run=run_dir,
        settings=motion_settings,
    script:
        "../scripts/camera_motion.py"
