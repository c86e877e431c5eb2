"""``/comfyui`` (va/vidax/routes/comfyui.py, va/vidax/launcher.py): health of the configured ComfyUI,
starting it, and what a failed start says."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import DOUBLE, free_port
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
