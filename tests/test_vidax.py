"""VIDAX through FastAPI's TestClient: auth on every route, errors, jobs from creation to the final video."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import CliRunner, Media, ffprobe_streams
from tests.test_comfyui import DOUBLE, free_port
from va.errors import ExitCode, VaError
from va.vidax.launcher import resolve_command
from va.vidax.server import create_app
from va.vidax.settings import load_settings

KEY = "test-key-0123456789abcdef"
HEADERS = {"X-API-Key": KEY}


def write_config(folder: Path, roots: list[Path], **extra: Any) -> Path:
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
def client(files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("VIDAX_CONFIG", str(write_config(tmp_path, [files.root])))
    app = create_app(load_settings())
    with TestClient(app) as test_client:
        yield test_client


def job_document(files: Media, **sections: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(files.job().read_text())
    document["input"] = {"audio": str(files.root / "voice.wav"), "start": str(files.root / "start.png")}
    document.update(sections)
    return document


def wait_for(client: TestClient, job_id: str, statuses: set[str], seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        view: dict[str, Any] = client.get(f"/jobs/{job_id}", headers=HEADERS).json()
        if view["status"] in statuses:
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.2)


def assert_error(response: Any, status: int, code: str, needle: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert needle in body["error"]["message"]


def test_health_needs_no_key(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"


def test_every_other_route_needs_the_key(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routes = [(path, method) for path, item in paths.items() if path != "/health" for method in item]
    assert len(routes) >= 14
    for path, method in routes:
        for headers in ({}, {"X-API-Key": "wrong-key-0123456789"}):
            response = client.request(method.upper(), path.replace("{job_id}", "job-x"), headers=headers)
            assert_error(response, 401, "UNAUTHORIZED")


def test_the_server_refuses_to_start_without_a_key(tmp_path: Path, va_cli: CliRunner) -> None:
    config = tmp_path / "vidax.json"
    config.write_text(json.dumps({"schema_version": 1, "server": {"api_keys": []}}))
    result = va_cli("serve", env={"VIDAX_CONFIG": str(config)})
    assert result.code == ExitCode.VALIDATION_FAILED
    assert "api_keys is empty" in result.err and len(result.err.strip().splitlines()) == 1


def test_input_paths_are_confined_to_the_roots(
    client: TestClient, files: Media, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "voice.wav").write_bytes((files.root / "voice.wav").read_bytes())
    (files.root / "sneaky.wav").symlink_to(outside / "voice.wav")
    cases = [
        (str(outside / "voice.wav"), "INPUT_OUTSIDE_ROOTS"),
        (str(files.root / "sneaky.wav"), "INPUT_OUTSIDE_ROOTS"),
        (str(files.root / ".." / outside.name / "voice.wav"), "INPUT_OUTSIDE_ROOTS"),
        ("voice.wav", "VALIDATION_FAILED"),
    ]
    for audio, code in cases:
        document = job_document(files)
        document["input"]["audio"] = audio
        assert_error(client.post("/jobs", json=document, headers=HEADERS), 422, code, "input.audio")


@pytest.mark.parametrize(
    ("change", "code", "needle"),
    [
        ({"bogus": 1}, "VALIDATION_FAILED", "unknown key 'bogus'"),
        ({"determinism": {"seed_policy": "fixed"}}, "VALIDATION_FAILED", "seed"),
        ({"input": {"audio": "MISSING", "start": "START"}}, "INPUT_NOT_FOUND", "input.audio"),
        ({"input": {"audio": "TEXT", "start": "START"}}, "UNSUPPORTED_FORMAT", "input.audio"),
    ],
)
def test_bad_jobs_are_refused(
    client: TestClient, files: Media, change: dict[str, Any], code: str, needle: str
) -> None:
    (files.root / "notes.wav").write_text("not audio")
    document = job_document(files, **change)
    paths = {"MISSING": str(files.root / "nope.wav"), "TEXT": str(files.root / "notes.wav"),
             "START": str(files.root / "start.png")}  # fmt: skip
    if "input" in change:
        document["input"] = {key: paths[value] for key, value in change["input"].items()}
    assert_error(client.post("/jobs", json=document, headers=HEADERS), 422, code, needle)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest",
        "http://127.0.0.1:8188@169.254.169.254/",
        "http://127.0.0.1:8189",
        "https://127.0.0.1:8188",
        "http://127.0.0.1:8188/../other",
        "http://127.0.0.1:8188?x=1",
        "http://127.0.0.1:8188\n",
        "http://127.0.0.1:99999",
    ],
)
def test_a_job_may_not_name_another_comfyui(client: TestClient, files: Media, url: str) -> None:
    document = job_document(files, comfyui={"url": url})
    assert_error(
        client.post("/jobs", json=document, headers=HEADERS), 422, "VALIDATION_FAILED", "comfyui.url"
    )
    assert client.get("/jobs", headers=HEADERS).json()["jobs"] == []


def test_a_job_may_name_the_configured_comfyui_or_an_allowed_one(
    files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comfyui = {"url": "http://127.0.0.1:8188", "allowed_urls": ["https://gpu.example:8443/comfy/"]}
    monkeypatch.setenv("VIDAX_CONFIG", str(write_config(tmp_path, [files.root], comfyui=comfyui)))
    with TestClient(create_app(load_settings(), run_scheduler=False)) as client:
        for url in ("http://127.0.0.1:8188", "http://127.0.0.1:8188/", "https://GPU.example:8443/comfy"):
            created = client.post("/jobs", json=job_document(files, comfyui={"url": url}), headers=HEADERS)
            assert created.status_code == 201, created.text
        refused = client.post(
            "/jobs", json=job_document(files, comfyui={"url": "https://gpu.example/comfy"}), headers=HEADERS
        )
        assert_error(refused, 422, "VALIDATION_FAILED", "comfyui.url")


def test_request_errors_are_json(client: TestClient) -> None:
    as_json = {**HEADERS, "content-type": "application/json"}
    assert_error(client.post("/jobs", content=b"{not json", headers=as_json), 422, "VALIDATION_FAILED")
    assert_error(client.post("/jobs", content=b"x" * 70000, headers=HEADERS), 413, "PAYLOAD_TOO_LARGE")
    streamed = client.post("/jobs", content=(b"x" * 10000 for _ in range(7)), headers=as_json)
    assert "content-length" not in streamed.request.headers  # sent chunked, the size unannounced
    assert_error(streamed, 413, "PAYLOAD_TOO_LARGE")
    assert_error(client.get("/jobs/job-nope", headers=HEADERS), 404, "NOT_FOUND", "job-nope")
    assert_error(client.get("/jobs/job-nope/final", headers=HEADERS), 404, "NOT_FOUND")
    assert_error(client.get("/jobs/x/logs?after=-1", headers=HEADERS), 422, "VALIDATION_FAILED", "after")
    assert_error(client.get("/jobs?status=bogus", headers=HEADERS), 422, "VALIDATION_FAILED")
    assert_error(client.post("/produce", json={"audio": "a"}, headers=HEADERS), 422, "VALIDATION_FAILED")
    assert_error(client.get("/nowhere", headers=HEADERS), 404, "NOT_FOUND")


def test_a_job_from_creation_to_its_final_video(client: TestClient, files: Media) -> None:
    created = client.post("/jobs", json=job_document(files), headers=HEADERS)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["status"] == "created"
    assert_error(client.get(f"/jobs/{job_id}/manifest", headers=HEADERS), 404, "NOT_FOUND", "not started")
    assert_error(client.post(f"/jobs/{job_id}/cancel", headers=HEADERS), 409, "CONFLICT")
    assert client.post(f"/jobs/{job_id}/start", headers=HEADERS).status_code == 202
    assert_error(client.post(f"/jobs/{job_id}/start", headers=HEADERS), 409, "CONFLICT")
    view = wait_for(client, job_id, {"succeeded", "failed"})
    assert view["status"] == "succeeded", view
    assert view["final"]["available"] and view["timings"]["encode"] is not None
    manifest = client.get(f"/jobs/{job_id}/manifest", headers=HEADERS).json()
    assert manifest["run_status"] == "succeeded" and manifest["target_frames"] == 50

    logs = client.get(f"/jobs/{job_id}/logs", headers=HEADERS).json()
    assert logs["events"][0]["kind"] == "run_started"
    later = client.get(f"/jobs/{job_id}/logs?after={logs['next'] - 2}", headers=HEADERS).json()
    assert later["events"] == logs["events"][-2:] and later["next"] == logs["next"]

    whole = client.get(f"/jobs/{job_id}/final", headers=HEADERS)
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    part = client.get(f"/jobs/{job_id}/final", headers={**HEADERS, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"

    assert [j["id"] for j in client.get("/jobs?status=succeeded", headers=HEADERS).json()["jobs"]] == [job_id]
    assert client.get("/jobs?status=running", headers=HEADERS).json()["jobs"] == []
    assert_error(client.post(f"/jobs/{job_id}/resume", headers=HEADERS), 409, "RESUME_NOT_POSSIBLE")


def test_produce_creates_and_starts(client: TestClient, files: Media) -> None:
    body = {
        "audio": str(files.root / "voice.wav"),
        "start": str(files.root / "start.png"),
        "prompt": "push-in",
        "fps": 24,
        "seed": 9,
        "no_comfyui": True,
        "lipsync": "on",
        "lipsync_provider": "audiogram",
    }
    response = client.post("/produce", json=body, headers=HEADERS)
    assert response.status_code == 202, response.text
    view = wait_for(client, response.json()["id"], {"succeeded", "failed"})
    assert view["status"] == "succeeded", view
    final = client.get(f"/jobs/{view['id']}/final", headers=HEADERS)
    assert 'filename="fertig.mp4"' in final.headers["content-disposition"]
    outside = client.post("/produce", json={**body, "audio": "/etc/passwd"}, headers=HEADERS)
    assert_error(outside, 422, "INPUT_OUTSIDE_ROOTS")


def test_cancel_and_resume(client: TestClient, files: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = files.root / "slow-ffmpeg"
    slow.write_text('#!/bin/sh\nsleep 2\nexec ffmpeg "$@"\n')
    slow.chmod(0o755)
    monkeypatch.setenv("FFMPEG", str(slow))  # inherited by the runs the server starts
    job_id = client.post("/jobs", json=job_document(files), headers=HEADERS).json()["id"]
    client.post(f"/jobs/{job_id}/start", headers=HEADERS)
    wait_for(client, job_id, {"running"})
    while not client.get(f"/jobs/{job_id}", headers=HEADERS).json()["phase"]:
        time.sleep(0.1)  # cancel while a rule runs
    assert client.post(f"/jobs/{job_id}/cancel", headers=HEADERS).status_code == 200
    view = wait_for(client, job_id, {"cancelled", "succeeded", "failed", "interrupted"})
    assert view["status"] == "cancelled", view
    monkeypatch.delenv("FFMPEG")
    assert client.post(f"/jobs/{job_id}/resume", headers=HEADERS).status_code == 202
    assert wait_for(client, job_id, {"succeeded", "failed", "interrupted"})["status"] == "succeeded"
    manifest = client.get(f"/jobs/{job_id}/manifest", headers=HEADERS).json()
    assert manifest["attempts"] == 2


def test_install_routes(client: TestClient) -> None:
    status = client.get("/install/status", headers=HEADERS)
    assert status.status_code == 200 and {a["status"] for a in status.json()["assets"]} == {"missing"}
    done = client.post("/install", headers=HEADERS)
    assert done.status_code == 200 and done.json()["downloaded"] == 4
    assert {a["status"] for a in client.get("/install/status", headers=HEADERS).json()["assets"]} == {
        "present"
    }


def test_comfyui_health_and_start(files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    double = [sys.executable, str(DOUBLE), "--port", str(port), "--root", str(tmp_path / "comfy")]
    (tmp_path / "comfy").mkdir()
    comfyui = {"url": f"http://127.0.0.1:{port}", "command": double, "start_timeout_seconds": 30}
    monkeypatch.setenv("VIDAX_CONFIG", str(write_config(tmp_path, [files.root], comfyui=comfyui)))
    with TestClient(create_app(load_settings(), run_scheduler=False)) as client:
        assert_error(client.get("/comfyui/health", headers=HEADERS), 503, "COMFYUI_UNAVAILABLE")
        started = client.post("/comfyui/start", headers=HEADERS)
        assert started.status_code == 200 and started.json()["started"] is True, started.text
        again = client.post("/comfyui/start", headers=HEADERS).json()
        assert again["started"] is False and again["already_running"] is True
        assert client.get("/comfyui/health", headers=HEADERS).json()["comfyui_version"] == "0.26.0"
        client.app.state.launcher.process.terminate()  # type: ignore[attr-defined]


def test_comfyui_start_failure_shows_its_log(
    files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = [
        sys.executable,
        "-c",
        "print('loading custom nodes'); raise SystemExit('ModuleNotFoundError: torch')",
    ]
    comfyui = {"url": f"http://127.0.0.1:{free_port()}", "command": broken, "start_timeout_seconds": 10}
    monkeypatch.setenv("VIDAX_CONFIG", str(write_config(tmp_path, [files.root], comfyui=comfyui)))
    with TestClient(create_app(load_settings(), run_scheduler=False)) as client:
        response = client.post("/comfyui/start", headers=HEADERS)
    assert_error(response, 502, "COMFYUI_START_FAILED", "ModuleNotFoundError: torch")


def test_settings_need_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vidax.json"
    path.write_text(json.dumps({"schema_version": 1}))
    monkeypatch.setenv("VIDAX_CONFIG", str(path))
    with pytest.raises(VaError) as caught:
        load_settings()
    assert caught.value.code == ExitCode.VALIDATION_FAILED


def test_final_video_contract_through_the_api(client: TestClient, files: Media, tmp_path: Path) -> None:
    job_id = client.post("/jobs", json=job_document(files), headers=HEADERS).json()["id"]
    client.post(f"/jobs/{job_id}/start", headers=HEADERS)
    assert wait_for(client, job_id, {"succeeded", "failed"})["status"] == "succeeded"
    target = tmp_path / "downloaded.mp4"
    target.write_bytes(client.get(f"/jobs/{job_id}/final", headers=HEADERS).content)
    assert int(ffprobe_streams(target)["video"]["nb_read_frames"]) == 50


@pytest.mark.parametrize(
    ("platform", "venv_python"), [("linux", "venv/bin/python"), ("win32", "venv/Scripts/python.exe")]
)
def test_comfyui_command_prefers_the_venv_python(tmp_path: Path, platform: str, venv_python: str) -> None:
    command = ["python", "main.py", "--listen", "127.0.0.1", "--port", "8188"]
    assert resolve_command(command, tmp_path, platform) == command  # no venv: python from PATH
    (tmp_path / venv_python).parent.mkdir(parents=True)
    (tmp_path / venv_python).write_text("")
    assert resolve_command(command, tmp_path, platform) == [str(tmp_path / venv_python), *command[1:]]
    assert resolve_command(["/usr/bin/python3", "main.py"], tmp_path, platform)[0] == "/usr/bin/python3"
