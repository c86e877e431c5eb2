"""The job file: load it, validate it against the schema, fill in defaults, check its inputs."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, validators

from va import media
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


def schema_path() -> Path:
    """Where the job schema lives (inside the package, so the CLI and the Snakefile share it)."""
    return Path(str(resources.files("va") / "schemas" / "job.schema.json"))


def _with_defaults(validator_class: type[Any]) -> type[Any]:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, properties: dict[str, Any], instance: Any, schema: dict[str, Any]
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    extended: type[Any] = validators.extend(  # type: ignore[no-untyped-call]
        validator_class, {"properties": set_defaults}
    )
    return extended


_DefaultingValidator = _with_defaults(Draft202012Validator)


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed) if isinstance(error.instance, dict) else []
        keys = ", ".join(repr(key) for key in unknown)
        return f"{where}: unknown key {keys}" if where != "(top level)" else f"unknown key {keys}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "then":
        return f"{where}: seed is required when seed_policy is 'fixed'"
    return f"{where}: {error.message}"


def validate_document(data: Any, source: str) -> dict[str, Any]:
    """Validate a job document and fill in its defaults; the first problem is ``VALIDATION_FAILED``."""
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise VaError(ExitCode.VALIDATION_FAILED, f"{source}: a job must be a JSON object")
    document = copy.deepcopy(data)
    errors = sorted(
        _DefaultingValidator(schema).iter_errors(document),
        key=lambda error: (len(error.absolute_path), list(map(str, error.absolute_path))),
    )
    if errors:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{source}: {_describe(errors[0])}")
    return document


def load_job(path: Path) -> Job:
    """Read, validate and resolve a job file; paths in it are relative to its folder."""
    path = Path(path).absolute()
    if not path.is_file():
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"job file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{path}: not valid JSON ({exc})") from exc
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


def check_inputs(job: Job) -> None:
    """Check that the inputs exist and decode: ``INPUT_NOT_FOUND`` or ``UNSUPPORTED_FORMAT``."""
    for field, path in (("input.audio", job.audio), ("input.start", job.start)):
        if not path.is_file():
            raise VaError(ExitCode.INPUT_NOT_FOUND, f"{field}: file not found: {path}")
        if path.stat().st_size == 0:
            raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"{field}: empty file: {path}")
    suffix = job.start.suffix.lower()
    if suffix not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        known = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES | VIDEO_SUFFIXES))
        raise VaError(
            ExitCode.UNSUPPORTED_FORMAT,
            f"input.start: unsupported file type '{suffix or job.start.name}' ({known}): {job.start}",
        )
    try:
        audio = media.probe_audio(job.audio)
        media.check_complete(audio, media.decoded_duration(job.audio))
        media.probe_visual(job.start)
    except VaError as exc:
        field = "input.audio" if exc.message.endswith(str(job.audio)) else "input.start"
        raise VaError(exc.code, f"{field}: {exc.message}") from exc
