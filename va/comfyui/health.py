"""Talking to a ComfyUI server: its health (``/system_stats``, falling back to ``/health``)."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import requests


@dataclass(frozen=True)
class ComfyHealth:
    """Whether a ComfyUI server answers, and what it says about itself."""

    url: str
    ok: bool
    version: str | None
    endpoint: str | None
    message: str


def check_health(url: str, timeout: float = 3.0) -> ComfyHealth:
    """Ask ``/system_stats`` (which carries ``comfyui_version``), else ``/health``."""
    base = url.rstrip("/")
    problems = []
    for endpoint in ("/system_stats", "/health"):
        try:
            response = requests.get(base + endpoint, timeout=timeout)
        except requests.RequestException as exc:
            problems.append(f"{endpoint}: {type(exc).__name__}")
            break  # the server is not there; the fallback would fail the same way
        if response.status_code != 200:
            problems.append(f"{endpoint}: HTTP {response.status_code}")
            continue
        version = None
        if endpoint == "/system_stats":
            try:
                system = response.json().get("system", {})
                version = system.get("comfyui_version") if isinstance(system, dict) else None
            except ValueError:
                problems.append(f"{endpoint}: not JSON")
                continue
        return ComfyHealth(base, True, version, endpoint, "ok")
    return ComfyHealth(base, False, None, None, "; ".join(problems) or "no answer")


class _Named(Protocol):
    @property
    def url(self) -> str: ...


def check_pool(servers: Iterable[_Named], timeout: float = 3.0) -> list[ComfyHealth]:
    """``check_health`` of every server of a pool, asked at the same time, in the pool's order."""
    urls = [server.url for server in servers]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(urls)))) as pool:
        return list(pool.map(lambda url: check_health(url, timeout), urls))
