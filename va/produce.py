"""``va produce``: a job document from command-line flags, written to ``W/job.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from annotated_types import Ge, Le, MaxLen, MinLen

from va.atomic import write_text_atomic
from va.errors import ExitCode, VaError
from va.job import validate_document
from va.records import JsonObject, forbid_extra
from va.workdir import Workdir

PRODUCE_BASENAME = "fertig.mp4"
DEFAULT_WORKFLOW_ID = "vidax_text2img_frames"

#: The longest path and prompt VIDAX takes.
PATH_CHARS, PROMPT_CHARS = 4096, 10000


@dataclass(frozen=True)
class Flag:
    """How a field of ``ProduceRequest`` is given on the command line: its help, the name of its value,
    and its spelling when not ``--`` and the field's name with ``_`` written ``-`` (``names``), and
    with ``aliases`` the spellings the docs promised before."""

    help: str
    metavar: str | None = None
    names: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    #: A path on the command line (an empty one is refused there).
    path: bool = False


Path_ = Annotated[str, MinLen(1), MaxLen(PATH_CHARS)]
Prompt = Annotated[str, MaxLen(PROMPT_CHARS)]
Buffer = Annotated[float, Ge(0), Le(3600)]
Side = Annotated[int, Ge(16), Le(8192)]


@forbid_extra
@dataclass(frozen=True)
class ProduceRequest:
    """What ``va produce`` takes, one field a flag (va/cli.py makes the flags from these fields) and the
    body of VIDAX's ``POST /produce`` (pydantic validates it with these limits; on the command line the
    job's schema checks the values, its messages naming the job's fields). One spelling per field."""

    audio: Annotated[Path_, Flag("voice track", path=True)]
    start: Annotated[Path_, Flag("start image or video", path=True)]
    prompt: Annotated[Prompt, Flag("motion prompt")]
    neg: Annotated[Prompt, Flag("negative prompt")] = ""
    pre: Annotated[Buffer, Flag("seconds of silence before", "S")] = 0.0
    post: Annotated[Buffer, Flag("seconds of silence after", "S")] = 0.0
    width: Annotated[Side | None, Flag("output width (even; with --height)")] = None
    height: Annotated[Side | None, Flag("output height (even; with --width)")] = None
    fps: Annotated[Annotated[int, Ge(1), Le(120)] | None, Flag("frames per second (default 25)")] = None
    seed: Annotated[
        Annotated[int, Ge(0), Le(2**64 - 1)] | None, Flag("fixed seed (default: random, recorded)")
    ] = None
    lipsync: Annotated[
        Literal["on", "off"] | None, Flag("lip-sync on or off (on needs --lipsync_provider)")
    ] = None
    lipsync_provider: Annotated[
        Annotated[str, MaxLen(200)] | None, Flag("the lip-sync tool", "ID", names=("--lipsync_provider",))
    ] = None
    no_comfyui: Annotated[bool, Flag("hold the start frame instead of ComfyUI")] = False
    cleanup: Annotated[
        Literal["keep", "intermediates"] | None, Flag("after success (default keep; docs/CLEANUP.md)")
    ] = None
    motion_strength: Annotated[
        Annotated[float, Ge(0), Le(1)] | None, Flag("0..1: a camera move, or ComfyUI's motion_strength", "S")
    ] = None
    camera: Annotated[
        Literal["push_in", "pull_out", "pan_left", "pan_right"] | None, Flag("the camera move")
    ] = None
    stabilize: Annotated[
        Literal["deflicker", "vidstab", "both"] | None, Flag("stabilize ComfyUI's picture this way")
    ] = None
    timeline_file: Annotated[
        Path_ | None,
        Flag("timing file: JSON, YAML, SRT or WebVTT", "FILE", aliases=("--timeline",), path=True),
    ] = None
    captions: Annotated[Literal["auto", "none", "soft", "burn"] | None, Flag("captions (default auto)")] = (
        None
    )
    loudness: Annotated[
        Annotated[float, Ge(-70), Le(-5)] | None,
        Flag("normalize the voice to this loudness (e.g. -16)", "LUFS"),
    ] = None


def build_job(request: ProduceRequest) -> JsonObject:
    """The job document the request describes, validated, defaults filled in."""
    if (request.width is None) != (request.height is None):
        raise VaError(ExitCode.VALIDATION_FAILED, "--width and --height go together")
    if request.lipsync == "on" and not request.lipsync_provider:
        raise VaError(ExitCode.VALIDATION_FAILED, "--lipsync on needs --lipsync_provider ID")
    seed = {} if request.seed is None else {"seed": request.seed}
    fps = {} if request.fps is None else {"fps": request.fps}
    size = {} if request.width is None else {"width": request.width, "height": request.height}
    strength = {} if request.motion_strength is None else {"strength": request.motion_strength}
    camera = {} if request.camera is None else {"camera": request.camera}
    document: JsonObject = {
        "schema_version": 1,
        "input": {"audio": str(Path(request.audio).absolute()), "start": str(Path(request.start).absolute())},
        "motion": {"prompt": request.prompt, "negative_prompt": request.neg, **strength, **camera},
        "buffer": {"pre_seconds": request.pre, "post_seconds": request.post},
        "determinism": {"seed_policy": "random" if request.seed is None else "fixed", **seed, **fps},
        "comfyui": {
            "workflow_ids": [] if request.no_comfyui else [DEFAULT_WORKFLOW_ID],
            "params": dict(size),
        },
        "lipsync": {
            "enable": request.lipsync != "off",
            **({"provider": request.lipsync_provider} if request.lipsync_provider else {}),
        },
        "output": {
            "basename": PRODUCE_BASENAME,
            **size,
            **({} if request.captions is None else {"captions": request.captions}),
        },
    }
    if request.timeline_file is not None:
        document["timeline_file"] = str(Path(request.timeline_file).absolute())
    if request.stabilize is not None:
        document["stabilize"] = {"enable": True, "method": request.stabilize}
    if request.cleanup is not None:
        document["cleanup"] = {"after_success": request.cleanup}
    if request.loudness is not None:
        document["audio"] = {"loudness": {"target_lufs": request.loudness}}
    return validate_document(document, "produce flags")


def write_produced_job(workdir: Workdir, document: JsonObject, resume: bool) -> Path:
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
