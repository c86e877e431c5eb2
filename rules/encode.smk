rule encode:
    input:
        unpack(encode_inputs),
    output:
        final=report(
            final_named("{final}"),
            caption="../assets/report/final.rst",
            category="Final video",
            labels=report_labels("final video"),
        ),
    log:
        final_named("logs/{final}.log"),
    benchmark:
        final_named("benchmarks/{final}.tsv")
    group:
        video_group
    conda:
        "envs/va.yaml"
    # One core counted, as for assemble_visual: ffmpeg takes every core anyway; a cluster job asks for
    # cpus_per_task.
    threads: 1
    resources:
        cpus_per_task=encode_cpus,
    params:
        run=RUN_DIR,
        settings=plan_settings("encode"),
    script:
        "../scripts/encode.py"
