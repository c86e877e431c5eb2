"""Turning a request into a job document the server may run: schema, input roots, decodable inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from va.errors import VaError
from va.job import job_from_document, validate_document
from va.runner import check_job
from va.vidax.errors import ApiError


def confine(value: str, roots: tuple[Path, ...], field: str) -> Path:
    """A server-side input path, refused unless it (after resolving symlinks) lies inside an input root."""
    path = Path(value)
    if not path.is_absolute():
        raise ApiError(422, "VALIDATION_FAILED", f"{field}: must be an absolute path on the server")
    real = Path(os.path.realpath(path))
    if not any(real == root or root in real.parents for root in roots):
        raise ApiError(
            422,
            "INPUT_OUTSIDE_ROOTS",
            f"{field}: {value} is outside the server's input_roots (symlinks resolved)",
        )
    return real


def accept_job(document: Any, roots: tuple[Path, ...], where: Path) -> dict[str, Any]:
    """Validate a job document for the server: every check ``va validate`` makes, inputs confined."""
    try:
        validated = validate_document(document, "job")
        for field in ("audio", "start"):
            validated["input"][field] = str(confine(validated["input"][field], roots, f"input.{field}"))
        check_job(job_from_document(validated, where / "job.json"))
    except VaError as exc:
        raise ApiError.from_va(exc) from exc
    return validated
