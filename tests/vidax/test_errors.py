"""Errors in the one JSON form (va/vidax/errors.py), a body over the limit refused with 413
(va/vidax/server.py's BodyLimit)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.vidax.conftest import HEADERS, assert_error

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
    # Starlette names the methods of the first route of that path it matched (here one of GET, POST).
    allowed = set(answer.headers["allow"].replace(" ", "").split(","))
    assert allowed and allowed <= {"GET", "POST"}
