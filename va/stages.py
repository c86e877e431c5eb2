"""The bodies of the graph's rules: prepare the audio, hold the start frame, encode the video.

Each takes the run's plan (``prepare/plan.json``, written when the run starts), never the job file, and
checks what it made against it: the padded audio's length, the still's size, the final's frames, rate and
size (whatever size the lip-sync tool or the visual stage returned, the final has the plan's).
"""

from __future__ import annotations

import logging
from pathlib import Path

from va import media
from va.atomic import read_json, write_json_atomic, write_text_atomic
from va.errors import ExitCode, VaError
from va.lipsync import sync
from va.plan import Plan, changed_fields, plan_json, previous_plan
from va.workdir import Workdir

log = logging.getLogger(__name__)


def write_plan(plan: Plan, target: Path) -> None:
    """Write ``plan`` as ``prepare/plan.json``."""
    write_text_atomic(target, plan_json(plan))


def publish_plan(plan: Plan, target: Path) -> list[str]:
    """Write the plan a graph was built with, unless the same plan is there already; returns the fields
    that changed since the previous plan (none for a first plan)."""
    previous = previous_plan(target)
    if previous == plan:
        return []
    write_plan(plan, target)
    return changed_fields(previous, plan)


def prepare_audio(plan: Plan, padded: Path, aac: Path, loudness_record: Path | None = None) -> None:
    """Pad the voice track with the planned buffers, as WAV for the stages and as the AAC the final
    video copies. With a planned loudness the voice is normalized first (two-pass loudnorm), and what
    it measured before and after is written to ``loudness_record`` (the rule's: prepare/loudness.json)."""
    voice = Path(plan.inputs["audio"].path)
    fit = media.fit_loudness(voice, plan.loudness) if plan.loudness else None
    info = media.pad_audio(voice, padded, plan.buffer.pre_seconds, plan.buffer.post_seconds, aac=aac,
                           loudness=fit)  # fmt: skip
    log.info("padded audio: %.3f s (planned %.3f s)", info.duration_seconds, plan.audio_duration_seconds)
    # Within a frame: the plan measured the voice by decoding it, the padded WAV by its header.
    if abs(info.duration_seconds - plan.audio_duration_seconds) > 1 / plan.fps:
        raise VaError(
            ExitCode.UNSUPPORTED_FORMAT,
            f"input.audio: the padded audio lasts {info.duration_seconds:.3f} s where the plan has "
            f"{plan.audio_duration_seconds:.3f} s (was the voice track replaced after planning?): {voice}",
        )
    if fit is None:
        if loudness_record is not None:
            loudness_record.unlink(missing_ok=True)  # an earlier plan's: not this audio's
        return
    # The voice alone, without the pads: silence around it would widen its measured loudness range.
    window = (plan.buffer.pre_seconds, plan.audio_input_duration_seconds)
    after, _ = media.measure_loudness(padded, fit.target, window=window)
    record = loudness_document(fit, after)
    if not fit.measurable:
        log.warning("the voice has no loudness to normalize (silent, or under 0.4 s of sound): kept as it is")
    log.info("loudness: %s", record)
    if loudness_record is not None:
        write_json_atomic(loudness_record, record)


def loudness_document(fit: media.LoudnessFit, after: media.Loudness) -> dict[str, object]:
    """The record of a normalization: the target, how loudnorm went about it, and the voice's integrated
    loudness, true peak and loudness range before and after."""

    def figures(measured: media.Loudness) -> dict[str, float]:
        return {
            "integrated_lufs": measured.integrated_lufs,
            "true_peak_db": measured.true_peak_db,
            "range_lu": measured.range_lu,
        }

    return {
        "target_lufs": fit.target.target_lufs,
        "true_peak_db": fit.target.true_peak_db,
        "normalization": fit.normalization,
        "before": figures(fit.voice),
        "after": figures(after),
    }


def hold_start_frame(plan: Plan, still: Path, loop: Path) -> None:
    """Render the start image (or the first frame of the start video) as the still to hold, and encode
    the two seconds of it that the final video repeats."""
    geometry = plan.geometry
    frame = media.FrameGeometry(geometry.still_width, geometry.still_height, geometry.filter)
    log.info("start %sx%s -> still %sx%s", geometry.source_width, geometry.source_height, frame.width,
             frame.height)  # fmt: skip
    media.render_still(Path(plan.inputs["start"].path), still, frame, geometry.background)
    media.encode_still_loop(still, loop, fps=plan.fps, crf=plan.encoding.crf, preset=plan.encoding.preset,
                            size=geometry.still_size)  # fmt: skip


def encode(
    plan: Plan,
    loop: Path,
    audio: Path,
    final: Path,
    *,
    video: Path | None = None,
    captions: Path | None = None,
    lipsync_result: Path | None = None,
) -> None:
    """The final video of the planned frame count, rate and size: the held still's ``loop`` repeated (or
    ``video``, from the lip-sync or the visual stage, brought to the plan's picture whatever its size)
    with the padded audio, and the ``captions`` (SRT) as a subtitle track or, with
    ``output.captions: burn``, drawn into the picture.

    A lip-synced video the sync check found out of sync (``lipsync_result``'s record) is, with
    ``on_fail: fail``, made under the kept name instead and the run ends ``LIPSYNC_OUT_OF_SYNC``; with
    ``warn`` it is published and the offset said."""
    record = read_json(lipsync_result).get("sync", {}) if lipsync_result and lipsync_result.exists() else {}
    if record.get("verdict") != sync.OUT_OF_SYNC:
        _encode(plan, loop, audio, final, video=video, captions=captions)
        return
    if plan.lipsync is not None and plan.lipsync.sync.on_fail == "warn":
        log.warning("%s; published all the same (lipsync.sync_check.on_fail: warn)", sync.describe(record))
        _encode(plan, loop, audio, final, video=video, captions=captions)
        return
    kept = Workdir(final.parent).kept_final(final.name)
    kept.unlink(missing_ok=True)  # this run's own, from an earlier attempt
    _encode(plan, loop, audio, kept, video=video, captions=captions)
    raise VaError(
        ExitCode.LIPSYNC_OUT_OF_SYNC,
        f"{sync.describe(record)}; the video is kept as {kept.absolute()}, not published as {final.name}",
    )


def _encode(
    plan: Plan, loop: Path, audio: Path, final: Path, *, video: Path | None, captions: Path | None
) -> None:
    canvas = plan.geometry.canvas
    if captions is not None and plan.as_job().output.captions == "burn":
        picture = video or loop
        info = media.probe_visual(picture)
        media.encode_picture(
            media.video_source(picture), audio, final, fps=plan.fps, frames=plan.target_frames,
            crf=plan.encoding.crf, preset=plan.encoding.preset, picture_filter=media.burn_subtitles(captions),
            no_clobber=True, canvas=canvas, source_size=(info.width, info.height),
        )  # fmt: skip
        return
    if video is None:
        media.loop_still(
            loop, audio, final, fps=plan.fps, frames=plan.target_frames, no_clobber=True, subtitles=captions,
            size=canvas.size,
        )  # fmt: skip
        return
    media.encode_from_video(
        video, audio, final, fps=plan.fps, frames=plan.target_frames, crf=plan.encoding.crf,
        preset=plan.encoding.preset, no_clobber=True, subtitles=captions, canvas=canvas,
    )  # fmt: skip
