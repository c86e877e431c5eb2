"""``GET /health``: the server answers; ``GET /ready``: it takes more work (no key needed for either,
so load balancers and probes can ask)."""

from __future__ import annotations

from fastapi import APIRouter

import va
from va.vidax.deps import SettingsDep, StoreDep
from va.vidax.errors import ApiError, ErrorBody
from va.vidax.jobs import QUEUE_RETRY_AFTER_SECONDS
from va.vidax.models import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> Health:
    """The server is up."""
    return Health(status="ok", version=va.__version__)


@router.get(
    "/ready",
    responses={
        503: {
            "model": ErrorBody,
            "description": "QUEUE_FULL: max_queued_jobs or more jobs wait; Retry-After: when to ask again",
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
        }
    },
)
def ready(store: StoreDep, settings: SettingsDep) -> Ready:
    """Ready for more jobs while fewer than ``max_queued_jobs`` wait in the queue."""
    statuses = [store.refresh(record).status for record in store.all()]
    answer = Ready(
        ready=statuses.count("queued") < settings.max_queued_jobs,
        queued=statuses.count("queued"),
        running=statuses.count("running"),
        max_queued_jobs=settings.max_queued_jobs,
    )
    if answer.ready:
        return answer
    message = f"{answer.queued} jobs wait in the queue; max_queued_jobs is {answer.max_queued_jobs}"
    raise ApiError(503, "QUEUE_FULL", message, headers={"Retry-After": str(QUEUE_RETRY_AFTER_SECONDS)})
