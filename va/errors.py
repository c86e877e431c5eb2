"""The one enum of exit codes and the one error type that carries them."""

from __future__ import annotations

import enum
import errno
from pathlib import Path

from typing_extensions import TypedDict  # pydantic (VIDAX's manifest) reads only this one's on Python 3.11


class ErrorData(TypedDict):
    """An error as manifests and events store it: its exit code, the code's name and the message."""

    code: int
    name: str
    message: str


class ExitCode(enum.IntEnum):
    """Every way a run of ``va`` can end; documented in docs/OUTPUT_CONTRACT.md."""

    OK = 0
    USAGE = 2
    BATCH_INCOMPLETE = 3
    VALIDATION_FAILED = 10
    INPUT_NOT_FOUND = 11
    UNSUPPORTED_FORMAT = 12
    DEPENDENCY_MISSING = 20
    CLUSTER_CANNOT_RUN = 21
    OUTPUT_EXISTS = 30
    RESUME_NOT_POSSIBLE = 31
    WORKDIR_UNUSABLE = 32
    RUN_NOT_FINISHED = 33
    STATE_DIR_UNUSABLE = 34
    COMFYUI_UNAVAILABLE = 40
    COMFYUI_REJECTED = 41
    COMFYUI_FAILED = 42
    COMFYUI_TIMEOUT = 43
    LIPSYNC_FAILED = 50
    LIPSYNC_TIMEOUT = 51
    LIPSYNC_INPUT_REJECTED = 52
    LIPSYNC_UNAVAILABLE = 53
    LIPSYNC_OUT_OF_SYNC = 54
    ENCODE_FAILED = 60
    INTERNAL = 70
    INTERRUPTED = 130


class VaError(Exception):
    """An error a user can act on: an exit code and one line naming the problem."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> ErrorData:
        """The form stored in manifests and events."""
        return {"code": int(self.code), "name": self.code.name, "message": self.message}


#: errno values that say a place cannot be written (full, over quota, read-only, not allowed), not that
#: what was being written is wrong.
UNWRITABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
#: errno values that say a place is full or read-only, or its path too long: wherever they happen, the
#: place's fault (``WORKDIR_UNUSABLE``, or ``STATE_DIR_UNUSABLE`` in the state dir), never a bug.
DISK_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG})
#: What a tool (ffmpeg, Snakemake) says when the disk it writes to cannot take the file.
DISK_ERRORS = (
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "File name too long",
)


def disk_error_in(text: str) -> str | None:
    """The disk error (``DISK_ERRORS``) a tool's output says, if any."""
    return next((reason for reason in DISK_ERRORS if reason in text), None)


def place_unusable(code: ExitCode, place: str, path: Path | str, exc: OSError) -> VaError:
    """One line for a place va cannot use (a file where a folder should be, a read-only or full disk, no
    permission): ``<place> <path> unusable: <reason>: <the file the system named>``."""
    reason = exc.strerror or type(exc).__name__
    return VaError(code, f"{place} {path} unusable: {reason}: {exc.filename or path}")


def not_a_file(what: str, path: Path) -> VaError:
    """``INPUT_NOT_FOUND`` for a path where a file should be, saying what is there instead: a folder, a
    device, pipe or socket, a link that leads nowhere (its target gone, or a loop), or nothing."""
    if path.is_dir():
        return VaError(ExitCode.INPUT_NOT_FOUND, f"{what}: a folder, not a file: {path}")
    if path.exists():  # a device, a pipe or a socket: reading it could block or never end
        return VaError(
            ExitCode.INPUT_NOT_FOUND, f"{what}: not a regular file (a device, a pipe or a socket): {path}"
        )
    if path.is_symlink():
        return VaError(
            ExitCode.INPUT_NOT_FOUND, f"{what}: a link to no file (its target is gone, or a loop): {path}"
        )
    return VaError(ExitCode.INPUT_NOT_FOUND, f"{what}: file not found: {path}")
