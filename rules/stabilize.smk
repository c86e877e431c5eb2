# ComfyUI's picture stabilized (stabilize.enable, stabilize.method): docs/STABILIZE.md.


rule stabilize:
    input:
        video=at("comfyui/output.mp4"),
        plan=at("prepare/plan.json"),
    output:
        video=at("stabilize/output.mp4"),
    log:
        at("logs/stabilize/output.log"),
    benchmark:
        at("benchmarks/stabilize/output.tsv")
    conda:
        "envs/va.yaml"
    threads: 2
    params:
        job=job_file,
        run=run_dir,
        settings=stabilize_settings,
    script:
        "../scripts/stabilize.py"
