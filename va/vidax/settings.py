"""The server's settings, from the vidax config (``VIDAX_CONFIG`` -> state dir -> repository)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from va.config import load_config
from va.errors import ExitCode, VaError
from va.state import state_dir


@dataclass(frozen=True)
class Settings:
    """What the server needs to know, resolved once at start-up."""

    config_path: Path
    bind: str
    port: int
    api_keys: tuple[str, ...]
    max_body_bytes: int
    input_roots: tuple[Path, ...]
    runs_root: Path
    max_parallel_runs: int
    comfyui: dict[str, Any]
    state_dir: Path

    @property
    def comfyui_urls(self) -> tuple[str, ...]:
        """The ComfyUI URLs a job may name: the configured one and ``comfyui.allowed_urls``."""
        return (str(self.comfyui["url"]), *self.comfyui.get("allowed_urls", ()))


def load_settings() -> Settings:
    """Load and check the settings; a server without an API key refuses to start."""
    config = load_config("vidax")
    data = config.data
    server = data["server"]
    root = Path(data["state_dir"]).expanduser() if data.get("state_dir") else state_dir()
    keys = tuple(server["api_keys"])
    if not keys:
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            f"{config.path}: server.api_keys is empty; VIDAX refuses to start without an API key",
        )
    runs_root = Path(data["runs_root"]).expanduser() if data.get("runs_root") else root / "runs"
    return Settings(
        config_path=config.path,
        bind=server["bind"],
        port=server["port"],
        api_keys=keys,
        max_body_bytes=server["max_body_bytes"],
        input_roots=tuple(Path(p).expanduser().resolve() for p in data["input_roots"]),
        runs_root=runs_root.resolve(),
        max_parallel_runs=data["max_parallel_runs"],
        comfyui=data["comfyui"],
        state_dir=root,
    )
