"""Dependencies of the routes: the API key check, the settings, the job store, the launcher."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from va.vidax.errors import ApiError
from va.vidax.jobs import JobStore
from va.vidax.launcher import ComfyLauncher
from va.vidax.settings import KeyRing, Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of server.api_keys")


def require_key(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> None:
    """Every route but /health and /ready: the key must equal one in force (compared in constant time;
    the keys are re-read when the config changes)."""
    keys: KeyRing = request.app.state.keys
    given = (key or "").encode()
    matches = [hmac.compare_digest(given, known.encode()) for known in keys.in_force()]
    if not key or not any(matches):
        raise ApiError(401, "UNAUTHORIZED", "missing or wrong X-API-Key")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_store(request: Request) -> JobStore:
    return request.app.state.store  # type: ignore[no-any-return]


def get_launcher(request: Request) -> ComfyLauncher:
    return request.app.state.launcher  # type: ignore[no-any-return]


ApiKey = Depends(require_key)
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
LauncherDep = Annotated[ComfyLauncher, Depends(get_launcher)]
