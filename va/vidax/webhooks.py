"""Completion webhooks: when a job ends, a POST to its ``webhook_url`` signed as Standard Webhooks
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), retried with backoff (va.retry), each
attempt recorded in the job's events (``logs/events.jsonl``). A delivery still pending when the server
stops is taken up again, with the attempts it has left, when the server starts."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from va.events import append_event, read_events, utc_now
from va.retry import RetryPolicy, retrying
from va.vidax.intake import url_allowed
from va.vidax.jobs import JobRecord
from va.vidax.models import view_of
from va.vidax.settings import WebhookSettings
from va.workdir import Workdir

log = logging.getLogger(__name__)
#: The longest wait between two attempts, however many there are.
MAX_DELAY_SECONDS = 300.0


class DeliveryFailed(Exception):
    """One attempt that the receiver did not acknowledge with a 2xx."""


class _ServerStopping(Exception):
    """The server stops while a delivery waits for its next attempt."""


def message_id_of(record: JobRecord) -> str:
    """One id for every attempt of one ending, so a receiver can drop duplicates."""
    return "msg_" + hashlib.sha256(f"{record.id}|{record.ended_at}".encode()).hexdigest()[:32]


class WebhookSender:
    """Delivers each ended job's webhook in a thread of its own, so no request and no scheduler round
    waits for a receiver."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.signer = Webhook(settings.secret) if settings.secret else None
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        #: The message ids being delivered now: one delivery a job ending, however it was started.
        self.active: set[str] = set()

    def job_ended(self, record: JobRecord) -> None:
        """Start delivering the webhook of a job that has just ended (if it has one)."""
        self._start(record, made=0)

    def resume_pending(self, records: list[JobRecord]) -> None:
        """At the server's start: take up every delivery that was neither delivered nor given up when
        the server last stopped, with the attempts it has left."""
        for record in records:
            if record.webhook_url is None or record.ended_at is None:
                continue
            message_id = message_id_of(record)
            tried = [
                event
                for event in read_events(Workdir(Path(record.workdir)).events)
                if event.get("webhook_id") == message_id
            ]
            if any(event.get("delivered") or event.get("kind") == "webhook_failed" for event in tried):
                continue
            self._start(record, made=sum(1 for event in tried if event.get("kind") == "webhook_delivery"))

    def stop(self, seconds: float = 2.0) -> None:
        """The server stops: deliveries waiting for their next attempt are left pending (taken up at
        the next start); one in the middle of a request gets ``seconds`` to finish it."""
        self.stopping.set()
        deadline = time.monotonic() + seconds
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _start(self, record: JobRecord, made: int) -> None:
        if record.webhook_url is None or self.signer is None:
            return
        message_id = message_id_of(record)
        with self.lock:
            if message_id in self.active:
                return
            self.active.add(message_id)
        thread = threading.Thread(
            target=self._deliver_once, args=(record, made), name=f"webhook-{record.id}", daemon=True
        )
        # A server runs for weeks: only the deliveries still going are kept to be waited for at its stop.
        self.threads = [*(t for t in self.threads if t.is_alive()), thread]
        thread.start()

    def _deliver_once(self, record: JobRecord, made: int) -> None:
        try:
            self.deliver(record, made)
        finally:
            with self.lock:
                self.active.discard(message_id_of(record))

    def _pause(self, seconds: float) -> None:
        if self.stopping.wait(seconds):
            raise _ServerStopping

    def deliver(self, record: JobRecord, made: int = 0) -> bool:
        """POST the job's ``job.<status>`` event until the receiver answers 2xx or the attempts are spent
        (``made`` of them before a restart); True when it was delivered."""
        assert record.webhook_url is not None and self.signer is not None
        events = Workdir(Path(record.workdir)).events
        url = record.webhook_url
        message_id = message_id_of(record)
        if not url_allowed(url, self.settings.allowed_urls):  # the allow-list may have changed since
            message = f"webhook to {url} not sent: not in webhooks.allowed_urls"
            append_event(
                events, "vidax", "warning", message, kind="webhook_failed", url=url, webhook_id=message_id
            )
            return False
        payload = json.dumps(
            {
                "type": f"job.{record.status}",
                "timestamp": utc_now(),
                "data": view_of(record).model_dump(mode="json"),
            }
        )
        policy = RetryPolicy(
            attempts=max(1, self.settings.max_attempts - made),
            initial=self.settings.first_delay_seconds,
            cap=MAX_DELAY_SECONDS,
        )
        attempt = made

        def post() -> None:
            nonlocal attempt
            attempt += 1
            sent_at = datetime.now(UTC)
            headers = {
                "content-type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(int(sent_at.timestamp())),
                "webhook-signature": self.signer.sign(message_id, sent_at, payload),  # type: ignore[union-attr]
            }
            status: int | None = None
            try:
                status = post_within(url, payload.encode(), headers, self.settings.timeout_seconds)
                error = None if 200 <= status < 300 else f"answered {status}"
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            outcome = "delivered" if error is None else f"failed ({error})"
            append_event(
                events,
                "vidax",
                "info" if error is None else "warning",
                f"webhook to {url}: attempt {attempt} {outcome}",
                kind="webhook_delivery",
                url=url,
                webhook_id=message_id,
                attempt=attempt,
                status=status,
                delivered=error is None,
                error=error,
            )
            if error is not None:
                raise DeliveryFailed(error)

        try:
            retrying(policy, DeliveryFailed, sleep=self._pause)(post)
        except _ServerStopping:
            append_event(
                events,
                "vidax",
                "info",
                f"webhook to {url} pending: the server stopped; sent again when it starts",
                kind="webhook_pending",
                url=url,
                webhook_id=message_id,
                attempts=attempt,
            )
            return False
        except DeliveryFailed as exc:
            append_event(
                events,
                "vidax",
                "error",
                f"webhook to {url} not delivered after {attempt} attempts",
                kind="webhook_failed",
                url=url,
                webhook_id=message_id,
                attempts=attempt,
                error=str(exc),
            )
            log.warning("job %s: webhook to %s not delivered: %s", record.id, url, exc)
            return False
        return True


def post_within(url: str, body: bytes, headers: dict[str, str], seconds: float) -> int:
    """POST ``body`` to ``url`` and read the whole answer within ``seconds`` in all (connecting, sending,
    the answer's head and body): a receiver that trickles its answer a byte at a time cannot hold an
    attempt longer, as it could a per-read timeout. Returns the status; a redirect is not followed (it
    could lead anywhere). Past the deadline the socket is shut, and ``TimeoutError`` says so."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port, timeout=seconds)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        if connection.sock is not None:
            connection.sock.shutdown(socket.SHUT_RDWR)

    deadline = threading.Timer(seconds, expire)
    deadline.start()
    try:
        target = parts.path or "/"
        connection.request(
            "POST", f"{target}?{parts.query}" if parts.query else target, body=body, headers=headers
        )
        answer = connection.getresponse()
        answer.read()
        if expired.is_set():
            raise TimeoutError(f"no whole answer within {seconds:g} s")
        return answer.status
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise TimeoutError(f"no whole answer within {seconds:g} s") from exc
        raise
    finally:
        deadline.cancel()
        connection.close()
