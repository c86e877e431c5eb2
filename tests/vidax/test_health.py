"""``GET /health`` (va/vidax/routes/health.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient

import va


def test_health_needs_no_key(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "version": va.__version__}
