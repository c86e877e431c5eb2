"""``va retake``: make one segment of a run again (and, in a chain, the ones after it), then the final.

The segment covering a moment of the video gets a new take: a seed of its own (or the one asked for) and,
when asked, another prompt, recorded in ``comfyui/retakes.json``, which the plan reads. The run then
resumes: Snakemake remakes the segment whose settings changed and, when the template is chained, each
segment after it (their input, the clip before, is new), then joins and encodes again. The previous
final is first renamed, never overwritten: nothing a run made is lost.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from va.atomic import write_text_atomic
from va.errors import ExitCode, VaError
from va.manifest import build_manifest
from va.plan import Plan, load_plan
from va.segments import Retake, VoiceSegment, read_retakes, segment_at
from va.workdir import Workdir


@dataclass(frozen=True, slots=True)
class RetakeRequest:
    """What ``va retake`` was asked: the moment (seconds of the video) and, optionally, a seed and a
    prompt for the new take."""

    seconds: float
    seed: int | None = None
    prompt: str | None = None


@dataclass(frozen=True, slots=True)
class RetakePrepared:
    """A retake recorded: the segment, its take, the job to run again, and where the previous final is."""

    segment: VoiceSegment
    take: int
    job: Path
    kept_final: Path | None


def planned_segments(workdir: Workdir) -> tuple[Plan, tuple[VoiceSegment, ...]]:
    """The run's plan and its segments; a run without segments cannot be retaken (exit 2)."""
    if not workdir.plan.is_file():
        raise VaError(ExitCode.USAGE, f"va retake: no run planned in {workdir.root} (no prepare/plan.json)")
    plan = load_plan(workdir.plan)
    if plan.comfyui is None or not plan.comfyui.segments:
        raise VaError(
            ExitCode.USAGE,
            f"va retake: the run in {workdir.root} has no segments (its template does not generate them)",
        )
    return plan, plan.comfyui.segments


def kept_name(final: Path) -> Path:
    """A free name for the previous final beside it: ``final.before-retake-N.mp4``."""
    number = 1
    while (kept := final.with_name(f"{final.stem}.before-retake-{number}{final.suffix}")).exists():
        number += 1
    return kept


def prepare_retake(workdir: Workdir, request: RetakeRequest) -> RetakePrepared:
    """Record the retake of the segment at ``request.seconds`` and move the previous final aside; the
    caller then resumes the run. A moment outside the video is a usage error (exit 2)."""
    plan, segments = planned_segments(workdir)
    duration = plan.target_frames / plan.fps
    segment = segment_at(segments, request.seconds) if 0 <= request.seconds < duration else None
    if segment is None:
        raise VaError(
            ExitCode.USAGE,
            f"va retake: --at {request.seconds:g} is outside the video (0 to {duration:.3f} s)",
        )
    manifest = build_manifest(workdir)
    if manifest is None:
        raise VaError(ExitCode.USAGE, f"va retake: no run recorded in {workdir.root}")
    if manifest["run_status"] == "running":
        raise VaError(ExitCode.RUN_NOT_FINISHED, f"va retake: the run in {workdir.root} is still running")
    retakes = read_retakes(workdir.retakes)
    before = retakes.get(segment.name)
    take = (before.take if before else 0) + 1
    # A prompt asked for once stays with the segment's later takes, until another is asked for.
    prompt = request.prompt if request.prompt is not None else (before.prompt if before else None)
    retakes[segment.name] = Retake(take=take, seed=request.seed, prompt=prompt)
    document = {name: dataclasses.asdict(retake) for name, retake in sorted(retakes.items())}
    write_text_atomic(workdir.retakes, json.dumps(document, indent=2) + "\n")
    final = workdir.root / str(manifest["final"]["path"])
    kept = None
    if final.exists():
        kept = kept_name(final)
        final.rename(kept)
    return RetakePrepared(segment, take, Path(plan.job), kept)
