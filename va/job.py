"""The job file: load it, validate it against the schema, fill in defaults, check its inputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict, TypeVar

from va import media, schema
from va.errors import ExitCode, VaError, not_a_file
from va.jsondata import from_document
from va.memo import FileIdentity, Memo, identity_of
from va.plan_parts import Buffer
from va.timeline import Segment

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm"})


# The job's sections as typed values, made once from the validated document (va.jsondata.from_document).
# Every field is either filled in by the schema's default or optional (None: the job does not set it);
# no other default lives here.


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    """``output``: the finished video's name, size, fit and encoding."""

    basename: str
    width: int | None = None
    height: int | None = None
    fit: str
    background: str
    crf: int
    x264_preset: str
    captions: str


@dataclass(frozen=True, slots=True)
class Determinism:
    """``determinism``: the output rate and how the seed is chosen."""

    fps: int
    seed_policy: str
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Motion:
    """``motion``: the prompt, and how much the picture moves."""

    prompt: str
    negative_prompt: str
    guidance: float
    strength: float
    camera: str


@dataclass(frozen=True, slots=True)
class ComfyParams:
    """``comfyui.params``: what the template's bindings receive (None: the job does not set it)."""

    width: int
    height: int
    steps: int
    sampler: str
    scheduler: str
    prompt: str | None = None
    negative: str | None = None
    negative_prompt: str | None = None
    cfg: float | None = None
    ckpt_name: str | None = None
    fps: int | None = None
    denoise: float | None = None


class PoolServerEntry(TypedDict):
    """One server of a pool in ``comfyui.url``: its URL and how many prompts it takes at once."""

    url: str
    slots: NotRequired[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class ComfySettings:
    """``comfyui``: the templates, the server, the batches, and how long to wait and retry."""

    workflow_ids: tuple[str, ...]
    #: One URL, or a pool: URLs and ``{"url", "slots"}`` (va.comfyui.pool.servers_of).
    url: str | tuple[str | PoolServerEntry, ...] | None = None
    params: ComfyParams
    batch_size: int
    retries: int
    unavailable_seconds: float
    poll_interval_ms: int
    stall_seconds: float
    timeout_seconds: float
    crossfade_frames: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncCheckSettings:
    """``lipsync.sync_check``: whether the mouth is checked against the voice (None: when the provider
    needs a face), the offset tolerated, what an out-of-sync video does, one more try of an out-of-sync
    chunk."""

    enable: bool | None = None
    max_offset_frames: int
    on_fail: str
    retry: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LipsyncSettings:
    """``lipsync``: whether the stage runs, with which provider, and what a failure does."""

    enable: bool
    provider: str | None = None
    allow_passthrough: bool
    chunk_seconds: float | None = None
    cut_search_seconds: float
    sync_check: SyncCheckSettings


@dataclass(frozen=True, slots=True)
class StabilizeSettings:
    """``stabilize``: whether generated pictures are steadied, and how."""

    enable: bool
    method: str


@dataclass(frozen=True, slots=True)
class Cleanup:
    """``cleanup``: what a succeeded run keeps."""

    after_success: str


@dataclass(frozen=True, slots=True)
class Loudness:
    """``audio.loudness``: the EBU R128 loudness the voice is normalized to."""

    target_lufs: float
    true_peak_db: float


@dataclass(frozen=True, slots=True)
class AudioSettings:
    """``audio``: what is done to the voice track before it is padded (None: its loudness is kept)."""

    loudness: Loudness | None = None


@dataclass(frozen=True, slots=True)
class Inputs:
    """``input``: the voice track and the start image or video, relative to the job file's folder."""

    audio: str
    start: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDocument:
    """A validated job document, every section typed: what ``Job`` is made of."""

    schema_version: int
    input: Inputs
    motion: Motion
    timeline: tuple[Segment, ...] | None = None
    timeline_file: str | None = None
    buffer: Buffer
    audio: AudioSettings
    determinism: Determinism
    comfyui: ComfySettings
    stabilize: StabilizeSettings
    lipsync: LipsyncSettings
    output: Output
    cleanup: Cleanup


@dataclass(frozen=True)
class Job:
    """A validated job: every section as a typed value, its inputs (and timeline file) as absolute
    paths, and the document as validated (defaults filled in), which is what its digests are made of."""

    path: Path
    data: dict[str, Any]
    audio: Path
    start: Path
    output: Output
    buffer: Buffer
    #: ``audio``: what is done to the voice (``audio`` is the voice track itself).
    voice: AudioSettings
    determinism: Determinism
    motion: Motion
    comfyui: ComfySettings
    lipsync: LipsyncSettings
    stabilize: StabilizeSettings
    cleanup: Cleanup
    #: ``timeline``: the segments given in the job (None: not given there).
    timeline: tuple[Segment, ...] | None
    #: ``timeline_file``: the file the segments are read from (None: not given).
    timeline_file: Path | None

    @property
    def basename(self) -> str:
        """File name of the finished video inside the workdir."""
        return self.output.basename

    @property
    def fps(self) -> int:
        """Frame rate of the output."""
        return self.determinism.fps

    @property
    def start_is_video(self) -> bool:
        """Whether the start is a video (its first frame is the still)."""
        return self.start.suffix.lower() in VIDEO_SUFFIXES


def comfyui_active(job: Job) -> bool:
    """Whether the job's visual stage is ComfyUI (it names workflow ids)."""
    return bool(job.comfyui.workflow_ids)


def active_provider(job: Job) -> str | None:
    """The lip-sync provider id when the stage runs for ``job`` (enabled and a provider named), else None."""
    lipsync = job.lipsync
    return lipsync.provider if lipsync.enable and lipsync.provider else None


def validate_document(data: Any, source: str) -> dict[str, Any]:
    """Validate a job document and fill in its defaults; the first problem is ``VALIDATION_FAILED``."""
    return schema.validate(data, "job", source)


def load_job(path: Path) -> Job:
    """Read, validate and resolve a job file; paths in it are relative to its folder."""
    path = Path(path).absolute()
    data = schema.load_json_file(path, "job file")
    return job_from_document(validate_document(data, str(path)), path)


def job_from_document(document: dict[str, Any], path: Path) -> Job:
    """A job from a validated document that lives (or will live) at ``path``."""
    typed: JobDocument = from_document(JobDocument, document)
    base = path.parent
    return Job(
        path=path,
        data=document,
        audio=(base / typed.input.audio).absolute(),
        start=(base / typed.input.start).absolute(),
        output=typed.output,
        buffer=typed.buffer,
        voice=typed.audio,
        determinism=typed.determinism,
        motion=typed.motion,
        comfyui=typed.comfyui,
        lipsync=typed.lipsync,
        stabilize=typed.stabilize,
        cleanup=typed.cleanup,
        timeline=typed.timeline,
        timeline_file=None if typed.timeline_file is None else (base / typed.timeline_file).absolute(),
    )


def check_inputs_exist(job: Job) -> None:
    """Check that the input files are there, readable and not empty: ``INPUT_NOT_FOUND`` (missing, or
    permission denied) or ``UNSUPPORTED_FORMAT``."""
    for field, path in (("input.audio", job.audio), ("input.start", job.start)):
        check_readable(field, path)


def check_inputs(job: Job) -> None:
    """Check that the inputs exist and decode: ``INPUT_NOT_FOUND`` or ``UNSUPPORTED_FORMAT``."""
    check_inputs_exist(job)
    media.require_tools()
    suffix = job.start.suffix.lower()
    if suffix not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        known = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES | VIDEO_SUFFIXES))
        raise VaError(
            ExitCode.UNSUPPORTED_FORMAT,
            f"input.start: unsupported file type '{suffix or job.start.name}' ({known}): {job.start}",
        )
    media.check_colour(job.output.background, "output.background")
    voice = checked_audio(job)
    start_info(job)
    from va.timeline import check_timeline  # noqa: PLC0415 - the timeline module imports this one

    check_timeline(job, voice.header_seconds)


def check_readable(field: str, path: Path) -> None:
    """An input must be a file this user may read, and not empty: ``INPUT_NOT_FOUND`` (not there, or
    permission denied: said as such) or ``UNSUPPORTED_FORMAT`` (empty)."""
    try:
        if not path.is_file():
            raise not_a_file(field, path)
        with open(path, "rb") as handle:
            if not handle.read(1):
                raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"{field}: empty file: {path}")
    except PermissionError as exc:
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"{field}: permission denied: cannot read {path}") from exc


@dataclass(frozen=True, slots=True)
class CheckedAudio:
    """A voice track that decodes: what probing it found (its header's seconds among it), and the seconds
    that decode."""

    info: media.AudioInfo
    decoded_seconds: float

    @property
    def header_seconds(self) -> float:
        """The seconds the voice's header promises."""
        return self.info.duration_seconds


# A batch often shares one voice track or one start image, and planning checks and then measures each
# job's inputs: each file is probed and decoded once (va/memo.py), and checked anew when it changed.
CHECKED_AUDIO: Memo[FileIdentity, CheckedAudio] = Memo()
CHECKED_VISUAL: Memo[FileIdentity, media.VisualInfo] = Memo()


def checked_audio(job: Job) -> CheckedAudio:
    """The job's voice track, checked as ``check_inputs`` does."""
    return _checked("input.audio", job.audio, CHECKED_AUDIO, _check_audio)


def voice_info(job: Job) -> media.AudioInfo:
    """The job's voice track as probing it found it (checked as ``check_inputs`` does)."""
    info = checked_audio(job).info
    # A result made for another name of the same file (a link) names this job's.
    return info if info.path == job.audio else dataclasses.replace(info, path=job.audio)


def audio_seconds(job: Job) -> float:
    """Seconds of the job's voice track that decode (checked as ``check_inputs`` does)."""
    return checked_audio(job).decoded_seconds


def start_info(job: Job) -> media.VisualInfo:
    """The job's start image or video as ffprobe sees it (checked as ``check_inputs`` does)."""
    info = _checked("input.start", job.start, CHECKED_VISUAL, _check_visual)
    # A result made for another name of the same file (a link) names this job's.
    return info if info.path == job.start else dataclasses.replace(info, path=job.start)


R = TypeVar("R")


def _checked(field: str, path: Path, memo: Memo[FileIdentity, R], check: Callable[[Path], R]) -> R:
    """``check(path)``, made once while the file keeps its identity; an error names ``field``."""
    try:
        return memo.made(identity_of(path), lambda: check(path))
    except FileNotFoundError as exc:
        raise not_a_file(field, path) from exc
    except VaError as exc:
        raise VaError(exc.code, f"{field}: {exc.message}") from exc


def _check_audio(path: Path) -> CheckedAudio:
    info = media.probe_audio(path)
    decoded = media.decoded_duration(path)
    media.check_complete(info, decoded)
    media.check_wav_complete(path, decoded)
    return CheckedAudio(info, decoded)


def _check_visual(path: Path) -> media.VisualInfo:
    if path.suffix.lower() in IMAGE_SUFFIXES or media.is_heif(path):
        # The header first: an image above the limit is refused before anything decodes its pixels
        # (a HEIF image by its brand too: a phone photo under any name is taken as one).
        size, limit = media.image_size(path), largest_side()
        if size is not None and max(size) > limit:
            raise VaError(
                ExitCode.UNSUPPORTED_FORMAT,
                f"{size[0]}x{size[1]} is above the limit of {limit} px a side (the schema's "
                f"output.width/height maximum): {path}",
            )
        info = media.probe_visual(path)
        media.check_image_complete(info)
        return info
    return media.probe_visual(path)


def largest_side() -> int:
    """The largest width or height a picture may have: the job schema's maximum of output.width."""
    output = schema.job_schema()["properties"]["output"]["properties"]
    return int(output["width"]["maximum"])
