rule comfyui_batch:
    input:
        still="frames/still.png",
        plan="prepare/plan.json",
    output:
        result="comfyui/batches/{batch}.json",
    log:
        "logs/comfyui/batches/{batch}.log",
    conda:
        "envs/va.yaml"
    resources:
        comfyui=1,
    params:
        job=str(JOB.path),
    script:
        "../scripts/comfyui_batch.py"


rule assemble_visual:
    input:
        batches=comfyui_batches,
        plan="prepare/plan.json",
    output:
        video="comfyui/output.mp4",
    log:
        "logs/comfyui/visual.log",
    benchmark:
        "benchmarks/comfyui/visual.tsv"
    conda:
        "envs/va.yaml"
    threads: 2
    params:
        job=str(JOB.path),
    script:
        "../scripts/assemble_visual.py"
