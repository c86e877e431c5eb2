"""The bodies of the graph's rules: prepare the audio, hold the start frame, encode the video.

Each takes its rule's settings (va/rule_settings.py: its typed slice of the plan), never the job file,
and checks what it made against them: the padded audio's length, the still's size, the final's frames,
rate and size (whatever size the lip-sync tool or the visual stage returned, the final has the plan's).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from pathlib import Path

from va import media
from va.atomic import publish_no_clobber, read_json, scratch_folder, write_json_atomic
from va.errors import ExitCode, VaError
from va.lipsync import sync
from va.rule_settings import AudioSettings, EncodeSettings, StillSettings
from va.workdir import Workdir

log = logging.getLogger(__name__)

#: How far the padded audio's length may be from the plan's (a frame at 25 fps).
PADDED_TOLERANCE_SECONDS = 0.04


def prepare_audio(
    settings: AudioSettings, padded: Path, aac: Path, loudness_record: Path | None = None
) -> None:
    """Pad the voice track with the planned buffers, as WAV for the stages and as the AAC the final
    video copies. With a planned loudness the voice is normalized first (two-pass loudnorm), and what
    it measured before and after is written to ``loudness_record`` (the rule's: prepare/loudness.json)."""
    voice, buffer, planned = Path(settings.voice.path), settings.buffer, settings.padded_seconds
    # The voice as the plan probed it: a voice replaced since makes another plan, and this rule reruns
    # with it; one replaced while the run goes on is caught by the length check below.
    probe = settings.probe or media.probe_audio(voice)
    fit = media.fit_loudness(voice, settings.loudness, probe) if settings.loudness else None
    info = media.pad_audio(
        voice, padded, buffer.pre_seconds, buffer.post_seconds, aac=aac, loudness=fit, probe=probe
    )
    log.info("padded audio: %.3f s (planned %.3f s)", info.duration_seconds, planned)
    # The plan measured the voice by decoding it, the padded WAV by its header: they agree within a few
    # milliseconds, a replaced voice track differs by more than this.
    if abs(info.duration_seconds - planned) > PADDED_TOLERANCE_SECONDS:
        raise VaError(
            ExitCode.UNSUPPORTED_FORMAT,
            f"input.audio: the padded audio lasts {info.duration_seconds:.3f} s where the plan has "
            f"{planned:.3f} s (was the voice track replaced after planning?): {voice}",
        )
    if fit is None:
        if loudness_record is not None:
            loudness_record.unlink(missing_ok=True)  # an earlier plan's: not this audio's
        return
    # The voice alone, without the pads: silence around it would widen its measured loudness range.
    window = (buffer.pre_seconds, settings.voice_seconds)
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


def hold_start_frame(settings: StillSettings, still: Path, loop: Path) -> None:
    """Render the start image (or the first frame of the start video) as the still to hold, and encode
    the two seconds of it that the final video repeats."""
    geometry, encoding = settings.geometry, settings.encoding
    frame = media.FrameGeometry(geometry.still_width, geometry.still_height, geometry.filter)
    log.info(
        "start %sx%s -> still %sx%s", geometry.source_width, geometry.source_height, frame.width, frame.height
    )
    media.render_still(Path(settings.start.path), still, frame, geometry.background, settings.probe)
    media.encode_still_loop(
        still, loop, fps=settings.fps, crf=encoding.crf, preset=encoding.preset, size=geometry.still_size
    )


def encode(
    settings: EncodeSettings,
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

    A picture whose template lip-syncs in the model (``settings.model_sync``) is checked first, its
    record written to ``lipsync_result``. A video the sync check found out of sync (that record) is, with
    ``on_fail: fail``, made under the kept name instead and the run ends ``LIPSYNC_OUT_OF_SYNC``; with
    ``warn`` it is published and the offset said. The kept name replaces only a video this run kept there
    before (``Workdir.kept_record``): a user's file of that name ends the run ``OUTPUT_EXISTS``, kept."""
    if lipsync_result is not None and settings.lipsync is None:
        # A picture whose model moved the lips is checked here, before its encode; its record is where a
        # lip-sync stage's would be. Loaded only then: a held still's encode starts without it.
        from va.lipsync.stage import check_model_picture  # noqa: PLC0415

        check_model_picture(settings.model_sync, video, audio, lipsync_result)
        lipsync_result = lipsync_result if settings.model_sync is not None else None
    record: sync.SyncData = sync.unchecked("not checked")
    if lipsync_result is not None and lipsync_result.exists():
        record = read_json(lipsync_result).get("sync") or record
    if record["verdict"] != sync.OUT_OF_SYNC:
        _encode(settings, loop, audio, final, video=video, captions=captions)
        return
    if settings.sync_on_fail == "warn":
        log.warning("%s; published all the same (lipsync.sync_check.on_fail: warn)", sync.describe(record))
        _encode(settings, loop, audio, final, video=video, captions=captions)
        return
    workdir = Workdir(final.parent)
    kept, said = workdir.kept_final(final.name), sync.describe(record)
    earlier = workdir.kept_digests().get(kept.name, frozenset())  # read once, before the encode
    refuse_foreign_kept(kept, earlier, said)  # before the encode: a user's file there is known at once
    with scratch_folder(kept) as scratch:
        made = scratch / kept.name
        _encode(settings, loop, audio, made, video=video, captions=captions)
        digest = _sha256(made)
        # Noted before it takes the name (a run stopped in between still owns it), beside the earlier
        # one's: while one replaces the other, either is the run's.
        _record_kept(workdir, kept.name, earlier | {digest})
        try:
            refuse_foreign_kept(kept, earlier, said)  # once more: the encode took a while
            _remove_kept(kept, scratch / "earlier", earlier, said)
            publish_no_clobber(made, kept)
        except VaError:
            _record_kept(workdir, kept.name, earlier)  # not kept: its digest claims nothing
            raise
        _record_kept(workdir, kept.name, {digest})  # the earlier one is gone
    raise VaError(
        ExitCode.LIPSYNC_OUT_OF_SYNC,
        f"{said}; the video is kept as {kept.absolute()}, not published as {final.name}",
    )


def refuse_foreign_kept(kept: Path, earlier: frozenset[str], said: str) -> None:
    """A file at ``kept`` is replaced only when it is a video this run kept there and nobody changed since
    (its SHA-256 is one ``earlier`` recorded): anything else there is the user's, ``OUTPUT_EXISTS``."""
    try:
        digest = _file_digest(kept)
    except FileNotFoundError:
        return
    if digest not in earlier:
        raise _foreign_kept(kept, said)


def _remove_kept(kept: Path, aside: Path, earlier: frozenset[str], said: str) -> None:
    """Remove the video this run kept at ``kept`` before. It is first moved to ``aside`` (in the scratch
    folder) in one step, and what was moved is checked: a file put there since the last check (a user's)
    is never the one removed, but goes back to its name and the run ends ``OUTPUT_EXISTS``."""
    try:
        os.rename(kept, aside)
    except FileNotFoundError:
        return
    if _file_digest(aside) in earlier:
        aside.unlink()
        return
    try:
        publish_no_clobber(aside, kept)
    except VaError:
        # The name was taken once more meanwhile: what was moved aside keeps a name of its own beside it,
        # out of the scratch folder (which goes at the block's end).
        spare = Path(tempfile.mkdtemp(prefix=f"{kept.name}.yours-", dir=kept.parent)) / kept.name
        os.rename(aside, spare)
        raise VaError(
            ExitCode.OUTPUT_EXISTS,
            f"{said}; {kept.absolute()} was replaced twice while it was checked: not overwriting it, the "
            f"file that was there is now {spare.absolute()}, the out-of-sync video is not kept",
        ) from None
    raise _foreign_kept(kept, said)


def _foreign_kept(kept: Path, said: str) -> VaError:
    return VaError(
        ExitCode.OUTPUT_EXISTS,
        f"{said}; {kept.absolute()} exists and is not a video this run kept (or it was changed since): "
        "not overwriting it, the out-of-sync video is not kept (choose another --workdir, or remove it)",
    )


def _record_kept(workdir: Workdir, name: str, digests: frozenset[str] | set[str]) -> None:
    """``workdir.kept_record`` with ``name``'s digests set to ``digests`` (none: the name dropped), the
    other names' as they are."""
    recorded = {other: sorted(held) for other, held in workdir.kept_digests().items() if other != name}
    write_json_atomic(workdir.kept_record, {**recorded, name: sorted(digests)} if digests else recorded)


def _file_digest(path: Path) -> str | None:
    """The SHA-256 of the regular file at ``path`` (a link or a folder there: None, never the run's);
    ``FileNotFoundError`` when nothing is there."""
    return _sha256(path) if stat.S_ISREG(os.lstat(path).st_mode) else None


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _encode(
    settings: EncodeSettings,
    loop: Path,
    audio: Path,
    final: Path,
    *,
    video: Path | None,
    captions: Path | None,
) -> None:
    picture = settings.picture
    canvas, fps, frames, encoding = picture.geometry.canvas, picture.fps, picture.frames, picture.encoding
    if captions is not None and settings.captions == "burn":
        source = video or loop
        info = media.probe_visual(source)
        media.encode_picture(
            media.video_source(source),
            audio,
            final,
            fps=fps,
            frames=frames,
            crf=encoding.crf,
            preset=encoding.preset,
            drawn_filter=media.burn_subtitles(captions),  # on the frames at their final times
            no_clobber=True,
            canvas=canvas,
            source_size=(info.width, info.height),
        )
        return
    if video is None:
        media.loop_still(
            loop, audio, final, fps=fps, frames=frames, no_clobber=True, subtitles=captions, size=canvas.size
        )
        return
    media.encode_from_video(
        video,
        audio,
        final,
        fps=fps,
        frames=frames,
        crf=encoding.crf,
        preset=encoding.preset,
        no_clobber=True,
        subtitles=captions,
        canvas=canvas,
    )
