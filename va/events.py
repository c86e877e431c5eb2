"""The run's event log, ``logs/events.jsonl``: one JSON object a line, appended, never rewritten."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Required, TypedDict, cast

from va.errors import ErrorData


class Event(TypedDict, total=False):
    """One line of ``logs/events.jsonl``: when, which stage, how serious, what happened (every event has
    these), and what its ``kind`` adds. The fields that readers in va pick out are declared here; an
    event carries others too (what its writer passed, e.g. a batch's seed and server)."""

    ts: Required[str]
    stage: Required[str]
    level: Required[str]
    message: Required[str]
    kind: str
    run_id: str
    rule: str
    #: The rule's wildcard value (a batch's or chunk's name) or the file it makes.
    target: str
    batch: str
    segment: str
    outcome: str
    #: A ``progress`` event's step and how many there are.
    value: int
    max: int
    error: ErrorData
    exit_status: ErrorData
    webhook_id: str
    delivered: bool


def utc_now() -> str:
    """ISO 8601 time in UTC with milliseconds, the timestamp format of every record."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append_event(path: Path, stage: str, level: str, message: str, **fields: Any) -> Event:
    """Append one event; a single ``write`` on an ``O_APPEND`` file, so parallel writers never interleave.
    ``fields``: what the event's kind adds (JSON values)."""
    event = cast(Event, {"ts": utc_now(), "stage": stage, "level": level, "message": message, **fields})
    append_line(path, json.dumps(event, sort_keys=False))
    return event


def append_line(path: Path, text: str) -> None:
    """Append ``text`` and a newline to a log in a single ``write`` on an ``O_APPEND`` file (its folder
    made first), so parallel writers never interleave their lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text.rstrip("\n") + "\n").encode("utf-8"))
    except OSError as exc:  # a write that failed names no file: this is the one
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        os.close(fd)


def read_events(path: Path) -> list[Event]:
    """All complete events of a log; a torn last line (a killed writer) is ignored, and so is a line that
    is not an event (not JSON, or not even UTF-8: a write cut inside a character by a full disk)."""
    if not path.exists():
        return []
    events = []
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                events.append(json.loads(line))  # a line va wrote (append_event): an Event
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
    return events


def follow_events(
    path: Path, finished: Callable[[], bool], poll_seconds: float = 0.2, offset: int = 0
) -> Iterator[Event]:
    """Yield events as they are appended (from byte ``offset``), until ``finished()`` is true and the log
    is drained."""
    for line in follow_lines(path, finished, poll_seconds, offset):
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue


def follow_lines(
    path: Path, finished: Callable[[], bool], poll_seconds: float = 0.2, offset: int = 0
) -> Iterator[str]:
    """Yield a log's complete lines as they are appended (from byte ``offset``), until ``finished()`` is
    true and it is drained."""
    pending = b""
    while True:
        done = finished()
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from (line.decode("utf-8", errors="replace") for line in lines)
        if done:
            return
        time.sleep(poll_seconds)


def format_event(event: Event) -> str:
    """One event as a line for people: time, stage, level, message."""
    stage, level = event.get("stage", "?"), event.get("level", "?")
    return f"{event.get('ts', '?')}  {stage:<10} {level:<7} {event.get('message', '')}"
