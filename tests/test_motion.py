"""va/motion.py: the camera move over a held still, rendered in-process in the graph's order and
measured by decoding its frames (the picture moves, smoothly, the way the camera says)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CliRunner, Media
from tests.test_stages import check_contract
from va import stages
from va.comfyui.workflow import INLINE_BINDINGS, INLINE_GRAPH, load_workflow, render
from va.graph import describe
from va.job import load_job
from va.motion import render_camera_move
from va.plan import plan_generation, plan_job, write_plan
from va.rule_settings import audio_settings, camera_settings, encode_settings, still_settings
from va.workdir import Workdir


def gray_frames(video: Path, width: int = 320, height: int = 240) -> np.ndarray:
    """Every frame of ``video`` decoded to 8-bit grey, as floats: frames x height x width."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width).astype(np.float32)


def render_moving_still(
    files: Media, root: Path, *, encoded: bool = True, **motion: object
) -> tuple[Path, Path]:
    """hold_start_frame and camera_motion, and with ``encoded`` prepare_audio and encode, as the graph runs
    them for a job with a camera move. Returns the camera's video and the final video (not made unless
    ``encoded``: a test that looks at the camera's video only needs no audio and no encode)."""
    job = load_job(files.job(f"{root.name}.json", motion=motion))
    run = Workdir(root)
    for folder in ("prepare", "frames", "motion"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    plan = plan_job(job)
    write_plan(plan, run.plan)
    stages.hold_start_frame(still_settings(plan), run.still, run.still_loop)
    render_camera_move(camera_settings(plan), run.still, run.motion_visual)
    final = run.final(job.basename)
    if encoded:
        stages.prepare_audio(audio_settings(plan), run.padded_audio, run.padded_aac)
        stages.encode(encode_settings(plan), run.still_loop, run.padded_aac, final, video=run.motion_visual)
    return run.motion_visual, final


def test_a_push_in_moves_smoothly_from_the_still(files: Media) -> None:
    _, final = render_moving_still(files, files.root / "push", strength=1.0)
    check_contract(final, 50, 25)
    frames = gray_frames(final)
    still = gray_frames(files.root / "push" / "frames" / "still.mp4")[0]  # the still as the video holds it
    assert np.abs(frames[0] - still).mean() < 2  # it starts on the still ...
    assert np.abs(frames[-1] - still).mean() > 10  # ... and ends a quarter closer
    # How much the picture changes from one frame to the next follows the eased speed: at rest at the
    # ends, fastest in the middle, never a frame that stands still between two jumps (zoompan's jitter:
    # its crop is rounded to whole pixels, so frames alternate between ~0 and a jump).
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))
    middle = change[len(change) // 4 : 3 * len(change) // 4]
    assert middle.min() > 0.5 * middle.max(), change.round(2)
    assert np.abs(np.diff(middle)).max() < 0.2 * middle.max(), change.round(2)
    assert change[:3].mean() < middle.mean() and change[-3:].mean() < middle.mean()


def test_pull_out_ends_and_pans_start_where_the_other_ends(files: Media) -> None:
    files.tone("voice.wav", 1.0)
    pull, _ = render_moving_still(files, files.root / "pull", encoded=False, strength=0.6, camera="pull_out")
    still = gray_frames(files.root / "pull" / "frames" / "still.mp4")[0]
    pulled = gray_frames(pull)
    assert np.abs(pulled[-1] - still).mean() < 2 < np.abs(pulled[0] - still).mean()

    left, _ = render_moving_still(files, files.root / "left", encoded=False, strength=1.0, camera="pan_left")
    right, _ = render_moving_still(
        files, files.root / "right", encoded=False, strength=1.0, camera="pan_right"
    )
    to_left, to_right = gray_frames(left), gray_frames(right)
    assert np.abs(to_left[0] - to_right[-1]).mean() < 2 and np.abs(to_left[-1] - to_right[0]).mean() < 2
    assert np.abs(to_right[0] - to_right[-1]).mean() > 10


@pytest.mark.parametrize(
    ("motion", "skipped"),
    [({}, "motion.strength is 0"), ({"strength": 0.5}, None)],
    ids=["still", "moving"],
)
def test_the_motion_phase_runs_only_for_a_moving_still(
    files: Media, motion: dict[str, object], skipped: str | None
) -> None:
    graph = describe(load_job(files.job(motion=motion)))
    assert graph["rules"]["motion"] == ["camera_motion"]
    assert (skipped in graph["skipped"]["motion"]) if skipped else "motion" not in graph["skipped"]
    comfy = describe(load_job(files.job(motion=motion, comfyui={"workflow_ids": ["vidax_text2img_frames"]})))
    assert "ComfyUI" in comfy["skipped"]["motion"]


def test_strength_and_camera_are_checked(files: Media) -> None:
    from va.errors import ExitCode, VaError  # noqa: PLC0415

    for motion, field in (({"strength": 1.5}, "motion.strength"), ({"camera": "dolly"}, "motion.camera")):
        with pytest.raises(VaError) as refused:
            load_job(files.job(motion=motion))
        assert refused.value.code == ExitCode.VALIDATION_FAILED and field in refused.value.message
    filled = json.loads(json.dumps(load_job(files.job()).data["motion"]))
    assert filled["strength"] == 0 and filled["camera"] == "push_in"


def test_validate_warns_when_the_template_ignores_the_strength(
    files: Media, va_cli: CliRunner, state_dir: Path
) -> None:
    comfy = {"workflow_ids": ["vidax_text2img_frames"]}
    ignored = va_cli("validate", files.job(motion={"strength": 0.5}, comfyui=comfy))
    assert ignored.code == 0, ignored.err
    assert ignored.err.count("\n") == 1 and "binds no input to motion_strength" in ignored.err

    folder = state_dir / "comfyui" / "workflows"
    folder.mkdir(parents=True)
    (folder / "moving.json").write_text(json.dumps(INLINE_GRAPH))
    bindings = {**INLINE_BINDINGS, "motion_strength": [{"node": "3", "input": "denoise"}]}
    (folder / "moving.bindings.json").write_text(json.dumps({"schema_version": 1, "bindings": bindings}))
    job = files.job(motion={"strength": 0.5}, comfyui={"workflow_ids": ["moving"]})
    bound = va_cli("validate", job)
    assert bound.code == 0 and bound.err == "", bound.err
    workflow = load_workflow("moving")
    generation = plan_generation(load_job(job), 0.16, 1)  # one batch of 4 frames at 25 fps
    values = generation.values(generation.batches[0], 1)
    assert values["frames"] == 4
    assert render(workflow, values)["3"]["inputs"]["denoise"] == 0.5
