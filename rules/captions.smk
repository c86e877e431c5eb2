# The job's captions (timeline, timeline_file) beside the final video: docs/TIMELINE.md.


rule captions:
    output:
        srt=at("captions.srt"),
        vtt=at("captions.vtt"),
    log:
        at("logs/captions.log"),
    conda:
        "envs/va.yaml"
    params:
        run=RUN_DIR,
        settings=plan_settings("captions"),
    script:
        "../scripts/captions.py"
