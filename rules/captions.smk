# The job's captions (timeline, timeline_file) beside the final video: docs/TIMELINE.md.


rule captions:
    input:
        plan=at("prepare/plan.json"),
    output:
        srt=at("captions.srt"),
        vtt=at("captions.vtt"),
    log:
        at("logs/captions.log"),
    conda:
        "envs/va.yaml"
    params:
        job=job_file,
        run=run_dir,
        settings=captions_settings,
    script:
        "../scripts/captions.py"
