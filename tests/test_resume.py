"""A run killed with SIGKILL in any phase resumes without the user knowing Snakemake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import VA, CliRunner, Media, ffprobe_streams
from va.events import read_events


def rule_running(events: Path, rule: str) -> bool:
    kinds = [e["kind"] for e in read_events(events) if e.get("rule") == rule]
    return bool(kinds) and kinds[-1] == "rule_started"


@pytest.mark.parametrize("rule", ["prepare_audio", "hold_start_frame", "lipsync", "encode"])
def test_sigkill_in_a_phase_then_resume(files: Media, va_cli: CliRunner, rule: str) -> None:
    # A slow ffmpeg (a wrapper that sleeps, then runs the real one) keeps every rule busy long
    # enough to be killed inside it.
    slow = files.root / "slow-ffmpeg"
    slow.write_text('#!/bin/sh\nsleep 1.5\nexec ffmpeg "$@"\n')
    slow.chmod(0o755)
    # The built-in audiogram provider gives the graph a lip-sync phase that needs no model.
    lipsync = {"enable": True, "provider": "audiogram"}
    job, workdir = files.job(buffer={"post_seconds": 0.4}, lipsync=lipsync), files.root / "w"
    process = subprocess.Popen(
        [*VA, "run", str(job), "--workdir", str(workdir), "--cores", "1", "-q"],
        env={**os.environ, "FFMPEG": str(slow)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    events = workdir / "logs" / "events.jsonl"
    deadline = time.monotonic() + 90
    while not rule_running(events, rule):
        assert process.poll() is None, "the run ended before the rule started"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(0.3)  # children (Snakemake, ffmpeg) die with the process group

    status = va_cli("status", workdir, "--json")
    manifest = json.loads(status.out)
    assert manifest["run_status"] == "interrupted"
    assert manifest["exit_status"]["name"] == "INTERRUPTED"
    assert not (workdir / "final.mp4").exists()

    resumed = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert resumed.code == 0, resumed.err
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["run_status"] == "succeeded"
    assert manifest["attempts"] == 2
    assert all(p["status"] in ("done", "skipped") for p in manifest["phases"].values())
    video = ffprobe_streams(workdir / "final.mp4")["video"]
    assert int(video["nb_read_frames"]) == manifest["target_frames"] == 60
    assert not list(workdir.glob(".encode-*"))
