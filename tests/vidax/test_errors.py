"""Errors in the one JSON form (va/vidax/errors.py: handlers, the catch-all, Starlette's plain-text
answers rewritten), a body over the limit refused with 413 (va/vidax/server.py's BodyLimit)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.vidax.conftest import HEADERS, ClientFactory, assert_error, job_document

AS_JSON = {**HEADERS, "content-type": "application/json"}


def test_request_errors_are_json(client: TestClient) -> None:
    assert_error(client.post("/jobs", content=b"{not json", headers=AS_JSON), 422, "VALIDATION_FAILED")
    assert_error(client.get("/jobs/job-nope", headers=HEADERS), 404, "NOT_FOUND", "job-nope")
    assert_error(client.get("/jobs/job-nope/final", headers=HEADERS), 404, "NOT_FOUND")
    assert_error(client.get("/jobs/x/logs?after=-1", headers=HEADERS), 422, "VALIDATION_FAILED", "after")
    assert_error(client.get("/jobs?status=bogus", headers=HEADERS), 422, "VALIDATION_FAILED")
    assert_error(client.post("/produce", json={"audio": "a"}, headers=HEADERS), 422, "VALIDATION_FAILED")
    assert_error(client.get("/nowhere", headers=HEADERS), 404, "NOT_FOUND")


def test_a_body_over_the_limit_gets_413(client: TestClient) -> None:
    announced = client.post("/jobs", content=b"x" * 70000, headers=HEADERS)
    assert_error(announced, 413, "PAYLOAD_TOO_LARGE", "65536")
    streamed = client.post("/jobs", content=(b"x" * 10000 for _ in range(7)), headers=AS_JSON)
    assert "content-length" not in streamed.request.headers  # sent chunked, the size unannounced
    assert_error(streamed, 413, "PAYLOAD_TOO_LARGE", "65536")
    assert client.get("/jobs", headers=HEADERS).json()["jobs"] == []


def test_a_wrong_method_is_405_with_the_allowed_ones(client: TestClient) -> None:
    answer = client.delete("/jobs", headers=HEADERS)
    assert_error(answer, 405, "METHOD_NOT_ALLOWED")
    # Every method of the path, where Starlette named only those of the first route it matched.
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_hostile_paths_and_ids_get_json_errors(client: TestClient, files: Any) -> None:
    """A NUL byte or a 10,000-character path in an input, a 300- or 5,000-character job id: each a
    JSON error, never a 500."""
    for audio in ("/x\x00y.wav", str(files.root / ("a" * 10000))):
        document = job_document(files)
        document["input"]["audio"] = audio
        assert_error(
            client.post("/jobs", json=document, headers=HEADERS), 422, "VALIDATION_FAILED", "input.audio"
        )
        body = {"audio": audio, "start": str(files.root / "start.png"), "prompt": "p"}
        assert_error(client.post("/produce", json=body, headers=HEADERS), 422, "VALIDATION_FAILED", "audio")
    for length in (300, 5000):
        job_id = "j" * length
        for method, path in (("GET", ""), ("POST", "/start"), ("GET", "/final"), ("GET", "/logs")):
            answer = client.request(method, f"/jobs/{job_id}{path}", headers=HEADERS)
            assert_error(answer, 404, "NOT_FOUND", f"({length} characters)")
            assert len(answer.text) < 300


def test_range_errors_are_json(client: TestClient, files: Any) -> None:
    job_id = client.post("/jobs", json=job_document(files), headers=HEADERS).json()["id"]
    final = client.app.state.store.root / job_id / "final.mp4"  # type: ignore[attr-defined]
    final.write_bytes(b"\0" * 1000)
    for header, status in (("bytes=5-2", 400), ("abc", 400), ("bytes=5000-6000", 416)):
        answer = client.get(f"/jobs/{job_id}/final", headers={**HEADERS, "Range": header})
        assert_error(answer, status, "BAD_REQUEST" if status == 400 else "RANGE_NOT_SATISFIABLE")
    assert answer.headers["content-range"] == "bytes */1000"


def test_an_unexpected_error_is_internal_json_without_a_traceback(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("va.vidax.routes.jobs.JobStore.all", broken)
    with make_client() as client, TestClient(client.app, raise_server_exceptions=False) as raw:
        answer = raw.get("/jobs", headers=HEADERS)
    assert_error(answer, 500, "INTERNAL", "server log")
    assert "secret" not in answer.text and "Traceback" not in answer.text
