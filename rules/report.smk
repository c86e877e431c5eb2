# The figures of `va report` (snakemake --report), made from a finished video. A run does not build them;
# `va report` asks for them through the target rule report_images.


rule report_contact_sheet:
    input:
        video=final_video,
    output:
        sheet=report(
            at("report/contact_sheet.png"),
            caption="../assets/report/contact_sheet.rst",
            category="Contact sheet",
            labels=report_labels("contact sheet"),
        ),
    log:
        at("logs/report/contact_sheet.log"),
    benchmark:
        at("benchmarks/report/contact_sheet.tsv")
    conda:
        "envs/va.yaml"
    script:
        "../scripts/report_contact_sheet.py"


# Drawn from the final video's audio (the padded voice, encoded once), which a cleanup keeps: the report
# of a cleaned run (va clean removes prepare/padded.wav) is drawn too.
rule report_waveform:
    input:
        audio=final_video,
    output:
        waveform=report(
            at("report/waveform.png"),
            caption="../assets/report/waveform.rst",
            category="Waveform",
            labels=report_labels("waveform"),
        ),
    log:
        at("logs/report/waveform.log"),
    benchmark:
        at("benchmarks/report/waveform.tsv")
    conda:
        "envs/va.yaml"
    script:
        "../scripts/report_waveform.py"


# Drawn from the sync check's track (the mouth's opening and the voice's loudness, a value a frame) and
# its verdict, when the lip-sync stage measured them.
rule report_sync:
    input:
        track=at(SYNC_TRACK),
        result=at("lipsync/result.json"),
    output:
        figure=report(
            at("report/sync.png"),
            caption="../assets/report/sync.rst",
            category="Lip sync",
            labels=report_labels("lip sync"),
        ),
    log:
        at("logs/report/sync.log"),
    benchmark:
        at("benchmarks/report/sync.tsv")
    conda:
        "envs/va.yaml"
    script:
        "../scripts/report_sync.py"
