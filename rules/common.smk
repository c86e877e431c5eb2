# Shared state of the graph: the validated job, the workdir, and the functions rules use.
from pathlib import Path

from snakemake.utils import validate

from va.graph import check_supported
from va.job import load_job
from va.lipsync.stage import active_provider
from va.tracking import record_run_finished, record_run_started
from va.workdir import Workdir

validate(config, "../config/config.schema.yaml")

JOB = load_job(Path(config["job"]))
check_supported(JOB)
WORKDIR = Workdir(Path.cwd())


def final_video():
    """The finished video, the graph's target."""
    return JOB.basename


def encode_inputs(wildcards):
    """What the encode rule reads: the still, or the lip-sync stage's video when that stage runs."""
    inputs = {
        "still": "frames/still.png",
        "audio": "prepare/padded.wav",
        "plan": "prepare/plan.json",
    }
    if active_provider(JOB) is not None:
        inputs["video"] = "lipsync/output.mp4"
    return inputs
