"""The job file: load it, validate it against the schema, fill in defaults, check its inputs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from va import media, schema
from va.errors import ExitCode, VaError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm"})


@dataclass(frozen=True)
class Job:
    """A validated job: the document with defaults filled in, and its inputs as absolute paths."""

    path: Path
    data: dict[str, Any]
    audio: Path
    start: Path

    @property
    def basename(self) -> str:
        """File name of the finished video inside the workdir."""
        return str(self.data["output"]["basename"])

    @property
    def fps(self) -> int:
        """Frame rate of the output."""
        return int(self.data["determinism"]["fps"])

    @property
    def start_is_video(self) -> bool:
        """Whether the start is a video (its first frame is the still)."""
        return self.start.suffix.lower() in VIDEO_SUFFIXES


def comfyui_active(job: Job) -> bool:
    """Whether the job's visual stage is ComfyUI (it names workflow ids)."""
    return bool(job.data["comfyui"]["workflow_ids"])


def active_provider(job: Job) -> str | None:
    """The lip-sync provider id when the stage runs for ``job`` (enabled and a provider named), else None."""
    lipsync = job.data["lipsync"]
    return str(lipsync["provider"]) if lipsync["enable"] and lipsync.get("provider") else None


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
    base = path.parent
    return Job(
        path=path,
        data=document,
        audio=(base / document["input"]["audio"]).absolute(),
        start=(base / document["input"]["start"]).absolute(),
    )


def check_inputs_exist(job: Job) -> None:
    """Check that the input files are there, readable and not empty: ``INPUT_NOT_FOUND`` (missing, or
    permission denied) or ``UNSUPPORTED_FORMAT``."""
    for field, path in (("input.audio", job.audio), ("input.start", job.start)):
        check_readable(field, path)


def check_inputs(job: Job) -> None:
    """Check that the inputs exist and decode: ``INPUT_NOT_FOUND`` or ``UNSUPPORTED_FORMAT``."""
    check_inputs_exist(job)
    suffix = job.start.suffix.lower()
    if suffix not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        known = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES | VIDEO_SUFFIXES))
        raise VaError(
            ExitCode.UNSUPPORTED_FORMAT,
            f"input.start: unsupported file type '{suffix or job.start.name}' ({known}): {job.start}",
        )
    media.check_colour(job.data["output"]["background"], "output.background")
    checks = (("input.audio", _check_audio, job.audio), ("input.start", _check_visual, job.start))
    for field, check, path in checks:
        try:
            check(path, _identity(path))
        except VaError as exc:
            raise VaError(exc.code, f"{field}: {exc.message}") from exc
    from va.timeline import check_timeline  # noqa: PLC0415 - the timeline module imports this one

    check_timeline(job)


def check_readable(field: str, path: Path) -> None:
    """An input must be a file this user may read, and not empty: ``INPUT_NOT_FOUND`` (not there, or
    permission denied: said as such) or ``UNSUPPORTED_FORMAT`` (empty)."""
    try:
        if not path.is_file():
            raise VaError(ExitCode.INPUT_NOT_FOUND, f"{field}: file not found: {path}")
        with open(path, "rb") as handle:
            if not handle.read(1):
                raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"{field}: empty file: {path}")
    except PermissionError as exc:
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"{field}: permission denied: cannot read {path}") from exc


def _identity(path: Path) -> tuple[int, int]:
    """What makes a file the same file for the checks below: its size and modification time."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def audio_seconds(job: Job) -> float:
    """Seconds of the job's voice track that decode (checked as ``check_inputs`` does)."""
    try:
        return _check_audio(job.audio, _identity(job.audio))
    except VaError as exc:
        raise VaError(exc.code, f"input.audio: {exc.message}") from exc


def start_info(job: Job) -> media.VisualInfo:
    """The job's start image or video as ffprobe sees it (checked as ``check_inputs`` does)."""
    try:
        return _check_visual(job.start, _identity(job.start))
    except VaError as exc:
        raise VaError(exc.code, f"input.start: {exc.message}") from exc


# A batch of many jobs often shares one voice track or one start image: each file is probed and
# decoded once per process, not once per job (a changed file has another identity and is checked anew).
@functools.lru_cache(maxsize=4096)
def _check_audio(path: Path, identity: tuple[int, int]) -> float:
    info = media.probe_audio(path)
    decoded = media.decoded_duration(path)
    media.check_complete(info, decoded)
    media.check_wav_complete(path, decoded)
    return decoded


@functools.lru_cache(maxsize=4096)
def _check_visual(path: Path, identity: tuple[int, int]) -> media.VisualInfo:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        # The header first: an image above the limit is refused before anything decodes its pixels.
        size, limit = media.image_size(path), largest_side()
        if size is not None and max(size) > limit:
            raise VaError(
                ExitCode.UNSUPPORTED_FORMAT,
                f"{size[0]}x{size[1]} is above the limit of {limit} px a side (the schema's "
                f"output.width/height maximum): {path}",
            )
    return media.probe_visual(path)


def largest_side() -> int:
    """The largest width or height a picture may have: the job schema's maximum of output.width."""
    output = schema.job_schema()["properties"]["output"]["properties"]
    return int(output["width"]["maximum"])
