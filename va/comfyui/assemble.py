"""The ComfyUI stage's picture: every batch's frames or clips as one video of the plan's frames, rate
and size (``comfyui/output.mp4``). Apart from the stage's executor, so that its rule starts without the
HTTP and websocket clients the batches need."""

from __future__ import annotations

import logging
from pathlib import Path

from va import media
from va.atomic import read_json
from va.rule_settings import AssembleSettings
from va.segments import VoiceSegment

log = logging.getLogger(__name__)


def generated_batches(generated: Path) -> list[Path]:
    """The batch results ``run_batches`` listed, in order."""
    return [Path(path) for path in read_json(generated)["batches"]]


def assemble_visual(settings: AssembleSettings, batches: list[Path], target: Path) -> None:
    """All batches' frames (held to the output rate) or clips (played in order) as one video of exactly
    the planned frames, rate and size: frames of another size than the plan's (ComfyUI's own rounding,
    a template that scales) are brought to the output picture by its ``fit`` and ``background``."""
    gen_fps, picture = settings.generated_fps, settings.picture
    documents = [read_json(path) for path in batches]
    files = [Path(file) for doc in documents for file in doc["files"]]
    first = media.probe_visual(files[0])
    returned = (first.width, first.height)
    canvas = picture.geometry.canvas
    log.info("ComfyUI returned %sx%s, the output is %sx%s", *returned, *canvas.size)
    if all(doc["kind"] == "frames" for doc in documents):
        picture.encode(media.frames_source(files[0].parent, gen_fps), target, source_size=returned)
        return
    with media.scratch_beside(target) as scratch:
        # One clip frame a generated frame: the clips' own rate is replaced by the generation rate.
        picture.encode(media.clips_source(files, scratch), target, source_size=returned, retime=gen_fps)


def kept_frames(segments: tuple[VoiceSegment, ...]) -> str:
    """Which frames of the segments' clips played one after the other make the picture: each clip's new
    frames after its head frames, as many as the plan keeps (an ffmpeg expression of the frame number)."""
    ranges, offset = [], 0
    for segment in segments:
        first = offset + segment.head_frames
        ranges.append(f"between(n,{first},{first + segment.kept - 1})")
        offset += segment.frames
    return "+".join(ranges)


def seam_crossfade(segments: tuple[VoiceSegment, ...], crossfade: int) -> media.SeamBlend | None:
    """The crossfade at each seam (``comfyui.crossfade_frames``): the last ``crossfade`` frames the previous
    segment keeps are blended with the next segment's last head frames, which show the same moments as
    the next segment made them, from mostly the previous towards mostly the next; no frame is added or
    dropped. None when there is nothing to blend (no crossfade, one segment, no head frames)."""
    starts, offset = [], 0
    for segment in segments:
        starts.append(offset)
        offset += segment.frames
    chosen: list[str] = []
    shares: dict[float, list[int]] = {}
    position = 0
    for k, segment in enumerate(segments):
        after = segments[k + 1] if k + 1 < len(segments) else None
        width = 0 if after is None else min(crossfade, segment.kept, after.head_frames)
        first = starts[k] + segment.head_frames
        if segment.kept > width:
            chosen.append(f"between(n,{first},{first + segment.kept - 1 - width})")
        if after is not None and width:
            head_end = starts[k + 1] + after.head_frames
            chosen.append(f"between(n,{head_end - width},{head_end - 1})")
            seam = position + segment.kept
            for j in range(width):  # the j-th blended frame keeps (width - j) / (width + 1) of the previous
                shares.setdefault(round((width - j) / (width + 1), 6), []).append(seam - width + j)
        position += segment.kept
    if not shares:
        return None
    blends = tuple(
        (share, "+".join(f"eq(n,{frame})" for frame in frames)) for share, frames in sorted(shares.items())
    )
    return media.SeamBlend("+".join(chosen), blends)


def assemble_segments(settings: AssembleSettings, clips: list[Path], target: Path) -> None:
    """The segments' clips as one video of exactly the planned frames, rate and size: each clip's head
    frames dropped, its new frames (as many as the plan keeps) one after the other at the model's rate,
    brought to the output's rate and picture, with a crossfade at the seams when the job asks for one
    (``seam_crossfade``). The clips' own audio is left out: the final's is the padded voice."""
    picture = settings.picture
    first = media.probe_visual(clips[0])
    with media.scratch_beside(target) as scratch:
        picture.encode(
            media.clips_source(clips, scratch),
            target,
            source_size=(first.width, first.height),
            retime=settings.generated_fps,
            select=kept_frames(settings.segments),
            blend=seam_crossfade(settings.segments, settings.crossfade_frames),
        )
