"""The server's settings, from the vidax config (``VIDAX_CONFIG`` -> state dir -> repository), and its
API keys, which are re-read when the config changes (no restart)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from va.comfyui.pool import servers_of
from va.config import LoadedConfig, load_config
from va.errors import ExitCode, VaError
from va.records import JsonObject
from va.state import state_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookSettings:
    """``webhooks`` of vidax.json: where completion webhooks may go, how they are signed and retried."""

    allowed_urls: tuple[str, ...]
    secret: str | None
    max_attempts: int
    first_delay_seconds: float
    timeout_seconds: float


@dataclass(frozen=True)
class ComfyUISettings:
    """``comfyui`` of vidax.json: the server VIDAX starts (``command`` in ``cwd``, healthy within
    ``start_timeout_seconds``), the URLs a job may name, and the section as written, from which the
    ComfyUI stage resolves its pool (va.comfyui.pool.resolve_pool)."""

    url: str
    allowed_urls: tuple[str, ...]
    command: tuple[str, ...]
    cwd: str | None
    start_timeout_seconds: float
    section: JsonObject

    @classmethod
    def of(cls, section: JsonObject) -> ComfyUISettings:
        """The settings of a ``comfyui`` section the config's schema validated (defaults filled in)."""
        allowed, command, cwd = (
            section.get("allowed_urls") or [],
            section.get("command") or [],
            section.get("cwd"),
        )
        return cls(
            url=str(section["url"]),
            allowed_urls=tuple(str(url) for url in allowed) if isinstance(allowed, list) else (),
            command=tuple(str(part) for part in command) if isinstance(command, list) else (),
            cwd=None if cwd is None else str(cwd),
            start_timeout_seconds=float(cast(float, section["start_timeout_seconds"])),
            section=section,
        )


@dataclass(frozen=True)
class Settings:
    """What the server needs to know, resolved once at start-up (the keys: see ``KeyRing``)."""

    config_path: Path
    bind: str
    port: int
    api_keys: tuple[str, ...]
    max_body_bytes: int
    public_docs: bool
    input_roots: tuple[Path, ...]
    runs_root: Path
    max_parallel_runs: int
    max_queued_jobs: int
    comfyui: ComfyUISettings
    webhooks: WebhookSettings
    state_dir: Path

    @property
    def comfyui_urls(self) -> tuple[str, ...]:
        """The ComfyUI URLs a job may name: the configured one and ``comfyui.allowed_urls``."""
        pool = tuple(server.url for server in servers_of(self.comfyui.section.get("servers")))
        return (self.comfyui.url, *pool, *self.comfyui.allowed_urls)


def api_keys_of(config: LoadedConfig) -> tuple[str, ...]:
    """The configured keys; none is refused (a server without a key would be open)."""
    keys = tuple(config.data["server"]["api_keys"])
    if not keys:
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            f"{config.path}: server.api_keys is empty; VIDAX refuses to start without an API key",
        )
    return keys


def load_settings() -> Settings:
    """Load and check the settings; a server without an API key refuses to start."""
    config = load_config("vidax")
    data = config.data
    server = data["server"]
    root = Path(data["state_dir"]).expanduser() if data.get("state_dir") else state_dir()
    keys = api_keys_of(config)
    webhooks = data["webhooks"]
    if webhooks["allowed_urls"] and not webhooks["secret"]:
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            f"{config.path}: webhooks.allowed_urls needs webhooks.secret (whsec_...) to sign the deliveries",
        )
    runs_root = Path(data["runs_root"]).expanduser() if data.get("runs_root") else root / "runs"
    return Settings(
        config_path=config.path,
        bind=server["bind"],
        port=server["port"],
        api_keys=keys,
        max_body_bytes=server["max_body_bytes"],
        public_docs=server["public_docs"],
        input_roots=tuple(Path(p).expanduser().resolve() for p in data["input_roots"]),
        runs_root=runs_root.resolve(),
        max_parallel_runs=data["max_parallel_runs"],
        max_queued_jobs=data["max_queued_jobs"],
        comfyui=ComfyUISettings.of(data["comfyui"]),
        webhooks=WebhookSettings(
            allowed_urls=tuple(webhooks["allowed_urls"]),
            secret=webhooks["secret"],
            max_attempts=webhooks["max_attempts"],
            first_delay_seconds=webhooks["first_delay_seconds"],
            timeout_seconds=webhooks["timeout_seconds"],
        ),
        state_dir=root,
    )


class KeyRing:
    """The API keys in force: re-read from the config file when it changes on disk (checked on each
    request) or after ``reload_soon`` (SIGHUP). A config that no longer loads keeps the keys in force.
    Only the keys change; every other setting needs a restart. Running jobs are never touched."""

    def __init__(self, path: Path, keys: tuple[str, ...]) -> None:
        self.path, self._keys = path, keys
        self._seen = self._stamp()
        self._requested = False
        self._lock = threading.Lock()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return (found.st_mtime_ns, found.st_size, found.st_ino)

    def reload_soon(self) -> None:
        """Re-read the keys before the next request is checked (safe in a signal handler)."""
        self._requested = True

    def in_force(self) -> tuple[str, ...]:
        """The keys in force now."""
        stamp = self._stamp()
        if stamp != self._seen or self._requested:
            with self._lock:
                self._requested, self._seen = False, stamp
                try:
                    self._keys = api_keys_of(load_config("vidax"))
                    log.info("API keys re-read from %s (%d keys)", self.path, len(self._keys))
                except VaError as exc:
                    log.error("%s not re-read; the keys in force are kept: %s", self.path, exc.message)
        return self._keys
