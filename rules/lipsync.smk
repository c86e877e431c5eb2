rule lipsync:
    input:
        unpack(lipsync_inputs),
    output:
        video=at("lipsync/output.mp4"),
    log:
        at("logs/lipsync/output.log"),
    benchmark:
        at("benchmarks/lipsync/output.tsv")
    conda:
        "envs/va.yaml"
    # What the provider declares (lipsync.providers.json): a cluster job asks for exactly that.
    resources:
        cpus_per_task=lipsync_resource("cpus"),
        mem_mb=lipsync_resource("mem_mb"),
        gpu=lipsync_resource("gpus"),
        runtime=lipsync_resource("runtime"),
    params:
        run=run_dir,
        settings=plan_settings("lipsync"),
    script:
        "../scripts/lipsync.py"
