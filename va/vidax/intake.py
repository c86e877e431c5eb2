"""Turning a request into a job document the server may run: schema, input roots, ComfyUI URL,
decodable inputs."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from va.atomic import partial_file
from va.comfyui.pool import servers_of
from va.errors import ExitCode, VaError
from va.job import job_from_document, validate_document
from va.plan import plan_run
from va.records import JsonObject
from va.timeline import inline_timeline
from va.vidax.errors import ApiError

#: The fields of ``input`` that name files on the server.
INPUT_FIELDS = ("audio", "start")
#: Linux's PATH_MAX: a longer path cannot be opened anyway.
MAX_PATH_CHARS = 4096


def confine(value: str, roots: tuple[Path, ...], field: str) -> Path:
    """A server-side input path, refused unless it (after resolving symlinks) lies inside an input root."""
    if len(value) > MAX_PATH_CHARS or any(not char.isprintable() for char in value):
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            f"{field}: must be a path of at most {MAX_PATH_CHARS} printable characters (no NUL or controls)",
        )
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


def take_input(named: str, roots: tuple[Path, ...], field: str, target: Path) -> None:
    """Give a run the very file that is checked: open ``named`` once, confine the path of what was opened
    (``/proc/self/fd``), then hard-link that same file (the inode is compared) to ``target``, or copy it
    from the open descriptor where no link can be made. A symlink swapped in after the job was accepted
    is resolved here, and what it points to outside the roots is refused."""
    confine(named, roots, field)  # the path's form, and a clear message for a plain path outside
    try:
        # O_NONBLOCK: a FIFO swapped in would otherwise block the scheduler until someone writes to it.
        descriptor = os.open(named, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"{field}: cannot open {named}: {exc.strerror}") from exc
    try:
        opened = os.readlink(f"/proc/self/fd/{descriptor}")
        confine(opened, roots, field)
        checked = os.fstat(descriptor)
        if not stat.S_ISREG(checked.st_mode):
            raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"{field}: {named} is not a regular file")
        with partial_file(target) as partial:
            with contextlib.suppress(OSError):
                os.link(opened, partial, follow_symlinks=False)
            if not partial.exists() or not os.path.samestat(os.stat(partial), checked):
                partial.unlink(missing_ok=True)
                with open(descriptor, "rb", closefd=False) as source, open(partial, "xb") as copy:
                    os.lseek(descriptor, 0, os.SEEK_SET)
                    shutil.copyfileobj(source, copy)
    finally:
        os.close(descriptor)


def url_identity(url: str) -> tuple[str, ...] | None:
    """What makes two URLs the same server: scheme and host without case, the default port filled in,
    no trailing slash; everything else (user info, query) as written. None for an unreadable URL, and
    for one with whitespace or control characters (``urlsplit`` would silently drop some of them)."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return (
        parts.scheme.lower(),
        parts.username or "",
        parts.password or "",
        parts.hostname.lower(),
        str(port),
        parts.path.rstrip("/"),
        parts.query,
        parts.fragment,
    )


def url_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``url`` is one of ``allowed`` (as ``url_identity`` compares them)."""
    identity = url_identity(url)
    return identity is not None and identity in {url_identity(known) for known in allowed}


def confine_webhook_url(url: str, allowed: tuple[str, ...]) -> None:
    """A job's ``webhook_url`` must be one of ``webhooks.allowed_urls``: the server will POST to it."""
    if not url_allowed(url, allowed):
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            f"webhook_url: {url[:200]!r} is not one of webhooks.allowed_urls of vidax.json",
        )


def confine_comfyui_url(url: str, allowed: tuple[str, ...]) -> None:
    """A job's ``comfyui.url`` must be one the operator configured: the server would contact it and
    upload the start image there, so any other URL is refused (no server-side request forgery)."""
    if not url_allowed(url, allowed):
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            f"comfyui.url: {url[:200]!r} is not a ComfyUI this server may use; leave it out to use the "
            "configured one, or name one of comfyui.url / comfyui.allowed_urls of vidax.json",
        )


def accept_job(
    document: Any, roots: tuple[Path, ...], comfyui_urls: tuple[str, ...], where: Path
) -> JsonObject:
    """Validate a job document for the server: every check ``va validate`` makes, inputs confined,
    a ComfyUI URL only if the config allows it."""
    try:
        validated = validate_document(document, "job")
        for server in servers_of(validated["comfyui"].get("url")):
            confine_comfyui_url(server.url, comfyui_urls)
        for field in INPUT_FIELDS:
            validated["input"][field] = str(confine(validated["input"][field], roots, f"input.{field}"))
        if "timeline_file" in validated:
            validated["timeline_file"] = str(confine(validated["timeline_file"], roots, "timeline_file"))
            validated = inline_timeline(validated, where / "job.json")
        plan_run(job_from_document(validated, where / "job.json"))  # planning is the check
    except VaError as exc:
        raise ApiError.from_va(exc) from exc
    return validated
