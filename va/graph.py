"""Which rules a job's graph has, which phase each belongs to, and why a phase is skipped.

The Snakefile and the manifest both read this, so the graph and its description cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from va.errors import ExitCode, VaError
from va.job import Job
from va.lipsync.providers import get_provider
from va.lipsync.stage import active_provider
from va.workdir import Workdir

PHASES = ("prepare", "comfyui", "lipsync", "encode")

#: Rule name -> phase it reports to.
RULE_PHASE = {
    "prepare_audio": "prepare",
    "hold_start_frame": "prepare",
    "lipsync": "lipsync",
    "encode": "encode",
}


def rule_outputs(workdir: Workdir, basename: str) -> dict[str, list[str]]:
    """Outputs of each rule, relative to the workdir (the same paths the rule files declare)."""
    root = workdir.root
    return {
        "prepare_audio": [
            str(workdir.padded_audio.relative_to(root)),
            str(workdir.plan.relative_to(root)),
        ],
        "hold_start_frame": [str(workdir.still.relative_to(root))],
        "lipsync": [str(workdir.lipsync_output.relative_to(root))],
        "encode": [basename],
    }


def check_supported(job: Job) -> None:
    """Refuse, with the field named, what a job asks for that this version cannot yet do."""
    if job.data["comfyui"]["workflow_ids"]:
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            "comfyui.workflow_ids: the ComfyUI stage is not available in this version; "
            "leave the list empty to hold the start frame",
        )
    provider = active_provider(job)
    if provider is not None:
        get_provider(provider)


def describe(job: Job) -> dict[str, Any]:
    """The phases of ``job``'s graph: the rules of each, and the reason of each skipped phase."""
    skipped = {
        "comfyui": "comfyui.workflow_ids is empty: the start frame is held for every frame",
    }
    lipsync = job.data["lipsync"]
    if not lipsync["enable"]:
        skipped["lipsync"] = "lipsync.enable is false"
    elif active_provider(job) is None:
        skipped["lipsync"] = "no lip-sync provider configured for the job (lipsync.provider)"
    rules = {phase: [rule for rule, owner in RULE_PHASE.items() if owner == phase] for phase in PHASES}
    return {"final": job.basename, "rules": rules, "skipped": skipped}
