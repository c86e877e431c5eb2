"""Whole runs on real media: the output contract checked with ffprobe, the manifest, direct Snakemake use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, CliRunner, Media, ffprobe_streams


def run_ok(va_cli: CliRunner, job: Path, workdir: Path) -> dict[str, Any]:
    result = va_cli("run", job, "--workdir", workdir, "--cores", "2", "-q")
    assert result.code == 0, result.err
    manifest: dict[str, Any] = json.loads((workdir / "manifest.json").read_text())
    return manifest


def check_contract(final: Path, frames: int, fps: int) -> dict[str, dict[str, Any]]:
    streams = ffprobe_streams(final)
    video, audio = streams["video"], streams["audio"]
    assert int(video["nb_read_frames"]) == frames
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert video["r_frame_rate"] == video["avg_frame_rate"] == f"{fps}/1"
    assert video["width"] % 2 == 0 and video["height"] % 2 == 0
    assert audio["codec_name"] == "aac"
    assert abs(float(video["duration"]) - float(audio["duration"])) <= 1 / fps
    head = final.read_bytes()[:4096]
    assert head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head  # +faststart: index first
    return streams


@pytest.mark.parametrize(
    ("make", "expected_size"),
    [
        (lambda f: f.image("odd.png", "321x241"), (320, 240)),
        (lambda f: f.image("alpha.png", "200x100", "rgba"), (200, 100)),
        (lambda f: f.image("photo.jpg", "640x360", "yuvj420p"), (640, 360)),
        (lambda f: f.image("anim.gif", "161x99", "pal8"), (160, 98)),
        (lambda f: f.video("clip.mp4", "427x240"), (426, 240)),
        (lambda f: f.video("clip.webm", "320x180"), (320, 180)),
    ],
    ids=["odd-png", "alpha-png", "jpg", "gif", "video-mp4", "video-webm"],
)
def test_every_start_kind_becomes_an_even_exact_video(
    files: Media, va_cli: CliRunner, make: Any, expected_size: tuple[int, int]
) -> None:
    start = make(files)
    workdir = files.root / "w"
    manifest = run_ok(va_cli, files.job(input={"audio": "voice.wav", "start": start.name}), workdir)
    streams = check_contract(workdir / "final.mp4", manifest["target_frames"], 25)
    assert (streams["video"]["width"], streams["video"]["height"]) == expected_size
    assert manifest["target_frames"] == 50


@pytest.mark.parametrize(
    ("extra", "rate"),
    [((), 16000), (("-ac", "2"), 44100), (("-c:a", "pcm_u8"), 8000), (("-ac", "2"), 48000)],
    ids=["mono-16k", "stereo-44k", "8-bit-8k", "stereo-48k"],
)
def test_audio_layouts(files: Media, va_cli: CliRunner, extra: tuple[str, ...], rate: int) -> None:
    files.tone("voice.wav", 1.3, rate, *extra)
    manifest = run_ok(va_cli, files.job(), files.root / "w")
    assert manifest["audio_input_duration_seconds"] == pytest.approx(1.3, abs=1e-3)
    check_contract(files.root / "w" / "final.mp4", round(1.3 * 25), 25)


def test_buffers_extend_the_video_and_pad_the_audio(files: Media, va_cli: CliRunner) -> None:
    job = files.job(buffer={"pre_seconds": 0.5, "post_seconds": 1.0}, determinism={"fps": 24, "seed": 3})
    manifest = run_ok(va_cli, job, files.root / "w")
    assert manifest["audio_input_duration_seconds"] == pytest.approx(2.0, abs=1e-3)
    assert manifest["audio_duration_seconds"] == pytest.approx(3.5, abs=1e-3)
    assert manifest["visual_target_duration_seconds"] == pytest.approx(3.5, abs=1e-3)
    assert manifest["target_frames"] == 84
    assert manifest["buffer"] == {"pre_seconds": 0.5, "post_seconds": 1.0}
    streams = check_contract(files.root / "w" / "final.mp4", 84, 24)
    assert float(streams["video"]["duration"]) == pytest.approx(3.5, abs=1 / 24)
    assert float(streams["audio"]["duration"]) == pytest.approx(3.5, abs=1 / 24)


def test_output_size_contain_and_cover(files: Media, va_cli: CliRunner) -> None:
    for fit in ("contain", "cover"):
        job = files.job(
            f"{fit}.json", output={"width": 128, "height": 128, "fit": fit, "basename": f"{fit}.mp4"}
        )
        run_ok(va_cli, job, files.root / fit)
        streams = check_contract(files.root / fit / f"{fit}.mp4", 50, 25)
        assert (streams["video"]["width"], streams["video"]["height"]) == (128, 128)


def test_manifest_records_the_run(files: Media, va_cli: CliRunner, state_dir: Path) -> None:
    job = files.job(determinism={"seed_policy": "random"})
    manifest = run_ok(va_cli, job, files.root / "w")
    assert manifest["run_status"] == "succeeded"
    assert manifest["exit_status"] == {"code": 0, "name": "OK", "message": "final video written"}
    assert {name: phase["status"] for name, phase in manifest["phases"].items()} == {
        "prepare": "done",
        "comfyui": "skipped",
        "lipsync": "skipped",
        "encode": "done",
    }
    assert "workflow_ids" in manifest["phases"]["comfyui"]["reason"]
    assert manifest["phases"]["encode"]["outputs"] == ["final.mp4"]
    assert manifest["seeds"]["policy"] == "random"
    assert isinstance(manifest["seeds"]["value"], int)
    assert manifest["effective_params"]["seed"] == manifest["seeds"]["value"]
    assert len(manifest["inputs"]["audio"]["sha256"]) == 64
    assert set(manifest["tools"]) >= {"va", "snakemake", "ffmpeg"}
    registry = json.loads((state_dir / "runs.json").read_text())
    assert registry["runs"][manifest["run_id"]]["run_status"] == "succeeded"


def test_snakemake_directly_gives_the_same_result(files: Media, va_cli: CliRunner) -> None:
    job = files.job()
    by_va = run_ok(va_cli, job, files.root / "by-va")
    direct = files.root / "direct"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "2",
            "--directory",
            str(direct),
            "--config",
            f"job={job}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    by_snakemake = json.loads((direct / "manifest.json").read_text())
    assert set(by_snakemake) == set(by_va)
    for key in (
        "run_status",
        "exit_status",
        "target_frames",
        "seeds",
        "inputs",
        "visual_target_duration_seconds",
    ):
        assert by_snakemake[key] == by_va[key], key
    assert {k: p["status"] for k, p in by_snakemake["phases"].items()} == {
        k: p["status"] for k, p in by_va["phases"].items()
    }
    check_contract(direct / "final.mp4", by_va["target_frames"], 25)
    assert va_cli("status", by_snakemake["run_id"]).code == 0

    # A finished video is never rebuilt over, even when an input is newer than it.
    before = (direct / "final.mp4").read_bytes()
    events = (direct / "logs" / "events.jsonl").read_text()
    later = time.time() + 5
    os.utime(job.parent / "voice.wav", (later, later))
    argv = [sys.executable, "-m", "snakemake", "--cores", "2", "--directory", str(direct)]
    again = subprocess.run(
        [*argv, "--config", f"job={job}"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert (direct / "final.mp4").read_bytes() == before
    assert (direct / "logs" / "events.jsonl").read_text() == events
