"""A camera move over the held still (``motion.strength``, ``motion.camera``): push in, pull out, or pan.

Strength 1 is a 25 % zoom, or a pan across 25 % of the width, from the first frame to the last, eased in
and out (smoothstep). The view is a rectangle of fractional size and position in the still, mapped onto
the whole frame by ffmpeg's ``perspective`` filter, which samples between pixels: the picture moves by
fractions of a pixel from frame to frame instead of in the one-pixel steps of ``zoompan``, whose crop is
rounded to whole pixels each frame (that rounding is its jitter). Strength 0 is no rule at all: the
still is held as the stream-copied loop, as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from va import media
from va.plan_parts import CameraMove
from va.rule_settings import CameraSettings

if TYPE_CHECKING:  # the job is read by ``va validate`` (motion_warnings); the rule renders from its settings
    from va.job import Job

log = logging.getLogger(__name__)

#: How far strength 1 moves: the zoom factor's growth, or the pan's share of the width.
FULL_MOVE = 0.25
CAMERAS = ("push_in", "pull_out", "pan_left", "pan_right")


def motion_warnings(job: Job) -> list[str]:
    """What ``va validate`` warns of: a strength above 0 that the ComfyUI template binds to nothing."""
    from va.job import comfyui_active  # noqa: PLC0415 - see TYPE_CHECKING above

    strength = job.motion.strength
    if not comfyui_active(job) or strength == 0:
        return []
    # The templates' loader (and the ComfyUI pool's types it names), for a generated picture alone.
    from va.comfyui.workflow import load_workflow  # noqa: PLC0415

    workflow = load_workflow(job.comfyui.workflow_ids[0])
    if "motion_strength" in workflow.bindings:
        return []
    return [
        f"motion.strength is {strength:g} but ComfyUI template {workflow.id} binds no input to "
        "motion_strength: the strength changes nothing (bind it in its .bindings.json)"
    ]


def view_rectangle(move: CameraMove, frames: int) -> tuple[str, str, str, str]:
    """The view at output frame ``on`` as ffmpeg expressions of ``W``, ``H`` and ``on``: left, top, right,
    bottom in the still's pixels (fractions allowed)."""
    last = max(frames - 1, 1)
    # smoothstep: 0 at the first frame, 1 at the last, at rest at both ends
    eased = f"(st(0,clip(on/{last},0,1))*ld(0)*(3-2*ld(0)))"
    amount = FULL_MOVE * move.strength
    if move.camera in ("push_in", "pull_out"):
        progress = eased if move.camera == "push_in" else f"(1-{eased})"
        zoom = f"(1+{amount:.6f}*{progress})"
        return (f"(W-W/{zoom})/2", f"(H-H/{zoom})/2", f"(W+W/{zoom})/2", f"(H+H/{zoom})/2")
    # A pan looks through a window narrower than the still by the distance it travels.
    scale = 1 - amount
    progress = eased if move.camera == "pan_right" else f"(1-{eased})"
    left = f"(W*{amount:.6f}*{progress})"
    top = f"(H*{amount / 2:.6f})"
    return (left, top, f"({left}+W*{scale:.6f})", f"({top}+H*{scale:.6f})")


def camera_filter(move: CameraMove, frames: int) -> str:
    """The ffmpeg filter that moves the camera over a still repeated for ``frames`` frames."""
    left, top, right, bottom = view_rectangle(move, frames)
    corners = [left, top, right, top, left, bottom, right, bottom]  # x0 y0 (top left) ... x3 y3
    names = [f"{axis}{corner}" for corner in range(4) for axis in "xy"]
    options = ":".join(f"{name}='{value}'" for name, value in zip(names, corners, strict=True))
    return f"perspective={options}:interpolation=linear:sense=source:eval=frame"


def render_camera_move(settings: CameraSettings, still: Path, target: Path) -> None:
    """The held still with the job's camera move: exactly the planned frames at the planned rate and size
    (no audio)."""
    move, picture = settings.move, settings.picture
    frames, fps, encoding = picture.frames, picture.fps, picture.encoding
    log.info("camera %s at strength %s over %s frames", move.camera, move.strength, frames)
    media.encode_picture(
        media.still_source(still, fps),
        None,
        target,
        fps=fps,
        frames=frames,
        crf=encoding.crf,
        preset=encoding.preset,
        picture_filter=camera_filter(move, frames),
        canvas=picture.geometry.canvas,
        source_size=picture.geometry.still_size,
    )
