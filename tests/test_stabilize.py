"""va/stabilize.py: ComfyUI's picture steadied and evenly lit, in-process, measured by decoding frames;
and the phase skipped, with its reason, where it has nothing to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.comfyui.test_stage import video_of
from tests.conftest import Media, ffmpeg
from tests.test_motion import gray_frames
from va import stages
from va.graph import describe
from va.job import load_job
from va.plan import plan_job, write_plan
from va.rule_settings import audio_settings, stabilize_settings
from va.stabilize import stabilize_video
from va.workdir import Workdir

COMFY = {"workflow_ids": ["vidax_text2img_frames"], "params": {"width": 320, "height": 240}}


def generated_picture(files: Media, target: Path) -> Path:
    """What generated frames look like at their worst: the still shaken by up to 12 px and its
    brightness drifting by up to 10 % from frame to frame, 50 frames at 25 fps."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shake = "crop=288:216:x='16+12*sin(n*1.9)':y='12+9*cos(n*2.3)',scale=320:240"
    flicker = "eq=brightness='0.1*sin(n*2.5)':eval=frame"
    ffmpeg(
        "-loop",
        "1",
        "-framerate",
        "25",
        "-i",
        str(files.root / "start.png"),
        "-vf",
        f"{shake},{flicker}",
        "-frames:v",
        "50",
        "-c:v",
        "libx264",
        "-crf",
        "12",
        "-pix_fmt",
        "yuv420p",
        str(target),
    )
    return target


def flicker(frames: np.ndarray) -> float:
    """How much the mean brightness jumps from one frame to the next, on average."""
    return float(np.abs(np.diff(frames.mean(axis=(1, 2)))).mean())


def shake(frames: np.ndarray) -> float:
    """How much the picture's middle changes from one frame to the next (its brightness taken out)."""
    middle = frames[:, 60:180, 80:240]
    middle = middle - middle.mean(axis=(1, 2), keepdims=True)
    return float(np.abs(np.diff(middle, axis=0)).mean())


@pytest.mark.parametrize("method", ["deflicker", "vidstab", "both"])
def test_stabilize_steadies_and_evens_out_the_planned_frames(files: Media, method: str) -> None:
    job = load_job(files.job(comfyui=COMFY, stabilize={"enable": True, "method": method}))
    run = Workdir(files.root / "w")
    run.plan.parent.mkdir(parents=True)
    plan = plan_job(job)
    write_plan(plan, run.plan)
    stages.prepare_audio(audio_settings(plan), run.padded_audio, run.padded_aac)
    generated = generated_picture(files, run.comfyui_visual)
    stabilize_video(stabilize_settings(plan), generated, run.stabilized_visual)

    streams = video_of(run.stabilized_visual)
    assert int(streams["nb_read_frames"]) == 50 and streams["r_frame_rate"] == "25/1"
    before, after = gray_frames(generated), gray_frames(run.stabilized_visual)
    if method in ("deflicker", "both"):
        assert flicker(after) < 0.6 * flicker(before), (flicker(before), flicker(after))
    if method in ("vidstab", "both"):
        assert shake(after) < 0.8 * shake(before), (shake(before), shake(after))
    assert (run.stabilized_visual.parent / "transforms.trf").exists() == (method != "deflicker")


@pytest.mark.parametrize(
    ("sections", "reason"),
    [
        ({"stabilize": {"enable": True}}, "held still"),
        ({"stabilize": {"enable": True}, "motion": {"strength": 0.5}}, "held still"),
        ({"comfyui": COMFY}, "stabilize.enable is false"),
        ({"comfyui": COMFY, "stabilize": {"enable": True}}, None),
    ],
    ids=["still", "moving-still", "off", "on"],
)
def test_the_phase_is_skipped_with_its_reason(
    files: Media, sections: dict[str, object], reason: str | None
) -> None:
    graph = describe(load_job(files.job(**sections)))
    assert graph["rules"]["stabilize"] == ["stabilize"]
    assert (reason in graph["skipped"]["stabilize"]) if reason else "stabilize" not in graph["skipped"]
    filled = load_job(files.job()).data["stabilize"]
    assert filled == {"enable": False, "method": "both"}
