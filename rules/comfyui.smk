rule comfyui_batch:
    input:
        still=at("frames/still.png"),
        plan=at("prepare/plan.json"),
    output:
        result=at("comfyui/batches/{batch}.json"),
    log:
        at("logs/comfyui/batches/{batch}.log"),
    conda:
        "envs/va.yaml"
    resources:
        comfyui=1,
    params:
        job=job_file,
        run=run_dir,
    script:
        "../scripts/comfyui_batch.py"


rule assemble_visual:
    input:
        batches=comfyui_batches,
        plan=at("prepare/plan.json"),
    output:
        video=at("comfyui/output.mp4"),
    log:
        at("logs/comfyui/output.log"),
    benchmark:
        at("benchmarks/comfyui/output.tsv")
    conda:
        "envs/va.yaml"
    threads: 2
    params:
        job=job_file,
        run=run_dir,
    script:
        "../scripts/assemble_visual.py"
