# va, the VideoAudio Runner: a job (or a folder of jobs) becomes its final video.
# Run it with `va run JOB --workdir W` / `va batch DIR --out OUT`, or directly:
#   snakemake --cores 2 --directory W --config job=/abs/path/job.json
#   snakemake --cores 2 --directory OUT --config batch=/abs/path/jobs
# `va report W|OUT`: the target report_images, then `snakemake --report` (docs/OUTPUT_CONTRACT.md).


from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config/config.yaml"


report: "assets/report/workflow.rst"


include: "rules/common.smk"
include: "rules/prepare.smk"
include: "rules/frames.smk"
include: "rules/comfyui.smk"
include: "rules/motion.smk"
include: "rules/stabilize.smk"
include: "rules/lipsync.smk"
include: "rules/captions.smk"
include: "rules/encode.smk"
include: "rules/report.smk"


# Rules that only aggregate run where the workdir is, never as cluster jobs.
localrules:
    all,
    report_images,


onstart:
    stop_idle_rescheduling(workflow)
    GRAPH_RUN.started()
    CLUSTER_WATCH.start(workflow)


onsuccess:
    record_finished(success=True)


onerror:
    record_finished(success=False)


rule all:
    default_target: True
    input:
        final_videos(),


# `va report` asks for this target: the finished videos and the report's figures of them.
rule report_images:
    input:
        report_targets(),
