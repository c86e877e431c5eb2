"""The stabilize phase (``stabilize``): a steadier, evenly lit version of ComfyUI's generated picture.

Generated frames wobble (each is drawn anew, so edges and the whole picture shift a little) and flicker
(the brightness drifts from frame to frame). ``vidstab`` measures the shake in a first pass
(``vidstabdetect``) and evens out the camera path in the second (``vidstabtransform``, a slight zoom
hiding the moved borders); ``deflicker`` evens the brightness over a few frames. The result has exactly
the planned frames at the job's rate. A held still (moving or not) has neither fault: the phase is skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

from va import media
from va.rule_settings import StabilizeSettings

log = logging.getLogger(__name__)

#: vidstab's settings: how shaky the input is (1-10) and how closely it is measured (1-15).
SHAKINESS = 6
ACCURACY = 15
#: Frames on each side averaged into the camera path (vidstab) and into the brightness (deflicker).
SMOOTHING = 10
DEFLICKER_FRAMES = 5


def stabilize_filter(method: str, transforms: Path) -> str:
    """The second pass's filters for ``method``: ``vidstab``, ``deflicker`` or ``both``."""
    steps = []
    if method in ("vidstab", "both"):
        steps.append(
            f"vidstabtransform=input={media.filter_path(transforms)}:smoothing={SMOOTHING}:optzoom=1:interpol=bicubic"
        )
    if method in ("deflicker", "both"):
        steps.append(f"deflicker=size={DEFLICKER_FRAMES}:mode=pm")
    return ",".join(steps)


def stabilize_video(settings: StabilizeSettings, video: Path, target: Path) -> None:
    """``video`` (ComfyUI's picture, of the plan's size) stabilized by the job's method into ``target``:
    the planned frames, rate and size."""
    method, picture = settings.method, settings.picture
    transforms = target.with_name("transforms.trf")
    if method in ("vidstab", "both"):
        media.detect_shake(video, transforms, shakiness=SHAKINESS, accuracy=ACCURACY)
    log.info("stabilize %s: %s frames", method, picture.frames)
    picture.encode(
        media.video_source(video),
        target,
        source_size=picture.geometry.canvas.size,
        picture_filter=stabilize_filter(method, transforms),
    )
