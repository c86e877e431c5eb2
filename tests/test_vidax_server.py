"""VIDAX as a real server process on a loopback port: a job through the API, a streamed oversize body,
restart recovery, fuzzing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import Media
from tests.test_comfyui import free_port
from tests.test_vidax import HEADERS, write_config
from va.vidax.server import create_app
from va.vidax.settings import load_settings


class Server:
    """One ``python -m va.vidax`` process."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config, self.env = config, env
        self.url = f"http://127.0.0.1:{json.loads(config.read_text())['server']['port']}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "va.vidax"],
            env={**os.environ, **self.env, "VIDAX_CONFIG": str(self.config)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/health", timeout=1)
                return
            except requests.ConnectionError:
                assert time.monotonic() < deadline and self.process.poll() is None, "the server did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def get(self, path: str) -> Any:
        return requests.get(self.url + path, headers=HEADERS, timeout=10).json()

    def post(self, path: str, body: Any = None) -> requests.Response:
        return requests.post(self.url + path, json=body, headers=HEADERS, timeout=30)

    def wait(self, job_id: str, statuses: set[str], seconds: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            view: dict[str, Any] = self.get(f"/jobs/{job_id}")
            if view["status"] in statuses:
                return view
            assert time.monotonic() < deadline, view
            time.sleep(0.2)


@pytest.fixture
def server_factory(files: Media, tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(env: dict[str, str] | None = None) -> Server:
        port = free_port()
        config = write_config(tmp_path, [files.root])
        data = json.loads(config.read_text())
        data["server"]["port"] = port
        config.write_text(json.dumps(data))
        server = Server(config, env or {})
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def produce_body(files: Media) -> dict[str, Any]:
    return {"audio": str(files.root / "voice.wav"), "start": str(files.root / "start.png"),
            "prompt": "slow push-in", "no_comfyui": True}  # fmt: skip


def test_a_job_through_the_real_server(files: Media, server_factory: Any) -> None:
    server = server_factory()
    server.start()
    assert requests.get(f"{server.url}/jobs", timeout=5).status_code == 401
    response = server.post("/produce", produce_body(files))
    assert response.status_code == 202, response.text
    view = server.wait(response.json()["id"], {"succeeded", "failed"})
    assert view["status"] == "succeeded", view
    video = requests.get(
        f"{server.url}/jobs/{view['id']}/final", headers={**HEADERS, "Range": "bytes=0-99"}, timeout=10
    )
    assert video.status_code == 206 and len(video.content) == 100
    assert requests.get(f"{server.url}/openapi.json", timeout=5).json()["info"]["title"] == "VIDAX"


def test_a_streamed_oversize_body_gets_413(server_factory: Any) -> None:
    """A chunked body announces no size; the server counts what arrives and answers 413 in JSON."""
    server = server_factory()
    server.start()
    chunk = b"x" * 10000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    head = (
        "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {HEADERS['X-API-Key']}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head.encode() + body)
        answer = b""
        # The server closes the connection after the answer (a reset, if part of the body is unread).
        with contextlib.suppress(ConnectionResetError):
            while data := connection.recv(65536):
                answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"413", answer[:300]
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE" and "65536" in error["message"]


def test_restart_recovery(files: Media, server_factory: Any, tmp_path: Path) -> None:
    slow = tmp_path / "slow-ffmpeg"
    slow.write_text('#!/bin/sh\nsleep 1\nexec ffmpeg "$@"\n')
    slow.chmod(0o755)
    server = server_factory({"FFMPEG": str(slow)})
    server.start()
    first = server.post("/produce", produce_body(files)).json()["id"]
    second = server.post("/produce", produce_body(files)).json()["id"]  # waits: max_parallel_runs is 1
    server.wait(first, {"running"})
    while not server.get(f"/jobs/{first}")["phase"]:
        time.sleep(0.1)
    server.kill()

    server.env = {}
    server.start()
    # The orphaned run notices that its server is gone, stops, and records itself as interrupted.
    recovered = server.wait(first, {"interrupted", "succeeded", "failed"}, seconds=60)
    assert recovered["status"] == "interrupted", recovered
    assert recovered["exit_status"]["name"] == "INTERRUPTED"
    assert server.get(f"/jobs/{second}")["status"] in ("queued", "running")  # the queue survived
    assert server.post(f"/jobs/{first}/resume").status_code == 202
    assert server.wait(first, {"succeeded", "failed"})["status"] == "succeeded"
    assert server.wait(second, {"succeeded", "failed"})["status"] == "succeeded"
    manifest = server.get(f"/jobs/{first}/manifest")
    assert manifest["attempts"] == 2 and manifest["run_status"] == "succeeded"


@pytest.fixture
def fuzz_app(files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("VIDAX_CONFIG", str(write_config(tmp_path, [files.root])))
    return create_app(load_settings(), run_scheduler=False)


def test_schemathesis_finds_no_server_error(fuzz_app: Any) -> None:
    """Every operation but the two that talk to ComfyUI (whose 502/503 report an unreachable upstream)
    is fuzzed from the served OpenAPI document; no answer may be a 5xx."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    failures = []
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/comfyui") or operation.path == "/install":
            continue

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            case.headers = {**(case.headers or {}), **HEADERS}
            response = case.call()
            key = f"{case.method} {case.operation.path}"
            calls[key] = calls.get(key, 0) + 1
            if response.status_code >= 500:
                failures.append((case.method, case.path, response.status_code, response.text[:200]))

        check()
    assert failures == []
    assert len(calls) >= 11 and sum(calls.values()) >= 100, calls  # every operation was exercised
