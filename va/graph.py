"""Which rules a job's graph has, which phase each belongs to, and why a phase is skipped.

The Snakefile and the manifest both read this, so the graph and its description cannot drift apart.
Like every core module it knows the stages only by their settings (workflow templates, provider
configs), never by their executors: importing it loads no HTTP or websocket client.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, TypeVar

from va.plan_parts import Stages, Visual
from va.workdir import Workdir

if TYPE_CHECKING:
    from va.job import Job

WildcardsFunction = TypeVar("WildcardsFunction", bound=Callable[..., object])


def of_wildcards(func: WildcardsFunction) -> WildcardsFunction:
    """Mark a function of a rule's wildcards (an input, params, group or resources function in the
    rules). Snakemake reads such a function's signature at every call (inspect.signature: for a batch of
    1,000 held stills 21,000 times, about a tenth of its dry run); it reads the signature stored here,
    once a function, instead."""
    from snakemake.common import overwrite_function_params  # noqa: PLC0415 - only the Snakefile needs it

    overwrite_function_params(func, inspect.signature(func).parameters)
    return func


PHASES = ("prepare", "comfyui", "motion", "stabilize", "lipsync", "encode")

#: Rule name -> phase it reports to.
RULE_PHASE = {
    "prepare_audio": "prepare",
    "hold_start_frame": "prepare",
    "comfyui_batch": "comfyui",
    "comfyui_segment": "comfyui",
    "assemble_visual": "comfyui",
    "camera_motion": "motion",
    "stabilize": "stabilize",
    "lipsync_chunk": "lipsync",
    "lipsync": "lipsync",
    "captions": "encode",
    "encode": "encode",
}


def rule_outputs(workdir: Workdir, basename: str, rule: str, target: str | None = None) -> list[str]:
    """Outputs of one rule (of one batch for ``comfyui_batch``, of one chunk for ``lipsync_chunk``),
    relative to the workdir: the same paths the rule files declare."""
    # Only the asked rule's paths are made: the manifest asks for every rule at every event.
    paths: list[Path]
    match rule:
        case "prepare_audio":
            paths = [workdir.padded_audio, workdir.padded_aac]
        case "hold_start_frame":
            paths = [workdir.still, workdir.still_loop]
        case "comfyui_batch":
            paths = [workdir.batch_result(target or "")]
        case "comfyui_segment":
            paths = [workdir.segment_clip(target or ""), workdir.segment_record(target or "")]
        case "assemble_visual":
            paths = [workdir.comfyui_visual]
        case "camera_motion":
            paths = [workdir.motion_visual]
        case "stabilize":
            paths = [workdir.stabilized_visual]
        case "lipsync_chunk":
            paths = [workdir.lipsync_chunk(target or "")]
        case "lipsync":
            paths = [workdir.lipsync_output]
        case "captions":
            paths = [workdir.captions_srt, workdir.captions_vtt]
        case "encode":
            paths = [workdir.final(basename)]
        case _:
            raise KeyError(rule)
    return [str(path.relative_to(workdir.root)) for path in paths]


class GraphDescription(TypedDict):
    """The phases of a job's graph: its final video, the rules of each phase, why a phase is skipped."""

    final: str
    rules: dict[str, list[str]]
    skipped: dict[str, str]


def describe(job: Job, stages: Stages | None = None) -> GraphDescription:
    """The phases of ``job``'s graph (of its planned ``stages``, else those its settings give): the rules
    of each, and the reason of each skipped phase."""
    if stages is None:
        # The planner, only for a job not planned yet: a rule that records its step loads none of it.
        from va.plan import plan_stages  # noqa: PLC0415

        stages = plan_stages(job)
    skipped: dict[str, str] = {}
    generated = stages.visual.generated
    if not generated:
        skipped["comfyui"] = "comfyui.workflow_ids is empty: the start frame is held for every frame"
    if generated:
        skipped["motion"] = "the picture comes from ComfyUI (motion.strength goes to its motion_strength)"
    elif stages.visual is not Visual.CAMERA_MOVE:
        skipped["motion"] = "motion.strength is 0: the start frame is held still"
    if not generated:
        skipped["stabilize"] = "the picture is a held still: nothing to stabilize"
    elif not stages.stabilize:
        skipped["stabilize"] = "stabilize.enable is false"
    if not job.lipsync.enable:
        skipped["lipsync"] = "lipsync.enable is false"
    elif stages.lipsync is None:
        skipped["lipsync"] = "no lip-sync provider configured for the job (lipsync.provider)"
    # The captions rule is in the graph only for a job with captions; ComfyUI's frames come in batches or,
    # from a template that generates segments, in segments.
    absent = set() if stages.captions != "none" else {"captions"}
    absent.add("comfyui_batch" if stages.visual is Visual.COMFYUI_SEGMENTS else "comfyui_segment")
    rules = {
        phase: [rule for rule, owner in RULE_PHASE.items() if owner == phase and rule not in absent]
        for phase in PHASES
    }
    return GraphDescription(final=job.basename, rules=rules, skipped=skipped)
