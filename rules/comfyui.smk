# One Snakemake job makes every batch, one prompt after the other (a job a batch cost ~1.7 s of job
# start each). Each batch is still recorded on its own (comfyui/batches/NNNN.json, its log and events),
# and a batch a killed run finished is kept, so a resumed run submits only the missing ones.
rule comfyui_batch:
    input:
        still=ancient(at("frames/still.png")),
    output:
        generated=at("comfyui/generated.json"),
    log:
        at("logs/comfyui/batches.log"),
    conda:
        "envs/va.yaml"
    resources:
        comfyui=1,
    params:
        run=RUN_DIR,
        settings=plan_settings("comfyui_batch"),
        pool=comfyui_pool,
    script:
        "../scripts/comfyui_batch.py"


rule assemble_visual:
    input:
        generated=at("comfyui/generated.json"),
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
        run=RUN_DIR,
        settings=plan_settings("assemble_visual"),
    script:
        "../scripts/assemble_visual.py"
