# Shared state of the graph: the validated job, the workdir, and the functions rules use.
from pathlib import Path

from snakemake.utils import validate

from va.graph import check_supported
from va.job import load_job
from va.atomic import read_json
from va.comfyui.stage import comfyui_active
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


def visual_video():
    """The visual stage's video, when there is one (ComfyUI); the held still needs none."""
    return ["comfyui/output.mp4"] if comfyui_active(JOB) else []


def comfyui_batches(wildcards):
    """Every batch of the ComfyUI stage; their number comes from the plan, so it is known only after
    prepare_audio (a checkpoint) has run."""
    plan = read_json(Path(checkpoints.prepare_audio.get().output.plan))
    return [
        f"comfyui/batches/{batch['name']}.json" for batch in plan["comfyui"]["batches"]
    ]


def lipsync_inputs(wildcards):
    """Inputs of lipsync: the still, the padded audio, the plan, and the visual video."""
    inputs = {
        "still": "frames/still.png",
        "audio": "prepare/padded.wav",
        "plan": "prepare/plan.json",
    }
    inputs.update({"visual": path for path in visual_video()})
    return inputs


def encode_inputs(wildcards):
    """Inputs of encode: the still, and the video of the lip-sync or the visual stage."""
    inputs = {
        "still": "frames/still.png",
        "audio": "prepare/padded.wav",
        "plan": "prepare/plan.json",
    }
    if active_provider(JOB) is not None:
        inputs["video"] = "lipsync/output.mp4"
    elif comfyui_active(JOB):
        inputs["video"] = "comfyui/output.mp4"
    return inputs
