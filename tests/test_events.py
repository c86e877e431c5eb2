"""va/events.py: the append-only event log, read whole or followed as it grows."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from va.events import append_event, follow_events, format_event, read_events


def test_events_are_appended_one_line_each(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "events.jsonl"
    first = append_event(log, "run", "info", "started", kind="run_started")
    append_event(log, "encode", "error", "no encoder", kind="rule_failed")
    lines = log.read_text().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["started", "no encoder"]
    assert first["ts"].endswith("Z") and first["kind"] == "run_started"
    assert read_events(log)[1]["stage"] == "encode"
    assert "encode" in format_event(read_events(log)[1]) and "no encoder" in format_event(read_events(log)[1])


def test_a_torn_or_broken_line_is_not_an_event(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    append_event(log, "run", "info", "one")
    with open(log, "a") as handle:
        handle.write("not json\n")
    append_event(log, "run", "info", "two")
    with open(log, "a") as handle:
        handle.write('{"torn": ')  # a writer killed mid-line
    assert [event["message"] for event in read_events(log)] == ["one", "two"]
    assert read_events(tmp_path / "missing.jsonl") == []


def test_a_line_cut_inside_a_character_is_not_an_event(tmp_path: Path) -> None:
    """A write cut inside a multi-byte character (a full disk) leaves bytes that are not UTF-8: that line
    is skipped, the others are read (``va logs``, ``va clean`` read the log this way)."""
    log = tmp_path / "events.jsonl"
    append_event(log, "run", "info", "in /data/stimme ü")
    with open(log, "ab") as handle:
        handle.write('{"message": "grüß'.encode()[:-1] + b"\n")  # cut inside the "ß"
    append_event(log, "run", "info", "after")
    assert [event["message"] for event in read_events(log)] == ["in /data/stimme ü", "after"]


def test_following_yields_what_is_appended_until_finished(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    done = threading.Event()
    seen: list[str] = []

    def follow() -> None:
        seen.extend(event["message"] for event in follow_events(log, done.is_set, poll_seconds=0.01))

    follower = threading.Thread(target=follow)
    follower.start()
    for n in range(5):
        append_event(log, "run", "info", f"event {n}")
    done.set()
    follower.join(timeout=10)
    assert not follower.is_alive()
    assert seen == [f"event {n}" for n in range(5)]  # drained after finished(), none lost or repeated
