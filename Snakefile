# va, the VideoAudio Runner: a job becomes its final video.
# Run it with `va run JOB --workdir W`, or directly:
#   snakemake --cores 2 --directory W --config job=/abs/path/job.json


from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config/config.yaml"


include: "rules/common.smk"
include: "rules/prepare.smk"
include: "rules/frames.smk"
include: "rules/comfyui.smk"
include: "rules/lipsync.smk"
include: "rules/encode.smk"


onstart:
    record_run_started(WORKDIR, JOB)


onsuccess:
    record_run_finished(WORKDIR)


onerror:
    record_run_finished(WORKDIR, from_rules=True)


rule all:
    default_target: True
    input:
        final_video(),
