"""Completion webhooks (va/vidax/webhooks.py): signed as Standard Webhooks, retried with backoff,
allow-listed, each attempt in the job's events. The receiver is a real HTTP server on a loopback port
that verifies every signature with the ``standardwebhooks`` package, as a client's would."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import Media
from tests.vidax.conftest import HEADERS, ClientFactory, assert_error, job_document, until
from va.events import read_events
from va.vidax import webhooks

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """A webhook endpoint: answers the first ``failures`` deliveries with 500, then 204; keeps each
    delivery with whether its signature verified."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.deliveries: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    payload = Webhook(SECRET).verify(body, dict(self.headers.items()))
                    verified = True
                except WebhookVerificationError:
                    payload, verified = json.loads(body), False
                receiver.deliveries.append(
                    {"payload": payload, "verified": verified, "id": self.headers["webhook-id"]}
                )
                self.send_response(500 if len(receiver.deliveries) <= receiver.failures else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/va"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def make_receiver() -> Iterator[Callable[[int], Receiver]]:
    """``make_receiver(failures)``: a started receiver, stopped after the test."""
    started: list[Receiver] = []

    def make(failures: int) -> Receiver:
        hook = Receiver(failures)
        hook.thread.start()
        started.append(hook)
        return hook

    yield make
    for hook in started:
        hook.server.shutdown()
        hook.server.server_close()


def webhooks_config(url: str, attempts: int = 3) -> dict[str, Any]:
    return {"allowed_urls": [url], "secret": SECRET, "max_attempts": attempts, "first_delay_seconds": 0.05}


def webhook_events(client: TestClient, job_id: str) -> list[dict[str, Any]]:
    folder = Path(client.app.state.store.root) / job_id  # type: ignore[attr-defined]
    return [e for e in read_events(folder / "logs" / "events.jsonl") if e["kind"].startswith("webhook")]


def test_a_signed_webhook_when_a_job_ends_retried_and_recorded(
    make_client: ClientFactory, files: Media, make_receiver: Callable[[int], Receiver]
) -> None:
    receiver = make_receiver(1)
    with make_client(webhooks=webhooks_config(receiver.url)) as client:
        created = client.post(f"/jobs?webhook_url={receiver.url}", json=job_document(files), headers=HEADERS)
        assert created.status_code == 201 and created.json()["webhook_url"] == receiver.url
        job_id = created.json()["id"]
        client.post(f"/jobs/{job_id}/start", headers=HEADERS)
        client.post(f"/jobs/{job_id}/cancel", headers=HEADERS)  # a queued job ends at once: cancelled
        events = until(lambda: webhook_events(client, job_id)[1:], lambda: receiver.deliveries, seconds=20)
    assert [d["verified"] for d in receiver.deliveries] == [True, True]
    assert receiver.deliveries[0]["id"] == receiver.deliveries[1]["id"]  # one id for every attempt
    payload = receiver.deliveries[1]["payload"]
    assert payload["type"] == "job.cancelled" and payload["data"]["id"] == job_id
    attempts = webhook_events(client, job_id)
    assert [(e["attempt"], e["status"], e["delivered"]) for e in attempts] == [
        (1, 500, False),
        (2, 204, True),
    ]
    assert events[0]["webhook_id"] == receiver.deliveries[0]["id"]


def test_a_webhook_that_keeps_failing_is_given_up_and_recorded(
    make_client: ClientFactory, files: Media, make_receiver: Callable[[int], Receiver]
) -> None:
    receiver = make_receiver(99)
    body = {
        "audio": str(files.root / "voice.wav"),
        "start": str(files.root / "start.png"),
        "prompt": "p",
        "no_comfyui": True,
        "webhook_url": receiver.url,
    }
    with make_client(webhooks=webhooks_config(receiver.url, attempts=2)) as client:
        job_id = client.post("/produce", json=body, headers=HEADERS).json()["id"]
        client.post(f"/jobs/{job_id}/cancel", headers=HEADERS)
        until(
            lambda: any(e["kind"] == "webhook_failed" for e in webhook_events(client, job_id)),
            lambda: webhook_events(client, job_id),
            seconds=20,
        )
    assert len(receiver.deliveries) == 2
    failed = webhook_events(client, job_id)[-1]
    assert failed["attempts"] == 2 and "answered 500" in failed["error"]


def test_only_allowed_webhook_urls(
    make_client: ClientFactory, files: Media, make_receiver: Callable[[int], Receiver]
) -> None:
    receiver = make_receiver(0)
    with make_client(webhooks=webhooks_config(receiver.url)) as client:
        for url in ("http://169.254.169.254/latest", receiver.url.replace("/hooks/va", "/other")):
            refused = client.post(f"/jobs?webhook_url={url}", json=job_document(files), headers=HEADERS)
            assert_error(refused, 422, "VALIDATION_FAILED", "webhook_url")
        assert client.get("/jobs", headers=HEADERS).json()["jobs"] == []
    with make_client() as client:  # no webhooks configured: none is allowed
        refused = client.post(f"/jobs?webhook_url={receiver.url}", json=job_document(files), headers=HEADERS)
        assert_error(refused, 422, "VALIDATION_FAILED", "webhook_url")


def test_a_delivery_pending_when_the_server_stops_is_sent_when_it_starts(
    make_client: ClientFactory, files: Media, make_receiver: Callable[[int], Receiver]
) -> None:
    receiver = make_receiver(1)
    # The first attempt fails and the next is due in a minute: the server stops before it.
    slow = webhooks_config(receiver.url, attempts=3) | {"first_delay_seconds": 60}
    with make_client(webhooks=slow) as client:
        created = client.post(f"/jobs?webhook_url={receiver.url}", json=job_document(files), headers=HEADERS)
        job_id = created.json()["id"]
        client.post(f"/jobs/{job_id}/start", headers=HEADERS)
        client.post(f"/jobs/{job_id}/cancel", headers=HEADERS)  # a queued job ends at once: cancelled
        until(lambda: webhook_events(client, job_id), lambda: receiver.deliveries, seconds=20)
    assert [e["kind"] for e in webhook_events(client, job_id)] == ["webhook_delivery", "webhook_pending"]

    # Started as a server is (with its scheduler), the app takes up what is pending.
    with make_client(scheduler=True, webhooks=webhooks_config(receiver.url, attempts=3)) as client:
        until(lambda: len(receiver.deliveries) == 2, lambda: receiver.deliveries, seconds=20)
        until(
            lambda: webhook_events(client, job_id)[-1].get("delivered"),
            lambda: webhook_events(client, job_id),
            seconds=20,
        )
    with make_client(scheduler=True, webhooks=webhooks_config(receiver.url, attempts=3)):
        pass  # a third start finds the delivery done and sends nothing
    assert len(receiver.deliveries) == 2 and receiver.deliveries[0]["id"] == receiver.deliveries[1]["id"]
    attempts = [(e["attempt"], e["delivered"]) for e in webhook_events(client, job_id) if "attempt" in e]
    assert attempts == [(1, False), (2, True)]


def test_a_receiver_that_trickles_its_answer_holds_an_attempt_no_longer_than_the_timeout() -> None:
    """``webhooks.timeout_seconds`` is the whole attempt's: an answer dripping a byte every 0.2 s (each
    read well within the timeout) is cut at it, where a per-read timeout waited for all of it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def trickle() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.recv(65536)
            for byte in b"HTTP/1.1 204 No Content\r\nX-Slow: " + b"a" * 100:
                try:
                    peer.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=trickle, daemon=True).start()
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="within 1 s"):
        webhooks.post_within(f"http://127.0.0.1:{port}/hook", b"{}", {}, 1.0)
    assert time.monotonic() - began < 2.0
    listener.close()
