"""The one enum of exit codes and the one error type that carries them."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Every way a run of ``va`` can end; documented in docs/OUTPUT_CONTRACT.md."""

    OK = 0
    USAGE = 2
    BATCH_INCOMPLETE = 3
    VALIDATION_FAILED = 10
    INPUT_NOT_FOUND = 11
    UNSUPPORTED_FORMAT = 12
    DEPENDENCY_MISSING = 20
    OUTPUT_EXISTS = 30
    RESUME_NOT_POSSIBLE = 31
    WORKDIR_UNUSABLE = 32
    RUN_NOT_FINISHED = 33
    COMFYUI_UNAVAILABLE = 40
    COMFYUI_REJECTED = 41
    COMFYUI_FAILED = 42
    COMFYUI_TIMEOUT = 43
    LIPSYNC_FAILED = 50
    LIPSYNC_TIMEOUT = 51
    LIPSYNC_INPUT_REJECTED = 52
    LIPSYNC_UNAVAILABLE = 53
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

    def as_dict(self) -> dict[str, object]:
        """The form stored in manifests and events."""
        return {"code": int(self.code), "name": self.code.name, "message": self.message}
