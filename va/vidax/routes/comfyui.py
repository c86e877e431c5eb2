"""``/comfyui``: is the configured ComfyUI healthy; start it."""

from __future__ import annotations

from fastapi import APIRouter

from va.comfyui.health import check_health
from va.vidax.deps import ApiKey, LauncherDep
from va.vidax.errors import ApiError, error_responses
from va.vidax.models import ComfyHealth, ComfyStart

router = APIRouter(prefix="/comfyui", tags=["comfyui"], dependencies=[ApiKey], responses=error_responses(401))


@router.get("/health", responses=error_responses(503))
def comfyui_health(launcher: LauncherDep) -> ComfyHealth:
    """``/system_stats`` (falling back to ``/health``) of the configured ComfyUI."""
    health = check_health(launcher.url)
    if not health.ok:
        raise ApiError(
            503, "COMFYUI_UNAVAILABLE", f"ComfyUI at {launcher.url} is not reachable: {health.message}"
        )
    return ComfyHealth(ok=True, url=health.url, endpoint=health.endpoint, comfyui_version=health.version)


@router.post("/start", responses=error_responses(502))
def comfyui_start(launcher: LauncherDep) -> ComfyStart:
    """Start the configured ComfyUI command and wait until it is healthy (never starts two)."""
    return ComfyStart.model_validate(launcher.start())
