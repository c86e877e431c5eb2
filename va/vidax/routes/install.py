"""``/install``: the state dir and its assets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from va import install
from va.errors import VaError
from va.vidax.deps import ApiKey
from va.vidax.errors import ApiError, error_responses

router = APIRouter(
    prefix="/install", tags=["install"], dependencies=[ApiKey], responses=error_responses(401, 422)
)


@router.get("/status")
def install_status() -> dict[str, Any]:
    """Which assets are present, missing or mismatched."""
    return install.status().as_dict()


@router.post("", responses=error_responses(503))
def run_install(force: bool = False, with_optional: bool = False) -> dict[str, Any]:
    """Create the state dir, fetch and verify assets (as ``va install``, but the configs are the
    operator's: never copied nor replaced, also with ``force``)."""
    try:
        report = install.install(force=force, with_optional=with_optional, progress=False, configs=False)
    except VaError as exc:
        raise ApiError.from_va(exc) from exc
    failure = report.failure()
    if failure is not None:
        raise ApiError.from_va(failure)
    return report.as_dict()
