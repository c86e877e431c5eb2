"""``GET /health`` and ``GET /ready`` (va/vidax/routes/health.py): no key needed."""

from __future__ import annotations

from fastapi.testclient import TestClient

import va
from tests.conftest import Media
from tests.vidax.conftest import HEADERS, ClientFactory, assert_error, job_document


def test_health_needs_no_key(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "version": va.__version__}


def test_ready_until_the_queue_is_full(make_client: ClientFactory, files: Media) -> None:
    """No scheduler runs here, so a started job stays queued."""
    with make_client(max_queued_jobs=2) as client:
        for queued in range(2):
            assert client.get("/ready").json() == {
                "ready": True,
                "queued": queued,
                "running": 0,
                "max_queued_jobs": 2,
            }
            job_id = client.post("/jobs", json=job_document(files), headers=HEADERS).json()["id"]
            assert client.post(f"/jobs/{job_id}/start", headers=HEADERS).status_code == 202
        full = client.get("/ready")
        assert_error(full, 503, "QUEUE_FULL", "2 jobs wait")
        assert full.headers["retry-after"] == "30"
        # The limit is enforced, not only reported: a third start and a /produce are refused alike, and
        # the refused /produce leaves no job behind.
        third = client.post("/jobs", json=job_document(files), headers=HEADERS).json()["id"]
        refused = client.post(f"/jobs/{third}/start", headers=HEADERS)
        assert_error(refused, 503, "QUEUE_FULL", "max_queued_jobs is 2")
        assert refused.headers["retry-after"] == "30"
        jobs = len(client.get("/jobs", headers=HEADERS).json()["jobs"])
        produce = {"audio": "voice.wav", "start": "start.png", "prompt": "p", "no_comfyui": True}
        assert_error(client.post("/produce", json=produce, headers=HEADERS), 503, "QUEUE_FULL")
        assert len(client.get("/jobs", headers=HEADERS).json()["jobs"]) == jobs
        client.post(f"/jobs/{job_id}/cancel", headers=HEADERS)
        assert client.get("/ready").json()["ready"] is True
