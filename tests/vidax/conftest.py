"""Fixtures of the VIDAX tests: a vidax.json writer, the app in-process through TestClient, the key."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Media
from va.vidax.server import create_app
from va.vidax.settings import load_settings

KEY = "test-key-0123456789abcdef"
HEADERS = {"X-API-Key": KEY}
#: Every status a job ends in; waiting for one of them never waits for a job that has stopped.
ENDED = {"succeeded", "failed", "interrupted", "cancelled"}

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


def write_config(folder: Path, roots: list[Path], **extra: Any) -> Path:
    """A vidax.json in ``folder`` with the test key, a 64 KiB body limit and runs under ``folder/runs``;
    ``extra`` adds or replaces top-level sections."""
    config = {
        "schema_version": 1,
        "server": {"api_keys": [KEY], "max_body_bytes": 65536},
        "input_roots": [str(root) for root in roots],
        "runs_root": str(folder / "runs"),
        **extra,
    }
    path = folder / "vidax.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def make_client(files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClientFactory:
    """``with make_client(scheduler=..., **config) as client``: the app of a fresh vidax.json (input root:
    the ``files`` folder) in this process; with ``scheduler`` its jobs really run."""

    @contextmanager
    def make(*, scheduler: bool = False, **extra: Any) -> Iterator[TestClient]:
        monkeypatch.setenv("VIDAX_CONFIG", str(write_config(tmp_path, [files.root], **extra)))
        with TestClient(create_app(load_settings(), run_scheduler=scheduler)) as test_client:
            yield test_client

    return make


@pytest.fixture
def client(make_client: ClientFactory) -> Iterator[TestClient]:
    """The app without its scheduler: jobs can be created, queued and cancelled, but none runs."""
    with make_client() as test_client:
        yield test_client


@pytest.fixture
def running_client(make_client: ClientFactory) -> Iterator[TestClient]:
    """The app with its scheduler: a started job runs as a real ``va run`` process."""
    with make_client(scheduler=True) as test_client:
        yield test_client


def job_document(files: Media, **sections: Any) -> dict[str, Any]:
    """The job of ``files`` (2 s of audio, 25 fps, no ComfyUI, no lip-sync) with absolute input paths."""
    document: dict[str, Any] = json.loads(files.job().read_text())
    document["input"] = {"audio": str(files.root / "voice.wav"), "start": str(files.root / "start.png")}
    document.update(sections)
    return document


def until(what: Callable[[], Any], describe: Callable[[], Any], seconds: float = 120) -> Any:
    """Poll ``what`` until it is truthy and return it; after ``seconds`` fail with ``describe()``."""
    deadline = time.monotonic() + seconds
    while not (value := what()):
        assert time.monotonic() < deadline, describe()
        time.sleep(0.1)
    return value


def wait_for(client: TestClient, job_id: str, statuses: set[str], seconds: float = 120) -> dict[str, Any]:
    """The job's view once its status is one of ``statuses``; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        view: dict[str, Any] = client.get(f"/jobs/{job_id}", headers=HEADERS).json()
        if view["status"] in statuses:
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.1)


def assert_error(response: Any, status: int, code: str, needle: str = "") -> None:
    """The response is the API's one error form with this status and code, its message naming ``needle``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert needle in body["error"]["message"], body
