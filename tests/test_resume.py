"""A run stopped in any phase (SIGKILL of its process group, Ctrl-C) leaves no process running and
resumes without the user knowing Snakemake. Only whole runs can prove this: the kill lands between real
processes. The other ways of stopping a run are in tests/test_processes.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
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


def rule_running(events: Path, rule: str) -> bool:
    kinds = [e["kind"] for e in read_events(events) if e.get("rule") == rule]
    return bool(kinds) and kinds[-1] == "rule_started"


def start_run(job: Path, workdir: Path, slow: Path, marker: str) -> subprocess.Popen[str]:
    """``va run`` in a session of its own; every process of the run carries ``marker``."""
    return subprocess.Popen(
        [*VA, "run", str(job), "--workdir", str(workdir), "--cores", "1", "-q"],
        env={**os.environ, "FFMPEG": str(slow), MARKER: marker},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_until(condition: object, process: subprocess.Popen[str], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert process.poll() is None, "the run ended before the awaited moment"
        assert time.monotonic() < deadline, "the awaited moment did not come"
        time.sleep(0.02)


@pytest.mark.parametrize("rule", ["prepare_audio", "hold_start_frame", "lipsync", "encode"])
def test_sigkill_in_a_phase_then_resume(files: Media, va_cli: CliRunner, rule: str) -> None:
    # The built-in audiogram provider gives the graph a lip-sync phase that needs no model.
    lipsync = {"enable": True, "provider": "audiogram"}
    job, workdir = files.job(buffer={"post_seconds": 0.4}, lipsync=lipsync), files.root / "w"
    marker = uuid.uuid4().hex
    process = start_run(job, workdir, slow_ffmpeg(files.root, 1.5, only=RULE_FFMPEG[rule]), marker)
    wait_until(lambda: rule_running(workdir / "logs" / "events.jsonl", rule), process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wait_no_process_marked(marker)  # Snakemake, the rule scripts and ffmpeg end with the run

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


def test_ctrl_c_is_exit_130_and_the_run_resumes(files: Media, va_cli: CliRunner) -> None:
    job, workdir = files.job(), files.root / "w"
    marker = uuid.uuid4().hex
    process = start_run(job, workdir, slow_ffmpeg(files.root, 2.0, only=RULE_FFMPEG["prepare_audio"]), marker)
    wait_until(lambda: rule_running(workdir / "logs" / "events.jsonl", "prepare_audio"), process)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED
    assert "--resume" in err and "Traceback" not in err
    wait_no_process_marked(marker, seconds=5)
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["run_status"] == "interrupted"
    assert not (workdir / "final.mp4").exists()
    resumed = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert resumed.code == 0, resumed.err
