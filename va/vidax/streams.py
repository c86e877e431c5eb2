"""``GET /jobs/{id}/events``: a job's events as Server-Sent Events, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from sse_starlette import ServerSentEvent

from va.events import read_events
from va.vidax.errors import ApiError
from va.vidax.jobs import FINISHED, JobRecord, JobStore
from va.vidax.models import view_of
from va.workdir import Workdir

#: How often the events file is looked at while the job runs.
POLL_SECONDS = 0.25


async def event_stream(store: JobStore, job_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    """Each event of the job's ``logs/events.jsonl`` after the ``after``-th, as it is written: its id is
    its number in the log (the ``next`` of ``/logs`` counts the same), its type the event's ``kind``
    (``progress`` for ComfyUI's steps). Once the job has ended and every event is sent, an ``end`` event
    carries the job as ``GET /jobs/{id}`` shows it, and the stream closes."""
    sent = after
    while True:
        try:
            # The status is read before the events: a job seen ended has written all of them.
            record: JobRecord = await anyio.to_thread.run_sync(lambda: store.refresh(store.get(job_id)))
        except ApiError:
            return  # the job is gone
        events = await anyio.to_thread.run_sync(read_events, Workdir(Path(record.workdir)).events)
        for number, event in enumerate(events[sent:], start=sent + 1):
            yield ServerSentEvent(
                data=json.dumps(event), id=str(number), event=str(event.get("kind") or "event")
            )
        sent = max(sent, len(events))
        if record.status in FINISHED:
            view = await anyio.to_thread.run_sync(view_of, record)
            yield ServerSentEvent(data=view.model_dump_json(), event="end")
            return
        await anyio.sleep(POLL_SECONDS)
