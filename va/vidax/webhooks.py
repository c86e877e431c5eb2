"""Completion webhooks: when a job ends, a POST to its ``webhook_url`` signed as Standard Webhooks
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), retried with backoff (va.retry), each
attempt recorded in the job's events (``logs/events.jsonl``)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import requests
from standardwebhooks import Webhook

from va.events import append_event, utc_now
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


class WebhookSender:
    """Delivers each ended job's webhook in a thread of its own, so no request and no scheduler round
    waits for a receiver."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.signer = Webhook(settings.secret) if settings.secret else None
        self.threads: list[threading.Thread] = []

    def job_ended(self, record: JobRecord) -> None:
        """Start delivering the webhook of a job that has just ended (if it has one)."""
        if record.webhook_url is None or self.signer is None:
            return
        thread = threading.Thread(
            target=self.deliver, args=(record,), name=f"webhook-{record.id}", daemon=True
        )
        self.threads.append(thread)
        thread.start()

    def deliver(self, record: JobRecord) -> bool:
        """POST the job's ``job.<status>`` event until the receiver answers 2xx or the attempts are spent;
        True when it was delivered."""
        assert record.webhook_url is not None and self.signer is not None
        events = Workdir(Path(record.workdir)).events
        url = record.webhook_url
        # One id for every attempt of one ending, so a receiver can drop duplicates.
        message_id = "msg_" + hashlib.sha256(f"{record.id}|{record.ended_at}".encode()).hexdigest()[:32]
        if not url_allowed(url, self.settings.allowed_urls):  # the allow-list may have changed since
            message = f"webhook to {url} not sent: not in webhooks.allowed_urls"
            append_event(events, "vidax", "warning", message, kind="webhook_failed", url=url,
                         webhook_id=message_id)  # fmt: skip
            return False
        payload = json.dumps(
            {"type": f"job.{record.status}", "timestamp": utc_now(),
             "data": view_of(record).model_dump(mode="json")}
        )  # fmt: skip
        policy = RetryPolicy(
            attempts=self.settings.max_attempts,
            initial=self.settings.first_delay_seconds,
            cap=MAX_DELAY_SECONDS,
        )
        attempt = 0

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
                answer = requests.post(
                    url, data=payload.encode(), headers=headers, timeout=self.settings.timeout_seconds,
                    allow_redirects=False,  # a redirect could lead anywhere: not followed
                )  # fmt: skip
                status = answer.status_code
                error = None if 200 <= status < 300 else f"answered {status}"
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            outcome = "delivered" if error is None else f"failed ({error})"
            append_event(
                events, "vidax", "info" if error is None else "warning",
                f"webhook to {url}: attempt {attempt} {outcome}",
                kind="webhook_delivery", url=url, webhook_id=message_id, attempt=attempt, status=status,
                delivered=error is None, error=error,
            )  # fmt: skip
            if error is not None:
                raise DeliveryFailed(error)

        try:
            retrying(policy, DeliveryFailed)(post)
        except DeliveryFailed as exc:
            append_event(events, "vidax", "error", f"webhook to {url} not delivered after {attempt} attempts",
                         kind="webhook_failed", url=url, webhook_id=message_id, attempts=attempt,
                         error=str(exc))  # fmt: skip
            log.warning("job %s: webhook to %s not delivered: %s", record.id, url, exc)
            return False
        return True
