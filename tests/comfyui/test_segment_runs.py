"""The one whole run of generation by segments, for what only a run proves: a 4 s voice through a chained
template (InfiniteTalk's contract at 33 frames: 4n+1, nine frames of context and head, 16 kHz) becomes an
exact final whose clips carry the voice of their moment and continue each other, seams where the plan
puts them; a run killed after two segments resumes without submitting a finished one again; a retake
submits only its segment and those after it and keeps the previous final. Five segments are the fewest
that hold all of it: two finished before the kill, one cut at a pause, a retaken one, the one after it
made again and a last one kept. (Each step on its own is in test_segment_stage.py, in this process; the
cutting of a 12 s voice into 13 segments is in tests/test_segments.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.comfyui.conftest import comfy_job
from tests.conftest import VA, CliRunner, Comfy, Media, ffmpeg
from va.events import read_events

pytestmark = pytest.mark.whole_run

SIZE = (64, 48)
#: colour_segments' ComfyMathExpression: the colour of a segment's new frames from its seed.
COLOUR_FACTOR, COLOURS = 2654435761, 1 << 24


def seed_colour(seed: int) -> np.ndarray:
    value = seed * COLOUR_FACTOR % COLOURS
    return np.array([value >> 16 & 255, value >> 8 & 255, value & 255], dtype=float)


def frames_of(video: Path) -> np.ndarray:
    """Every frame of a 64x48 video, as an array (frames, height, width, rgb)."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, SIZE[1], SIZE[0], 3).astype(float)


def decoded(path: Path) -> np.ndarray:
    """A file's audio at 16 kHz mono, whole."""
    raw = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-ar",
            "16000",
            "-ac",
            "1",
            "-f",
            "f32le",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32)


def window(audio: np.ndarray, start: float = 0.0, seconds: float | None = None) -> np.ndarray:
    """16 kHz ``audio`` from ``start`` (negative: silence first) for ``seconds`` (silence after its end)."""
    lead = max(0, round(-start * 16000))
    audio = np.concatenate([np.zeros(lead, np.float32), audio[max(0, round(start * 16000)) :]])
    if seconds is not None:
        wanted = round(seconds * 16000)
        audio = np.concatenate([audio, np.zeros(max(0, wanted - len(audio)), np.float32)])[:wanted]
    return audio


def best_lag(heard: np.ndarray, expected: np.ndarray, reach: int = 1600) -> tuple[int, float]:
    """The shift (samples) at which ``heard`` matches ``expected`` best, and how well (correlation)."""
    scores = []
    for lag in range(-reach, reach + 1, 8):
        a = heard[max(0, lag) : len(heard) + min(0, lag)]
        b = expected[max(0, -lag) : len(expected) + min(0, -lag)]
        n = min(len(a), len(b))
        scores.append(
            (float(np.dot(a[:n], b[:n]) / (np.linalg.norm(a[:n]) * np.linalg.norm(b[:n]) + 1e-9)), lag)
        )
    score, lag = max(scores)
    return lag, score


def finished_segments(workdir: Path) -> list[str]:
    """The segments whose step finished (a clip written but its step cut off by the kill is not one)."""
    events = read_events(workdir / "logs" / "events.jsonl")
    return [
        str(e["target"])
        for e in events
        if e["kind"] == "rule_finished" and e.get("rule") == "comfyui_segment"
    ]


def prompts(comfy: Comfy) -> int:
    return len(comfy.stats()["prompts"])


def test_a_4_s_voice_in_chained_segments_resumes_and_retakes(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path
) -> None:
    # A voice that is never the same twice (a rising tone) with a 0.5 s pause every 2.3 s.
    source = "aevalsrc='0.5*sin(2*PI*(150+40*t)*t)*gt(mod(t\\,2.3)\\,0.5)':s=16000:d=4"
    ffmpeg("-f", "lavfi", "-i", source, str(files.root / "voice.wav"))
    job = comfy_job(files, comfy, "colour_segments")
    workdir = files.root / "w"

    # A run killed after two segments ...
    process = subprocess.Popen(
        [*VA, "run", str(job), "--workdir", str(workdir), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    records = workdir / "comfyui" / "segments"
    try:
        deadline = time.monotonic() + 120
        while len(finished_segments(workdir)) < 2:
            assert time.monotonic() < deadline and process.poll() is None, "the run did not get to 2 segments"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    done = finished_segments(workdir)
    finished = {name: json.loads((records / f"{name}.json").read_text())["prompt_id"] for name in done}
    assert 2 <= len(finished) < 5, finished
    before = prompts(comfy)

    # ... resumes, submitting only the segments it had not finished.
    resumed = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert resumed.code == 0, resumed.err
    plan = json.loads((workdir / "prepare" / "plan.json").read_text())["comfyui"]
    segments = plan["segments"]
    assert len(segments) == 5 and plan["contract"]["head_frames"] == 9
    assert prompts(comfy) - before == 5 - len(finished)
    assert {
        name: json.loads((records / f"{name}.json").read_text())["prompt_id"] for name in finished
    } == finished

    # An exact final: 4 s at 25 fps, the job's size.
    final = frames_of(workdir / "final.mp4")
    assert final.shape == (100, SIZE[1], SIZE[0], 3)
    padded = decoded(workdir / "prepare" / "padded.wav")  # the voice every segment is cut from
    start_frame = frames_of_image(files.root / "start.png")
    previous_tail: np.ndarray | None = None
    for segment in segments:
        clip = records / f"{segment['name']}.mp4"
        pictures = frames_of(clip)
        # Every clip 4n+1 frames, at most 33.
        assert len(pictures) == segment["frames"] and len(pictures) % 4 == 1 and len(pictures) <= 33
        # The voice of the moment its frames sit at: the head frames' (silence before the voice), its own.
        heard = decoded(clip)
        expected = window(padded, segment["audio_start_seconds"], segment["audio_seconds"])
        # Its length within a frame, plus the last AAC frame's padding a decoder gives out (as ComfyUI's).
        assert -640 <= len(heard) - len(expected) <= 1024
        lag, score = best_lag(heard[: len(expected)], expected)
        assert abs(lag) <= 80 and score > 0.9, (segment["name"], lag, score)
        # The picture continues: its head frames are the previous clip's last nine (the start held first).
        head = pictures[:9]
        carried = start_frame[None] if previous_tail is None else previous_tail
        assert np.abs(head - carried).mean() < (16 if previous_tail is None else 4), segment["name"]
        previous_tail = pictures[-9:]
        # The seams where the plan puts them: its kept frames in the final are its colour, from its first.
        first, kept = segment["first"], segment["kept"]
        colour = seed_colour(segment["seed"])
        for frame in (first, first + kept - 1):
            assert np.abs(final[frame].mean(axis=(0, 1)) - colour).max() < 12, (segment["name"], frame)
    # Seams in the voice's pauses where one was near.
    cut_in_pause = [s for s in segments[:-1] if s["cut"] == "silence"]
    assert cut_in_pause
    for segment in cut_in_pause:
        seam = (segment["first"] + segment["kept"]) / 25
        assert abs(window(padded, seam - 0.02, 0.04)).max() < 0.01, segment["name"]

    # A retake at 2 s: that segment and the ones after it, nothing before; the previous final is kept.
    at = next(s for s in segments if s["start_seconds"] <= 2.0 < s["end_seconds"])
    assert 0 < at["index"] < len(segments) - 2  # a segment before it, the next and one more after
    before, events_before = prompts(comfy), len(read_events(workdir / "logs" / "events.jsonl"))
    retake = va_cli("retake", workdir, "--at", "2", "--seed", "99", "-q")
    assert retake.code == 0, retake.err
    events = read_events(workdir / "logs" / "events.jsonl")[events_before:]
    submitted = [e["segment"] for e in events if e.get("outcome") == "submitted"]
    kept = [e["segment"] for e in events if e.get("outcome") == "kept"]
    # The retaken segment and the next (its context is new); after those, this template's clips depend on
    # their context's last frames only, which came out the same: their earlier takes are kept, unasked.
    assert (
        submitted == [at["name"], segments[at["index"] + 1]["name"]]
        and len(submitted) == prompts(comfy) - before
    )
    assert submitted + kept == [s["name"] for s in segments[at["index"] :]] and kept
    kept_final = workdir / "final.before-retake-1.mp4"
    assert f"the previous final is kept as {kept_final}" in retake.err
    assert np.array_equal(frames_of(kept_final), final)
    again = frames_of(workdir / "final.mp4")
    assert len(again) == 100
    assert np.abs(again[: at["first"]] - final[: at["first"]]).mean() < 1  # before the retake: the same
    assert np.abs(again[at["first"]].mean(axis=(0, 1)) - seed_colour(99)).max() < 12
    status = va_cli("status", workdir, "--json")
    listed = json.loads(status.out)["phases"]["comfyui"]["segments"]
    assert [s["name"] for s in listed] == [s["name"] for s in segments]
    assert listed[at["index"]]["seed"] == 99 and listed[at["index"]]["take"] == 1
    outside = va_cli("retake", workdir, "--at", "4.5")
    assert outside.code == 2 and outside.err.strip() == (
        "va: error: va retake: --at 4.5 is outside the video (0 to 4.000 s)"
    )


def frames_of_image(image: Path) -> np.ndarray:
    """The start image brought to the clips' size, as the template's ImageScale does (near enough)."""
    return np.asarray(Image.open(image).convert("RGB").resize(SIZE, Image.Resampling.LANCZOS), dtype=float)
