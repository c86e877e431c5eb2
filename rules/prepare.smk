# The plan is made while the graph is built (va.plan.plan_job, the planner `va validate` runs too) and
# written to prepare/plan.json when the run starts (record_started). Rules read it there; it is no
# rule's input, because a rerun of its writer would rerun every rule. Each rule's params carry the
# slice of the plan it depends on instead, so an edited job reruns what the edit affects.
rule prepare_audio:
    input:
        audio=job_audio,
    output:
        padded=at("prepare/padded.wav"),
        aac=at("prepare/padded.m4a"),
    log:
        at("logs/prepare/padded.log"),
    benchmark:
        at("benchmarks/prepare/padded.tsv")
    priority: audio_priority
    group:
        video_group
    conda:
        "envs/va.yaml"
    params:
        run=RUN_DIR,
        settings=plan_settings("prepare_audio"),
    script:
        "../scripts/prepare_audio.py"
