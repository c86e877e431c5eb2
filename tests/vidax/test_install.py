"""``/install`` (va/vidax/routes/install.py): asset status and installing them into the state dir."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.vidax.conftest import HEADERS


def test_install_routes(client: TestClient) -> None:
    status = client.get("/install/status", headers=HEADERS)
    assert status.status_code == 200 and {a["status"] for a in status.json()["assets"]} == {"missing"}
    done = client.post("/install", headers=HEADERS)
    assert done.status_code == 200 and done.json()["downloaded"] == 4
    assets = client.get("/install/status", headers=HEADERS).json()["assets"]
    assert {a["status"] for a in assets} == {"present"}
