"""A run stopped in any phase (SIGKILL of its process group, Ctrl-C) leaves no process running and
resumes without the user knowing Snakemake. Only whole runs can prove this: the kill lands between real
processes. One workdir is stopped in each phase in turn, each attempt resuming the one before, then
finished: a resume after each stop is proven by the next attempt getting past the phase cut off, and
the last by the final video. The other ways of stopping a run are in tests/test_processes.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import (
    MARKER,
    RULE_FFMPEG,
    VA,
    CliRunner,
    Media,
    ffprobe_streams,
    slow_ffmpeg,
    wait_no_process_marked,
)
from va.errors import ExitCode
from va.events import read_events

#: Whole runs: tests/conftest.py runs the tests of this file before the in-process ones.
pytestmark = pytest.mark.whole_run

#: The stops of the one run below, in order: the signal, and the rules running when it is sent. Both
#: rules of the prepare phase run side by side (two cores), so one stop cuts off both.
STOPS = [
    (signal.SIGINT, ("prepare_audio", "hold_start_frame")),  # Ctrl-C at a terminal
    (signal.SIGKILL, ("prepare_audio", "hold_start_frame")),
    (signal.SIGKILL, ("lipsync",)),
    (signal.SIGKILL, ("encode",)),
]


def running(events: Path, since: int, rules: tuple[str, ...]) -> Callable[[], bool]:
    """Whether each of ``rules`` has started, and not ended, after the first ``since`` events."""

    def check() -> bool:
        latest = {e["rule"]: e["kind"] for e in read_events(events)[since:] if e.get("rule") in rules}
        return all(latest.get(rule) == "rule_started" for rule in rules)

    return check


def start_run(job: Path, workdir: Path, slow: Path, marker: str, *extra: str) -> subprocess.Popen[str]:
    """``va run`` in a session of its own; every process of the run carries ``marker``."""
    return subprocess.Popen(
        [*VA, "run", str(job), "--workdir", str(workdir), "--cores", "2", "-q", *extra],
        env={**os.environ, "FFMPEG": str(slow), MARKER: marker},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the run ended before the awaited moment: {process.communicate()[1]}"
        assert time.monotonic() < deadline, "the awaited moment did not come"
        time.sleep(0.02)


@pytest.mark.timeout(400)
def test_a_run_stopped_in_each_phase_resumes_to_the_end(files: Media, va_cli: CliRunner) -> None:
    # The built-in audiogram provider gives the graph a lip-sync phase that needs no model.
    lipsync = {"enable": True, "provider": "audiogram"}
    job, workdir = files.job(buffer={"post_seconds": 0.4}, lipsync=lipsync), files.root / "w"
    events = workdir / "logs" / "events.jsonl"
    marker = uuid.uuid4().hex
    for attempt, (signum, rules) in enumerate(STOPS, start=1):
        since = len(read_events(events)) if events.exists() else 0
        slow = slow_ffmpeg(
            files.root, 30, only=tuple(RULE_FFMPEG[rule] for rule in rules)
        )  # stopped long before
        process = start_run(job, workdir, slow, marker, *(["--resume"] if attempt > 1 else []))
        wait_until(running(events, since, rules), process)
        os.killpg(process.pid, signum)
        _, err = process.communicate(timeout=60)
        if signum == signal.SIGINT:
            assert process.returncode == ExitCode.INTERRUPTED
            assert "--resume" in err and "Traceback" not in err
            assert json.loads((workdir / "manifest.json").read_text())["run_status"] == "interrupted"
            wait_no_process_marked(marker, seconds=5)
        wait_no_process_marked(marker)  # Snakemake, the rule scripts and ffmpeg end with the run

        manifest = json.loads(va_cli("status", workdir, "--json").out)
        assert manifest["run_status"] == "interrupted", (attempt, rules)
        assert manifest["exit_status"]["name"] == "INTERRUPTED"
        assert manifest["attempts"] == attempt
        assert not (workdir / "final.mp4").exists()

    resumed = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert resumed.code == 0, resumed.err
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["run_status"] == "succeeded"
    assert manifest["attempts"] == len(STOPS) + 1
    assert all(p["status"] in ("done", "skipped") for p in manifest["phases"].values())
    video = ffprobe_streams(workdir / "final.mp4")["video"]
    assert int(video["nb_read_frames"]) == manifest["target_frames"] == 60
    assert not list(workdir.glob(".encode-*"))
    # The lip-sync stage went end to end through the graph (tests/lipsync/test_runs.py has the others).
    phase = manifest["phases"]["lipsync"]
    assert phase["status"] == "done" and phase["passthrough"] is False
    assert phase["outputs"] == ["lipsync/output.mp4"] and phase["provider"] == "audiogram"
