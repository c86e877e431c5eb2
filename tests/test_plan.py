"""va/plan.py: the plan of a run, from a job and its padded audio, without Snakemake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Media
from va.job import load_job
from va.media import AudioInfo
from va.plan import INPUT_NOT_FOUND, build_plan, sha256_file, target_frames


def padded(seconds: float) -> AudioInfo:
    return AudioInfo(Path("padded.wav"), "pcm_s16le", 48000, 1, seconds)


@pytest.mark.parametrize(
    ("seconds", "fps", "frames"), [(3.5, 24, 84), (2.0, 25, 50), (1.3, 25, 32), (0.001, 25, 1), (0.0, 30, 1)]
)
def test_target_frames_rounds_and_is_at_least_one(seconds: float, fps: int, frames: int) -> None:
    assert target_frames(seconds, fps) == frames


def test_the_plan_holds_durations_frames_seed_and_inputs(files: Media) -> None:
    job = load_job(
        files.job(buffer={"pre_seconds": 0.5, "post_seconds": 1.0}, determinism={"fps": 24, "seed": 3})
    )
    plan = build_plan(job, padded(3.5))
    assert plan["audio_input_duration_seconds"] == pytest.approx(2.0)
    assert plan["audio_duration_seconds"] == plan["visual_target_duration_seconds"] == 3.5
    assert plan["buffer"] == {"pre_seconds": 0.5, "post_seconds": 1.0}
    assert (plan["fps"], plan["target_frames"]) == (24, 84)
    assert plan["seeds"] == {"policy": "fixed", "value": 3} and plan["effective_params"]["seed"] == 3
    assert plan["effective_params"]["visual_source"] == "held_start_frame" and plan["comfyui"] is None
    assert plan["inputs"]["audio"] == {
        "path": str(files.root / "voice.wav"),
        "sha256": sha256_file(job.audio),
    }
    assert len(plan["inputs"]["start"]["sha256"]) == 64
    assert set(plan["tools"]) >= {"va", "python", "snakemake", "ffmpeg"}


def test_a_random_seed_is_drawn_once_and_recorded(files: Media) -> None:
    job = load_job(files.job(determinism={"seed_policy": "random"}))
    plan = build_plan(job, padded(2.0))
    assert plan["seeds"]["policy"] == "random" and isinstance(plan["seeds"]["value"], int)
    assert plan["effective_params"]["seed"] == plan["seeds"]["value"]


def test_sha256_of_a_missing_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"abc")
    assert sha256_file(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(tmp_path / "missing") == INPUT_NOT_FOUND


@pytest.mark.parametrize("module", ["va.manifest", "va.plan", "va.tracking", "va.graph", "va.stages"])
def test_core_modules_load_no_stage_client(module: str) -> None:
    """The core knows the stages by their settings only: importing it in a fresh interpreter loads
    neither the HTTP nor the websocket client of the ComfyUI and lip-sync executors."""
    probe = f"import sys, {module}; print(sorted(m for m in ('requests', 'websocket') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", f"{module} loads {done.stdout.strip()}"
