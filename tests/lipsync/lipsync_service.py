"""A test double of a remote lip-sync service speaking va's documented http-provider protocol."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Service:
    """State of the double: its folder, its jobs (each with its form ``fields`` and its uploads in
    ``root/<job>/``), and a fault switch."""

    root: Path
    #: "500" (every submit fails), "failed" (jobs fail), "stuck" (jobs never finish),
    #: "cut" (the first result download stops halfway), "no_answer" (a submit is taken, its answer lost:
    #: the connection closes before a response)
    fault: str | None = None
    jobs: dict[str, dict[str, object]] = field(default_factory=dict)
    submits: int = 0
    downloads: int = 0
    url: str = ""


def _handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            service.submits += 1
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if service.fault == "500":
                self._json(500, {"error": "overloaded"})
                return
            message = BytesParser(policy=default).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
            )
            job = uuid.uuid4().hex
            folder = service.root / job
            folder.mkdir()
            fields: dict[str, str] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                if part.get_filename():
                    (folder / str(name)).write_bytes(payload)
                else:
                    fields[str(name)] = payload.decode()
            service.jobs[job] = {"polls": 0, "fields": fields}
            if service.fault == "no_answer":
                self.close_connection = True
                return
            self._json(202, {"status_url": f"/jobs/{job}"})

        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            job = parts[1] if len(parts) > 1 else ""
            if job not in service.jobs:
                self._json(404, {"error": "no such job"})
                return
            folder = service.root / job
            if len(parts) == 3 and parts[2] == "result":
                service.downloads += 1
                data = (folder / "result.mp4").read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if service.fault == "cut" and service.downloads == 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)
                return
            state = service.jobs[job]
            state["polls"] = int(str(state["polls"])) + 1
            if state["polls"] == 1 or service.fault == "stuck":
                self._json(200, {"status": "running", "progress": 0.5})
            elif service.fault == "failed":
                self._json(200, {"status": "failed", "error": "model crashed", "error_kind": "fatal"})
            else:
                subprocess.run(
                    [
                        "ffmpeg",
                        "-nostdin",
                        "-v",
                        "error",
                        "-y",
                        "-i",
                        str(folder / "video"),
                        "-i",
                        str(folder / "audio"),
                        "-map",
                        "0:v",
                        "-map",
                        "1:a",
                        "-c:v",
                        "libx264",
                        "-preset",
                        "ultrafast",
                        "-c:a",
                        "aac",
                        "-f",
                        "mp4",
                        str(folder / "result.mp4"),
                    ],
                    check=True,
                )
                self._json(200, {"status": "succeeded", "result_url": f"/jobs/{job}/result"})

    return Handler


@contextmanager
def lipsync_service(root: Path) -> Iterator[Service]:
    """Run the double on a free loopback port."""
    service = Service(root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(service))
    service.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
