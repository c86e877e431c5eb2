"""``/comfyui`` (va/vidax/routes/comfyui.py, va/vidax/launcher.py): health of the configured ComfyUI,
starting it, and what a failed start says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import DOUBLE, free_port, wait_until_answering
from tests.vidax.conftest import HEADERS, ClientFactory, assert_error


def test_comfyui_health_and_start(make_client: ClientFactory, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "comfy").mkdir()
    double = [sys.executable, str(DOUBLE), "--port", str(port), "--root", str(tmp_path / "comfy")]
    comfyui = {"url": f"http://127.0.0.1:{port}", "command": double, "start_timeout_seconds": 30}
    with make_client(comfyui=comfyui) as client:
        launcher = client.app.state.launcher  # type: ignore[attr-defined]
        try:
            assert_error(client.get("/comfyui/health", headers=HEADERS), 503, "COMFYUI_UNAVAILABLE")
            started = client.post("/comfyui/start", headers=HEADERS)
            assert started.status_code == 200 and started.json()["started"] is True, started.text
            again = client.post("/comfyui/start", headers=HEADERS).json()
            assert again["started"] is False and again["already_running"] is True
            assert client.get("/comfyui/health", headers=HEADERS).json()["comfyui_version"] == "0.26.0"
        finally:
            if launcher.process is not None:
                launcher.process.terminate()
                launcher.process.wait(timeout=10)


def test_comfyui_start_failure_shows_its_log(make_client: ClientFactory) -> None:
    broken = [
        sys.executable,
        "-c",
        "print('loading custom nodes'); raise SystemExit('ModuleNotFoundError: torch')",
    ]
    comfyui = {"url": f"http://127.0.0.1:{free_port()}", "command": broken, "start_timeout_seconds": 10}
    with make_client(comfyui=comfyui) as client:
        response = client.post("/comfyui/start", headers=HEADERS)
    assert_error(response, 502, "COMFYUI_START_FAILED", "ModuleNotFoundError: torch")
    assert "loading custom nodes" in response.json()["error"]["message"]


def test_comfyui_health_reports_each_server_of_the_pool(make_client: ClientFactory, tmp_path: Path) -> None:
    """A pool of two doubles of different versions and one URL nobody answers: 200, each server's own
    state, the versions reported as mixed; 503 naming each when none answers."""
    ports, processes = [free_port(), free_port()], []
    try:
        for port, version in zip(ports, ("0.26.0", "0.25.1"), strict=True):
            (tmp_path / str(port)).mkdir()
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(DOUBLE),
                        "--port",
                        str(port),
                        "--root",
                        str(tmp_path / str(port)),
                        "--comfyui-version",
                        version,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_until_answering(f"http://127.0.0.1:{port}/system_stats", processes[-1], "a ComfyUI double")
        gone = f"http://127.0.0.1:{free_port()}"
        servers = [gone, *(f"http://127.0.0.1:{port}" for port in ports)]
        with make_client(comfyui={"url": gone, "servers": servers}) as client:
            body = client.get("/comfyui/health", headers=HEADERS).json()
        assert body["ok"] is True and body["url"] == servers[1] and body["mixed_versions"] is True
        assert [(s["url"], s["ok"], s["comfyui_version"]) for s in body["servers"]] == [
            (gone, False, None),
            (servers[1], True, "0.26.0"),
            (servers[2], True, "0.25.1"),
        ]
        with make_client(comfyui={"url": gone, "servers": [gone]}) as client:
            response = client.get("/comfyui/health", headers=HEADERS)
        assert_error(response, 503, "COMFYUI_UNAVAILABLE", f"{gone} is not reachable")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
