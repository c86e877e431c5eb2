# One Snakemake job makes every batch, one prompt after the other (a job a batch cost ~1.7 s of job
# start each). Each batch is still recorded on its own (comfyui/batches/NNNN.json, its log and events),
# and a batch a killed run finished is kept, so a resumed run submits only the missing ones.
rule comfyui_batch:
    input:
        unpack(batch_inputs),
    output:
        generated=at("comfyui/generated.json"),
    log:
        at("logs/comfyui/batches.log"),
    priority: COMFYUI_PRIORITY
    conda:
        "envs/va.yaml"
    # Light when it only talks to servers elsewhere; with a ComfyUI of its own (a profile's
    # comfyui_start), what the template declares (its bindings' resources).
    threads: comfyui_threads
    resources:
        cpus_per_task=comfyui_resource("cpus"),
        mem_mb=comfyui_resource("mem_mb"),
        gpu=comfyui_resource("gpus"),
        runtime=comfyui_resource("runtime"),
        comfyui=1,
    params:
        run=RUN_DIR,
        settings=plan_settings("comfyui_batch"),
        pool=comfyui_pool,
    script:
        "../scripts/comfyui_batch.py"


rule assemble_visual:
    input:
        unpack(assemble_inputs),
    output:
        video=at("comfyui/output.mp4"),
    log:
        at("logs/comfyui/output.log"),
    benchmark:
        at("benchmarks/comfyui/output.tsv")
    conda:
        "envs/va.yaml"
    # One of this machine's cores: ffmpeg uses every core whatever Snakemake counts, and two counted
    # kept the other videos' jobs from running beside this one's Python and probes (one core busy).
    threads: 1
    resources:
        cpus_per_task=2,
    params:
        run=RUN_DIR,
        settings=plan_settings("assemble_visual"),
    script:
        "../scripts/assemble_visual.py"


# A template that generates segments (docs/COMFYUI_INTERFACE.md, Segments): one job a segment, each with
# its own clip, so a killed run and a retake make only what is missing or changed; a chained template's
# segment takes the clip before it as an input (and waits for it), other segments run side by side.
rule comfyui_segment:
    input:
        unpack(segment_inputs),
    output:
        clip=at("comfyui/segments/{segment}.mp4"),
        record=at("comfyui/segments/{segment}.json"),
    log:
        at("logs/comfyui/segments/{segment}.log"),
    priority: COMFYUI_PRIORITY
    conda:
        "envs/va.yaml"
    threads: comfyui_threads
    resources:
        comfyui=1,
    params:
        run=RUN_DIR,
        settings=plan_settings("comfyui_segment"),
        pool=comfyui_pool,
    script:
        "../scripts/comfyui_segment.py"
