"""``/install``: the state dir and its assets."""

from __future__ import annotations

from fastapi import APIRouter

from va import install
from va.errors import VaError
from va.vidax.deps import ApiKey
from va.vidax.errors import ApiError, error_responses
from va.vidax.models import InstallReport

router = APIRouter(
    prefix="/install", tags=["install"], dependencies=[ApiKey], responses=error_responses(401, 422)
)


@router.get("/status")
def install_status() -> InstallReport:
    """Which assets are present, missing or mismatched."""
    return InstallReport.model_validate(install.status().as_dict())


@router.post("", responses=error_responses(503))
def run_install(force: bool = False, with_optional: bool = False) -> InstallReport:
    """Create the state dir, fetch and verify assets (as ``va install``, but the configs are the
    operator's: never copied nor replaced, also with ``force``)."""
    try:
        report = install.install(force=force, with_optional=with_optional, progress=False, configs=False)
    except VaError as exc:
        raise ApiError.from_va(exc) from exc
    failure = report.failure()
    if failure is not None:
        raise ApiError.from_va(failure)
    return InstallReport.model_validate(report.as_dict())
