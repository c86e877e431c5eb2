"""``va produce``: a job document from command-line flags, written to ``W/job.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from va.atomic import write_text_atomic
from va.errors import ExitCode, VaError
from va.job import validate_document
from va.workdir import Workdir

PRODUCE_BASENAME = "fertig.mp4"
DEFAULT_WORKFLOW_ID = "vidax_text2img_frames"


@dataclass(frozen=True)
class ProduceRequest:
    """The flags of ``va produce``."""

    audio: Path
    start: Path
    prompt: str
    negative: str = ""
    pre_seconds: float = 0.0
    post_seconds: float = 0.0
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    seed: int | None = None
    lipsync: str | None = None
    lipsync_provider: str | None = None
    comfyui: bool = True
    cleanup: str | None = None
    motion_strength: float | None = None
    camera: str | None = None
    stabilize: str | None = None
    timeline_file: Path | None = None
    captions: str | None = None
    loudness: float | None = None


def build_job(request: ProduceRequest) -> dict[str, Any]:
    """The job document the flags describe, validated, defaults filled in."""
    if (request.width is None) != (request.height is None):
        raise VaError(ExitCode.VALIDATION_FAILED, "--width and --height go together")
    if request.lipsync == "on" and not request.lipsync_provider:
        raise VaError(ExitCode.VALIDATION_FAILED, "--lipsync on needs --lipsync_provider ID")
    determinism: dict[str, Any] = {"seed_policy": "random" if request.seed is None else "fixed"}
    if request.seed is not None:
        determinism["seed"] = request.seed
    if request.fps is not None:
        determinism["fps"] = request.fps
    size = {} if request.width is None else {"width": request.width, "height": request.height}
    lipsync: dict[str, Any] = {"enable": request.lipsync != "off"}
    if request.lipsync_provider:
        lipsync["provider"] = request.lipsync_provider
    document: dict[str, Any] = {
        "schema_version": 1,
        "input": {"audio": str(request.audio.absolute()), "start": str(request.start.absolute())},
        "motion": {"prompt": request.prompt, "negative_prompt": request.negative},
        "buffer": {"pre_seconds": request.pre_seconds, "post_seconds": request.post_seconds},
        "determinism": determinism,
        "comfyui": {"workflow_ids": [DEFAULT_WORKFLOW_ID] if request.comfyui else [], "params": dict(size)},
        "lipsync": lipsync,
        "output": {"basename": PRODUCE_BASENAME, **size},
    }
    if request.motion_strength is not None:
        document["motion"]["strength"] = request.motion_strength
    if request.camera is not None:
        document["motion"]["camera"] = request.camera
    if request.timeline_file is not None:
        document["timeline_file"] = str(request.timeline_file.absolute())
    if request.captions is not None:
        document["output"]["captions"] = request.captions
    if request.stabilize is not None:
        document["stabilize"] = {"enable": True, "method": request.stabilize}
    if request.cleanup is not None:
        document["cleanup"] = {"after_success": request.cleanup}
    if request.loudness is not None:
        document["audio"] = {"loudness": {"target_lufs": request.loudness}}
    return validate_document(document, "produce flags")


def write_produced_job(workdir: Workdir, document: dict[str, Any], resume: bool) -> Path:
    """Write ``W/job.json``; never over a different file (a user's, or another run's flags)."""
    text = json.dumps(document, indent=2) + "\n"
    path = workdir.produced_job
    if path.exists():
        if path.read_text(encoding="utf-8") == text:
            return path
        reason = "differs from these flags" if resume else "exists"
        code = ExitCode.RESUME_NOT_POSSIBLE if resume else ExitCode.OUTPUT_EXISTS
        raise VaError(code, f"{path} {reason}; not overwriting it (choose another --workdir)")
    write_text_atomic(path, text)
    return path
