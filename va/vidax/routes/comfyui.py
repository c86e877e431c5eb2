"""``/comfyui``: is each configured ComfyUI server healthy; start the configured one."""

from __future__ import annotations

from fastapi import APIRouter

from va.comfyui.health import check_pool
from va.comfyui.pool import resolve_pool
from va.vidax.deps import ApiKey, LauncherDep, SettingsDep
from va.vidax.errors import ApiError, error_responses
from va.vidax.models import ComfyHealth, ComfyServerHealth, ComfyStart

router = APIRouter(prefix="/comfyui", tags=["comfyui"], dependencies=[ApiKey], responses=error_responses(401))


@router.get("/health", responses=error_responses(503))
def comfyui_health(settings: SettingsDep) -> ComfyHealth:
    """``/system_stats`` (falling back to ``/health``) of every server of the configured pool; 503 when
    none answers. The top-level ``url``, ``endpoint`` and ``comfyui_version`` are the first healthy one's."""
    answers = check_pool(resolve_pool(None, {}, settings.comfyui.section).servers)
    healthy = [health for health in answers if health.ok]
    if not healthy:
        problems = "; ".join(f"{health.url} is not reachable: {health.message}" for health in answers)
        raise ApiError(503, "COMFYUI_UNAVAILABLE", f"ComfyUI at {problems}")
    first = healthy[0]
    return ComfyHealth(
        ok=True,
        url=first.url,
        endpoint=first.endpoint,
        comfyui_version=first.version,
        servers=[
            ComfyServerHealth(
                url=h.url, ok=h.ok, endpoint=h.endpoint, comfyui_version=h.version, message=h.message
            )
            for h in answers
        ],
        mixed_versions=len({health.version for health in healthy}) > 1,
    )


@router.post("/start", responses=error_responses(502))
def comfyui_start(launcher: LauncherDep) -> ComfyStart:
    """Start the configured ComfyUI command and wait until it is healthy (never starts two)."""
    return launcher.start()
