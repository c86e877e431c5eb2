"""Whole ``va run``s of a 9 s voice through stand-ins of models with limits (at most 4 s of audio a call:
four chunks, one of them cut short at a pause): only a run shows that
the chunks become Snakemake jobs of their own, that they join to a final of exactly round(duration x fps)
frames with sound and picture within a frame, and that a killed run redoes only the chunks it lacked.
How the audio is cut and how a quantum pads and trims is tested in-process (test_cuts.py, test_stage.py);
the length of the voice is not the point here, the number of chunks is."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    FACE_PHOTO,
    MARKER,
    VA,
    CliRunner,
    Media,
    ffprobe_streams,
    read_manifest,
    wait_no_process_marked,
)
from tests.lipsync.fakes import command, providers_file, voice_with_pauses
from va.events import read_events

#: Whole runs: tests/conftest.py runs the tests of this file before the in-process ones.
pytestmark = pytest.mark.whole_run

FPS = 25
PAD = {"pre_seconds": 0.3, "post_seconds": 0.5}
VOICE = 9.0
SECONDS = VOICE + 0.3 + 0.5
#: The models' limit on the audio of one call.
MAX_SECONDS = 4


def long_job(files: Media, start: str = "small.png") -> Path:
    """A 9 s voice with pauses and a start (a 64x64 picture unless told) at 25 fps, synced by ``model``."""
    voice_with_pauses(files, "long.wav", VOICE)
    if start == "small.png":
        files.image("small.png", size="64x64")
    return files.job(
        input={"audio": "long.wav", "start": start},
        buffer=PAD,
        lipsync={"enable": True, "provider": "model"},
    )


def check_final(workdir: Path) -> dict[str, Any]:
    """The final holds round(duration x fps) frames, its sound and picture within one frame; returns the
    manifest's lip-sync phase, every chunk at most 4 s (one of them ending in a pause)."""
    streams = ffprobe_streams(workdir / "final.mp4")
    assert int(streams["video"]["nb_read_frames"]) == round(SECONDS * FPS) == 245
    picture, sound = float(streams["video"]["duration"]), float(streams["audio"]["duration"])
    assert abs(picture - sound) <= 1 / FPS and abs(picture - SECONDS) <= 1 / FPS
    manifest = read_manifest(workdir)
    assert manifest["run_status"] == "succeeded"
    lipsync: dict[str, Any] = manifest["phases"]["lipsync"]
    assert lipsync["status"] == "done" and lipsync["passthrough"] is False
    chunks = lipsync["chunks"]
    assert len(chunks) == 4 and sum(c["frames"] for c in chunks) == 245
    assert all(c["status"] == "done" and c["end"] - c["start"] <= MAX_SECONDS for c in chunks)
    assert [c["cut"] for c in chunks].count("silence") == 1
    return lipsync


def test_a_model_refusing_over_4_s_in_windows_of_16_frames_and_needing_a_face(
    files: Media, va_cli: CliRunner
) -> None:
    # The stand-in refuses audio over 4 s, returns only whole windows of 16 frames (96 of 100) and
    # fails without a face, as LatentSync does; it is told the plan's face box as Wav2Lip's --box is.
    shutil.copyfile(FACE_PHOTO, files.root / "face.jpg")
    dump = files.root / "told.json"
    limits = {"fps": FPS, "max_seconds": MAX_SECONDS, "frame_multiple": 16}
    model = command(
        "needs_face",
        "--max-seconds",
        str(MAX_SECONDS),
        "--frame-multiple",
        "16",
        "--dump",
        str(dump),
        "--box",
        "{face_box}",
        input=limits,
        needs_face=True,
    )
    workdir = files.root / "w"
    result = va_cli(
        "run",
        long_job(files, "face.jpg"),
        "--workdir",
        workdir,
        "-q",
        env=providers_file(files.root, model=model),
    )
    assert result.code == 0, result.err
    lipsync = check_final(workdir)
    assert all(c["attempt"] == 1 and c["seconds"] > 0 for c in lipsync["chunks"])
    started = [
        e["target"]
        for e in read_events(workdir / "logs" / "events.jsonl")
        if e.get("kind") == "rule_started" and e.get("rule") == "lipsync_chunk"
    ]
    assert sorted(started) == ["0000", "0001", "0002", "0003"]  # one Snakemake job a chunk
    box = lipsync["face"]["box"]
    argv = json.loads(dump.read_text())["argv"]
    assert argv[argv.index("--box") + 1] == f"{box['x']},{box['y']},{box['width']},{box['height']}"


def wait_for(condition: Any, process: subprocess.Popen[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, "the run ended before the awaited moment"
        assert time.monotonic() < deadline, "the awaited moment did not come"
        time.sleep(0.05)


@pytest.mark.timeout(300)
def test_a_4n_plus_1_model_killed_in_the_third_chunk_resumes_with_the_missing_chunks_only(
    files: Media, va_cli: CliRunner
) -> None:
    # The stand-in needs 4n+1 frames, refuses audio over 4 s, and hangs on its third call.
    calls = files.root / "calls.txt"
    limits = {"fps": FPS, "max_seconds": MAX_SECONDS, "frame_form": "4n+1"}
    model = command(
        "ok",
        "--max-seconds",
        str(MAX_SECONDS),
        "--frame-form",
        "4n+1",
        "--calls",
        str(calls),
        "--hang-on-call",
        "3",
        input=limits,
    )
    env, job, workdir = providers_file(files.root, model=model), long_job(files), files.root / "w"
    marker = uuid.uuid4().hex
    process = subprocess.Popen(
        [*VA, "run", str(job), "--workdir", str(workdir), "-q"],
        env={**os.environ, **env, MARKER: marker},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for(lambda: calls.exists() and len(calls.read_text().splitlines()) == 3, process)
    during = json.loads(va_cli("status", workdir, "--json").out)["phases"]["lipsync"]["chunks"]
    assert sorted(c["status"] for c in during) == ["done", "done", "pending", "running"]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wait_no_process_marked(marker)
    made = sorted(p.stem for p in (workdir / "lipsync" / "chunks").glob("*.mp4"))
    assert len(made) == 2  # the two chunks before the one the kill cut off
    status = va_cli("status", workdir)
    assert any(
        line.startswith("lipsync") and line.endswith("2 of 4 chunks") for line in status.out.splitlines()
    )

    resumed = va_cli("run", job, "--workdir", workdir, "--resume", "-q", env=env)
    assert resumed.code == 0, resumed.err
    lipsync = check_final(workdir)
    attempts = {c["name"]: c["attempt"] for c in lipsync["chunks"]}
    assert attempts == {name: 1 if name in made else 2 for name in attempts}
    events = read_events(workdir / "logs" / "events.jsonl")
    second = events[max(i for i, e in enumerate(events) if e.get("kind") == "run_started") :]
    rerun = sorted(
        e["target"] for e in second if e.get("kind") == "rule_started" and e.get("rule") == "lipsync_chunk"
    )
    assert rerun == sorted(set(attempts) - set(made))  # only the missing chunks ran again
    assert len(calls.read_text().splitlines()) == 3 + len(rerun)
