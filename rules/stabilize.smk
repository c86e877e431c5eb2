# ComfyUI's picture stabilized (stabilize.enable, stabilize.method): docs/STABILIZE.md.


rule stabilize:
    input:
        video=at("comfyui/output.mp4"),
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
        run=RUN_DIR,
        settings=plan_settings("stabilize"),
    script:
        "../scripts/stabilize.py"
