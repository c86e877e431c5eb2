"""Starting the configured ComfyUI: one process at most, healthy within a timeout, or a clear error."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from va.comfyui.health import check_health
from va.textlog import last_lines
from va.vidax.errors import ApiError
from va.vidax.models import ComfyStart
from va.vidax.settings import ComfyUISettings

TAIL_LINES = 8


def resolve_command(command: list[str], cwd: Path | None, platform: str = sys.platform) -> list[str]:
    """The command to start; a bare ``python`` prefers the virtual environment inside ``cwd``."""
    if command and command[0] == "python" and cwd is not None:
        venv_python = cwd / "venv" / ("Scripts/python.exe" if platform.startswith("win") else "bin/python")
        if venv_python.is_file():
            return [str(venv_python), *command[1:]]
    return list(command)


class ComfyLauncher:
    """Starts ComfyUI as the config says, and never two of it."""

    def __init__(self, settings: ComfyUISettings, log_file: Path) -> None:
        self.settings = settings
        self.log_file = log_file
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.settings.url

    def _tail(self) -> str:
        return last_lines(self.log_file, TAIL_LINES) or "no output"

    def start(self) -> ComfyStart:
        """Start ComfyUI (or find it running) and wait until it is healthy."""
        with self.lock:
            health = check_health(self.url, timeout=2)
            if health.ok:
                return ComfyStart(
                    started=False, already_running=True, url=self.url, comfyui_version=health.version
                )
            if self.process is None or self.process.poll() is not None:
                cwd = Path(self.settings.cwd).expanduser() if self.settings.cwd else None
                argv = resolve_command(list(self.settings.command), cwd)
                self.log_file.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with open(self.log_file, "ab") as output:
                        self.process = subprocess.Popen(
                            argv,
                            cwd=cwd,
                            stdout=output,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                            env={**os.environ},
                        )
                except OSError as exc:
                    raise ApiError(
                        502, "COMFYUI_START_FAILED", f"cannot start {argv[0]}: {exc.strerror}"
                    ) from exc
            deadline = time.monotonic() + self.settings.start_timeout_seconds
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ApiError(
                        502,
                        "COMFYUI_START_FAILED",
                        f"ComfyUI exited with {self.process.returncode} before it was healthy: "
                        + self._tail(),
                    )
                health = check_health(self.url, timeout=1)
                if health.ok:
                    return ComfyStart(
                        started=True,
                        already_running=False,
                        url=self.url,
                        comfyui_version=health.version,
                        pid=self.process.pid,
                    )
                time.sleep(0.25)
            self.process.terminate()
            raise ApiError(
                502,
                "COMFYUI_START_FAILED",
                f"ComfyUI was not healthy within {self.settings.start_timeout_seconds:g} s: {self._tail()}",
            )
