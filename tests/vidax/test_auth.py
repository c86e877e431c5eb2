"""The API key (va/vidax/deps.py): every route but /health needs it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.vidax.conftest import HEADERS, assert_error


def test_every_other_route_needs_the_key(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routes = [(path, method) for path, item in paths.items() if path != "/health" for method in item]
    assert len(routes) >= 14
    for path, method in routes:
        for headers in ({}, {"X-API-Key": "wrong-key-0123456789"}):
            response = client.request(method.upper(), path.replace("{job_id}", "job-x"), headers=headers)
            assert_error(response, 401, "UNAUTHORIZED")


def test_the_configured_key_opens_the_routes(client: TestClient) -> None:
    assert client.get("/jobs", headers=HEADERS).json() == {"jobs": []}
    assert_error(client.get("/jobs/job-x", headers=HEADERS), 404, "NOT_FOUND", "job-x")
