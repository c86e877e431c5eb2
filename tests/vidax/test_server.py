"""VIDAX as a real server process on a loopback port (va/vidax/server.py, ``python -m va.vidax``):
what only a process shows — a job through uvicorn (``/produce``, with lip-sync), a streamed oversize
body on the wire, restart recovery."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import (
    MARKER,
    RULE_FFMPEG,
    Media,
    free_port,
    slow_ffmpeg,
    wait_no_process_marked,
    wait_until_answering,
)
from tests.vidax.conftest import ENDED, HEADERS, KEY, until, write_config

#: Whole runs: tests/conftest.py runs the tests of this file before the in-process ones.
pytestmark = pytest.mark.whole_run


class Server:
    """One ``python -m va.vidax`` process."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config, self.env = config, env
        self.port = int(json.loads(config.read_text())["server"]["port"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.headers = dict(HEADERS)  # the key in force

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "va.vidax"],
            env={**os.environ, **self.env, "VIDAX_CONFIG": str(self.config)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_answering(f"{self.url}/health", self.process, "the server")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def get(self, path: str) -> Any:
        return requests.get(self.url + path, headers=self.headers, timeout=10).json()

    def post(self, path: str, body: Any = None) -> requests.Response:
        return requests.post(self.url + path, json=body, headers=self.headers, timeout=30)

    def wait(self, job_id: str, statuses: set[str], seconds: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            view: dict[str, Any] = self.get(f"/jobs/{job_id}")
            if view["status"] in statuses:
                return view
            assert time.monotonic() < deadline, view
            time.sleep(0.1)

    def events(self, job_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.get(f"/jobs/{job_id}/logs")["events"]
        return events


ServerFactory = Callable[..., Server]


@pytest.fixture
def server_factory(files: Media, tmp_path: Path) -> Iterator[ServerFactory]:
    """Makes servers (not yet started) on a free loopback port, serving the ``files`` folder."""
    servers: list[Server] = []

    def make(env: dict[str, str] | None = None) -> Server:
        config = write_config(tmp_path, [files.root])
        data = json.loads(config.read_text())
        data["server"]["port"] = free_port()
        config.write_text(json.dumps(data))
        server = Server(config, env or {})
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def produce_body(files: Media, **extra: Any) -> dict[str, Any]:
    return {
        "audio": str(files.root / "voice.wav"),
        "start": str(files.root / "start.png"),
        "prompt": "slow push-in",
        "no_comfyui": True,
        **extra,
    }


def test_a_streamed_oversize_body_gets_413(server_factory: ServerFactory) -> None:
    """A chunked body announces no size; the server counts what arrives and answers 413 in JSON."""
    server = server_factory()
    server.start()
    chunk = b"x" * 10000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    head = (
        "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
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
    assert server.get("/jobs")["jobs"] == []


def test_restart_recovery_and_a_job_through_the_real_server(
    files: Media, server_factory: ServerFactory, tmp_path: Path
) -> None:
    """One server process, killed while a run is inside a rule and started again: the orphaned run stops
    and is resumed, and the job queued behind it (a lip-sync ``/produce``) survives and runs on the
    restarted server, which shows what a job through uvicorn shows: the key rotated by SIGHUP while a job
    runs, the final in ranges, the events as Server-Sent Events. (One server and its runs for both, where
    each took a server and a whole run of its own.)"""
    slow = slow_ffmpeg(tmp_path, 2.0, only=RULE_FFMPEG["prepare_audio"])  # inside prepare_audio for 2 s
    marker = uuid.uuid4().hex  # every process of the first server and its runs
    server = server_factory({"FFMPEG": str(slow), MARKER: marker})
    server.start()
    assert requests.get(f"{server.url}/jobs", timeout=5).status_code == 401
    assert requests.get(f"{server.url}/openapi.json", timeout=5).status_code == 401
    assert (
        requests.get(f"{server.url}/openapi.json", headers=HEADERS, timeout=5).json()["info"]["title"]
        == "VIDAX"
    )
    first = server.post("/produce", produce_body(files)).json()["id"]
    lipsync = {"lipsync": "on", "lipsync_provider": "audiogram", "fps": 24, "seed": 9}
    response = server.post("/produce", produce_body(files, **lipsync))  # waits: max_parallel_runs is 1
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    second = response.json()["id"]
    until(
        lambda: any(e["kind"] == "rule_started" for e in server.events(first)),
        lambda: server.get(f"/jobs/{first}"),
        seconds=60,
    )  # the first job's run is inside a rule
    assert server.get(f"/jobs/{second}")["status"] == "queued"
    server.kill()

    server.env = {}
    server.start()
    # The orphaned run notices that its server is gone, stops, and records itself as interrupted.
    recovered = server.wait(first, {"interrupted", "succeeded", "failed"}, seconds=60)
    assert recovered["status"] == "interrupted", recovered
    assert recovered["exit_status"]["name"] == "INTERRUPTED"
    wait_no_process_marked(marker, seconds=5)  # the orphaned run left no process running
    assert server.get(f"/jobs/{second}")["status"] in ("queued", "running")  # the queue survived
    assert server.post(f"/jobs/{first}/resume").status_code == 202

    # The key is rotated while the jobs run: SIGHUP re-reads it (here the file's size and times are kept,
    # so only the signal can tell), and the running job goes on.
    stamp = os.stat(server.config)
    data = json.loads(server.config.read_text())
    rotated = KEY.replace("test", "next")
    data["server"]["api_keys"] = [rotated]
    with open(server.config, "r+") as config:  # in place: the same inode
        config.write(json.dumps(data))
    os.utime(server.config, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    new_headers = {"X-API-Key": rotated}
    until(
        lambda: requests.get(f"{server.url}/jobs", headers=new_headers, timeout=5).status_code == 200,
        lambda: "the rotated key was not taken",
        seconds=10,
    )
    assert requests.get(f"{server.url}/jobs", headers=HEADERS, timeout=5).status_code == 401
    server.headers = new_headers
    assert server.wait(first, ENDED)["status"] == "succeeded"
    manifest = server.get(f"/jobs/{first}/manifest")
    assert manifest["attempts"] == 2 and manifest["run_status"] == "succeeded"

    view = server.wait(second, ENDED)
    assert view["status"] == "succeeded", view
    manifest = server.get(f"/jobs/{view['id']}/manifest")
    assert manifest["phases"]["lipsync"]["status"] == "done" and manifest["fps"] == 24
    whole = requests.get(f"{server.url}/jobs/{view['id']}/final", headers=server.headers, timeout=10)
    assert whole.status_code == 200 and 'filename="fertig.mp4"' in whole.headers["content-disposition"]
    video = requests.get(
        f"{server.url}/jobs/{view['id']}/final", headers={**server.headers, "Range": "bytes=0-99"}, timeout=10
    )
    assert video.status_code == 206 and len(video.content) == 100
    assert video.headers["content-range"] == f"bytes 0-99/{view['final']['bytes']}"
    for bad_range, status in (("bytes=5-2", 400), ("abc", 400), ("bytes=99999999-", 416)):
        refused = requests.get(
            f"{server.url}/jobs/{view['id']}/final",
            headers={**server.headers, "Range": bad_range},
            timeout=10,
        )
        assert refused.status_code == status and set(refused.json()) == {"error"}, refused.text
    long_id = requests.get(f"{server.url}/jobs/{'j' * 5000}", headers=server.headers, timeout=10)
    assert long_id.status_code == 404 and long_id.json()["error"]["code"] == "NOT_FOUND"

    # The events as Server-Sent Events through uvicorn: every event, then ``end`` with the job.
    with requests.get(
        f"{server.url}/jobs/{view['id']}/events", headers=server.headers, stream=True, timeout=30
    ) as stream:
        kinds = [
            line.removeprefix("event: ")
            for line in stream.iter_lines(decode_unicode=True)
            if line.startswith("event: ")
        ]
    assert (
        kinds[0] == "run_started" and kinds[-1] == "end" and len(kinds) == len(server.events(view["id"])) + 1
    )


def test_a_port_in_use_is_one_line_and_exit_20(files: Media, tmp_path: Path) -> None:
    """The address of server.bind and server.port taken by another program: the server says so in one
    line and exits with va's code, not uvicorn's log and its exit 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, [files.root], server={"api_keys": [KEY], "port": port})
        done = subprocess.run(
            [sys.executable, "-m", "va.vidax"],
            env={**os.environ, "VIDAX_CONFIG": str(config)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 20, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("vidax: ")]
    assert lines == [f"vidax: error: cannot listen on 127.0.0.1:{port}: Address already in use"], done.stderr
    assert "Traceback" not in done.stderr
