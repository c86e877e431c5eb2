# The lip-sync provider runs once on the whole padded audio, or, when the plan cuts it into chunks (the
# provider's input.max_seconds, the job's lipsync.chunk_seconds), once a chunk: each chunk is a job of its
# own with its own output, so a resumed run makes only the missing ones and a cluster runs them side by
# side; `lipsync` then joins them frame-exactly.
rule lipsync_chunk:
    input:
        unpack(lipsync_chunk_inputs),
    output:
        video=at("lipsync/chunks/{chunk}.mp4"),
    log:
        at("logs/lipsync/chunks/{chunk}.log"),
    benchmark:
        at("benchmarks/lipsync/chunks/{chunk}.tsv")
    group:
        video_group
    conda:
        "envs/va.yaml"
    # What the provider declares (lipsync.providers.json), and one lip-sync slot: the default profile
    # has one, so a single GPU runs one chunk at a time; a cluster runs them side by side.
    resources:
        cpus_per_task=lipsync_resource("cpus"),
        mem_mb=lipsync_resource("mem_mb"),
        gpu=lipsync_resource("gpus"),
        runtime=lipsync_resource("runtime"),
        lipsync=1,
    params:
        run=RUN_DIR,
        settings=plan_settings("lipsync_chunk"),
    script:
        "../scripts/lipsync.py"


rule lipsync:
    input:
        unpack(lipsync_inputs),
    output:
        video=at("lipsync/output.mp4"),
    log:
        at("logs/lipsync/output.log"),
    benchmark:
        at("benchmarks/lipsync/output.tsv")
    group:
        video_group
    conda:
        "envs/va.yaml"
    # What the provider declares (lipsync.providers.json), or what the join of a cut audio's chunks
    # takes; one lip-sync slot, as a chunk.
    resources:
        cpus_per_task=lipsync_resource("cpus", joins=True),
        mem_mb=lipsync_resource("mem_mb", joins=True),
        gpu=lipsync_resource("gpus", joins=True),
        runtime=lipsync_resource("runtime", joins=True),
        lipsync=1,
    params:
        run=RUN_DIR,
        settings=plan_settings("lipsync"),
    script:
        "../scripts/lipsync.py"
