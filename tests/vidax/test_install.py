"""``/install`` (va/vidax/routes/install.py): asset status and installing them into the state dir; the
operator's configs are never touched."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.vidax.conftest import HEADERS
from va.assets import load_assets_manifest
from va.config import user_config_dir


def test_install_routes(client: TestClient) -> None:
    status = client.get("/install/status", headers=HEADERS)
    assert status.status_code == 200 and {a["status"] for a in status.json()["assets"]} == {"missing"}
    done = client.post("/install", headers=HEADERS)
    assert done.status_code == 200 and done.json()["downloaded"] == len(load_assets_manifest().assets)
    assets = client.get("/install/status", headers=HEADERS).json()["assets"]
    assert {a["status"] for a in assets} == {"present"}


def test_install_with_force_never_rewrites_the_operators_configs(client: TestClient) -> None:
    configs = user_config_dir()
    configs.mkdir(parents=True, exist_ok=True)
    mine = {
        "vidax.json": '{"schema_version": 1, "server": {"api_keys": ["the-operators-key-0123"]}}\n',
        "lipsync.providers.json": '{"schema_version": 1, "providers": {}}\n',
    }
    for name, text in mine.items():
        (configs / name).write_text(text)
    for force in ("false", "true"):
        done = client.post(f"/install?force={force}", headers=HEADERS)
        assert done.status_code == 200, done.text
        assert not any(name.startswith("config/") for name in done.json()["files"]), done.json()["files"]
    assert {name: (configs / name).read_text() for name in mine} == mine
    assert sorted(path.name for path in configs.iterdir()) == sorted(mine)  # no backups, nothing added
