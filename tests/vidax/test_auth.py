"""The API key (va/vidax/deps.py, va/vidax/settings.py's KeyRing): every route but /health and /ready
needs it, the OpenAPI document and the docs too unless ``public_docs``; keys rotate without a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi.testclient import TestClient

from tests.vidax.conftest import HEADERS, KEY, ClientFactory, assert_error

OPEN = {"/health", "/ready"}
DOCS = ("/openapi.json", "/docs", "/redoc")


def test_every_other_route_needs_the_key(client: TestClient) -> None:
    paths = client.get("/openapi.json", headers=HEADERS).json()["paths"]
    routes = [(path, method) for path, item in paths.items() if path not in OPEN for method in item]
    assert len(routes) >= 15
    for path, method in [*routes, *((path, "get") for path in DOCS)]:
        for headers in ({}, {"X-API-Key": "wrong-key-0123456789"}):
            response = client.request(method.upper(), path.replace("{job_id}", "job-x"), headers=headers)
            assert_error(response, 401, "UNAUTHORIZED")
    for path in OPEN:
        assert client.get(path).status_code == 200


def test_the_configured_key_opens_the_routes(client: TestClient) -> None:
    assert client.get("/jobs", headers=HEADERS).json() == {"jobs": []}
    assert_error(client.get("/jobs/job-x", headers=HEADERS), 404, "NOT_FOUND", "job-x")
    assert client.get("/docs", headers=HEADERS).headers["content-type"].startswith("text/html")
    assert client.get("/redoc", headers=HEADERS).status_code == 200


def test_public_docs_need_no_key(make_client: ClientFactory) -> None:
    with make_client(server={"api_keys": [KEY], "public_docs": True}) as client:
        for path in DOCS:
            assert client.get(path).status_code == 200, path
        assert client.get("/openapi.json").json()["info"]["title"] == "VIDAX"
        assert_error(client.get("/jobs"), 401, "UNAUTHORIZED")


def test_keys_rotate_when_the_config_changes(client: TestClient) -> None:
    config = Path(os.environ["VIDAX_CONFIG"])
    data = json.loads(config.read_text())
    new_key = "rotated-key-0123456789abcdef"
    data["server"]["api_keys"] = [new_key]
    config.write_text(json.dumps(data))
    assert_error(client.get("/jobs", headers=HEADERS), 401, "UNAUTHORIZED")
    assert client.get("/jobs", headers={"X-API-Key": new_key}).status_code == 200
    # A config that no longer loads keeps the keys in force (and says so in the server's log).
    config.write_text("{broken")
    assert client.get("/jobs", headers={"X-API-Key": new_key}).status_code == 200
    data["server"]["api_keys"] = []
    config.write_text(json.dumps(data))
    assert client.get("/jobs", headers={"X-API-Key": new_key}).status_code == 200
