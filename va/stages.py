"""The bodies of the graph's rules: prepare the audio, hold the start frame, encode the video."""

from __future__ import annotations

import logging
from pathlib import Path

from va import media
from va.atomic import read_json, write_json_atomic
from va.job import Job
from va.plan import build_plan

log = logging.getLogger(__name__)


def prepare_audio(job: Job, padded: Path, plan: Path, aac: Path) -> None:
    """Pad the voice track with the job's buffers (as WAV for the stages, and as the AAC the final
    video copies) and write the run's plan."""
    buffer = job.data["buffer"]
    info = media.pad_audio(job.audio, padded, buffer["pre_seconds"], buffer["post_seconds"], aac=aac)
    document = build_plan(job, info)
    log.info("plan: %s frames at %s fps", document["target_frames"], document["fps"])
    write_json_atomic(plan, document)


def hold_start_frame(job: Job, still: Path, loop: Path) -> None:
    """Render the start image (or the first frame of the start video) as the still to hold, and encode
    the two seconds of it that the final video repeats."""
    source = media.probe_visual(job.start)
    output = job.data["output"]
    geometry = media.plan_geometry(
        source.width, source.height, output.get("width"), output.get("height"), output["fit"]
    )
    log.info(
        "start %sx%s (%s) -> still %sx%s",
        source.width,
        source.height,
        source.pix_fmt,
        geometry.width,
        geometry.height,
    )
    media.render_still(job.start, still, geometry, output["background"])
    media.encode_still_loop(still, loop, fps=job.fps, crf=output["crf"], preset=output["x264_preset"])


def encode(
    job: Job,
    plan: Path,
    loop: Path,
    audio: Path,
    final: Path,
    *,
    video: Path | None = None,
    captions: Path | None = None,
) -> None:
    """The final video of the planned frame count: the held still's ``loop`` repeated (or ``video``, from
    the lip-sync or the ComfyUI stage) with the padded audio, and the ``captions`` (SRT) as a subtitle
    track or, with ``output.captions: burn``, drawn into the picture."""
    figures = read_json(plan)
    if captions is not None and job.data["output"]["captions"] == "burn":
        output = job.data["output"]
        media.encode_picture(
            media.video_source(video or loop), audio, final, fps=figures["fps"],
            frames=figures["target_frames"], crf=output["crf"], preset=output["x264_preset"],
            picture_filter=media.burn_subtitles(captions), no_clobber=True,
        )  # fmt: skip
        return
    if video is None:
        frames = figures["target_frames"]
        media.loop_still(
            loop, audio, final, fps=figures["fps"], frames=frames, no_clobber=True, subtitles=captions
        )
        return
    output = job.data["output"]
    media.encode_from_video(
        video, audio, final, fps=figures["fps"], frames=figures["target_frames"], crf=output["crf"],
        preset=output["x264_preset"], no_clobber=True, subtitles=captions,
    )  # fmt: skip
