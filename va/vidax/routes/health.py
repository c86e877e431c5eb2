"""``GET /health``: the server answers (no key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

import va

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, Any]:
    """The server is up."""
    return {"status": "ok", "version": va.__version__}
