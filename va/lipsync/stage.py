"""The lip-sync rule's body: prepare the inputs a provider expects, run it, check its output, publish it.

Writes ``lipsync/output.mp4`` and ``lipsync/result.json`` (provider, passthrough, error, the sync check's
verdict), which the manifest reads, and the check's track ``lipsync/sync.json``; a cut audio's chunks each
write ``lipsync/chunks/NNNN.mp4`` and their own result and track, and ``join_chunks`` joins them.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from va import face, media
from va.atomic import copy_file_atomic, read_json, write_json_atomic
from va.errors import ExitCode, VaError
from va.lipsync import sync
from va.lipsync.command import ProviderOutput, ProviderRun, run_command_provider
from va.lipsync.providers import Provider, get_provider
from va.lipsync.result import LipsyncResult
from va.plan_parts import Chunk, Lipsync
from va.rule_settings import LipsyncSettings, ModelSync

log = logging.getLogger(__name__)
RESULT_NAME = "result.json"


def check_output(
    path: Path, audio_seconds: float, fps: int, provider_id: str, tail: str = "", *, short_frames: int = 0
) -> None:
    """The provider's file must decode and last as long as the padded audio, within one frame (or up to
    ``short_frames`` more frames shorter, for tools known to stop early; the encode holds the last frame).

    A failure names the provider's last output lines (``tail``): tools that exit 0 on failure say why there.
    """
    said = f"; its last output: {tail}" if tail else ""
    try:
        seconds = media.decoded_duration(path, stream="v")
    except VaError as exc:
        raise VaError(
            ExitCode.LIPSYNC_FAILED, f"lip-sync provider {provider_id}: output does not decode{said}"
        ) from exc
    frame = 1.0 / fps
    if not -(1 + short_frames) * frame - 1e-6 <= seconds - audio_seconds <= frame + 1e-6:
        raise VaError(
            ExitCode.LIPSYNC_FAILED,
            f"lip-sync provider {provider_id}: output lasts {seconds:.3f} s, "
            f"the audio {audio_seconds:.3f} s{said}",
        )


def _prepare_inputs(
    settings: LipsyncSettings, chunk: Chunk, *, still: Path, audio: Path, folder: Path, visual: Path | None
) -> dict[str, Path]:
    """The chunk's picture as a video at the provider's frame rate, the still itself, the chunk's audio as
    the tool wants it; both padded to the chunk's ``input_frames`` (the tool's frame quantum): the picture
    holds its last frame, the audio is silence."""
    inputs = folder / "input"
    if inputs.exists():
        shutil.rmtree(inputs)
    inputs.mkdir(parents=True)
    stage = settings.stage
    wanted = stage.settings["input"]
    video, image, voice = inputs / "video.mp4", inputs / "image.png", inputs / "audio.wav"
    crf, fps, frames = settings.picture.encoding.crf, stage.fps, chunk.input_frames
    if visual is None:
        media.encode_held_still(still, None, video, fps=fps, frames=frames, crf=crf, preset="veryfast")
    elif chunk.first == 0:
        media.encode_from_video(visual, None, video, fps=fps, frames=frames, crf=crf, preset="veryfast")
    else:
        window = media.video_window(visual, chunk.start_seconds)
        media.encode_picture(window, None, video, fps=fps, frames=frames, crf=crf, preset="veryfast")
    shutil.copyfile(still, image)
    media.cut_audio(
        audio,
        voice,
        start_seconds=chunk.start_seconds,
        seconds=chunk.end_seconds - chunk.start_seconds,
        length_seconds=chunk.input_seconds,
        sample_rate=wanted["sample_rate"],
        channels=wanted["channels"],
    )
    return {"video": video, "image": image, "audio": voice}


def check_face(
    provider: Provider, settings: LipsyncSettings, chunk: Chunk, *, video: Path, visual: Path | None
) -> face.FaceSearch | None:
    """For a provider that needs a face (None for one that does not): the held still's check, made when
    the run was planned, or, for the visual stage's picture, frames spread over the ``video`` this run of
    the tool gets (the chunk's), checked now, before the tool starts. A frame without a face is
    ``LIPSYNC_INPUT_REJECTED`` naming the visual stage's file and its frame."""
    if not provider.settings["needs_face"]:
        return None
    stage = settings.stage
    if visual is None and stage.face is not None:
        found = stage.face
    else:
        found = face.search_video(video)
        if visual is not None:  # frames of the tool's video (at its rate, from the chunk's start) -> visual's

            def frame(number: int) -> int:
                return round((chunk.start_seconds + number / stage.fps) * settings.picture.fps)

            faceless = None if found.faceless_frame is None else frame(found.faceless_frame)
            frames = tuple(frame(number) for number in found.frames)
            found = dataclasses.replace(found, file=str(visual), frames=frames, faceless_frame=faceless)
    if found.faceless_frame is not None or found.box is None:
        raise found.refusal(provider.id)
    return found


def _run_provider(
    provider: Provider,
    settings: LipsyncSettings,
    chunk: Chunk,
    *,
    inputs: dict[str, Path],
    work: Path,
    face_box: str = "",
) -> ProviderOutput:
    fps = settings.stage.fps
    if provider.type == "audiogram":
        produced = work / "audiogram.mp4"
        media.render_audiogram(
            inputs["video"],
            inputs["audio"],
            produced,
            fps=fps,
            frames=chunk.input_frames,
            style=provider.settings["style"],
            colour=provider.settings["colour"],
            crf=settings.picture.encoding.crf,
            preset="veryfast",
        )
        return ProviderOutput(produced)
    values = {
        "video": str(inputs["video"]),
        "image": str(inputs["image"]),
        "audio": str(inputs["audio"]),
        "output": str(work / "output.mp4"),
        "workdir": str(work),
        "fps": str(fps),
        "seed": str(settings.seed),
        "home": str(provider.settings.get("home", "")),
        "face_box": face_box,
    }
    run = ProviderRun(values, work, work.parent / "logs")
    if provider.type == "http":
        # The HTTP client is loaded only for an HTTP provider: a command's rule starts without it.
        from va.lipsync.remote import run_http_provider  # noqa: PLC0415

        return ProviderOutput(run_http_provider(provider, run, inputs))
    return run_command_provider(provider, run)


def _settle(
    settings: LipsyncSettings, chunk: Chunk, produced: Path, output: Path, *, joined: bool, measure: bool
) -> list[float | None] | None:
    """Publish the tool's video as the chunk's output of exactly ``chunk.frames`` frames: trimmed back from
    the padded length, a short one holding its last frame. A whole, unpadded run's output is published as
    the tool made it (the encode re-times it); a chunk to be joined is always re-encoded, so every chunk has
    the same stream settings and the join is a stream copy. With ``measure``, a re-encode measures the
    mouth in the frames it encodes (the sync check's, from the same decode): returned, else None."""
    fps, encoding = settings.stage.fps, settings.picture.encoding
    crf, preset = encoding.crf, encoding.preset
    if not joined and chunk.input_frames == chunk.frames:
        copy_file_atomic(produced, output)
        return None
    mouth: list[float | None] = []
    tap = sync.mouth_tap(produced, mouth) if measure else None
    if joined:
        source = media.video_source(produced)
        media.encode_picture(
            source, None, output, fps=fps, frames=chunk.frames, crf=crf, preset=preset, tap=tap
        )
    else:
        media.encode_from_video(
            produced, None, output, fps=fps, frames=chunk.frames, crf=crf, preset=preset, tap=tap
        )
    return mouth if measure else None


def run_lipsync(
    settings: LipsyncSettings, still: Path, audio: Path, output: Path, *, visual: Path | None = None
) -> LipsyncResult:
    """Run the job's provider on the held still (or the visual stage's ``visual`` video) and the padded
    audio: the whole of it, or the planned chunk of a cut one (``settings.chunk``; its folder
    ``lipsync/chunks/NNNN/`` beside its output), then check the mouth against the voice (the stage's
    ``sync``; with ``retry`` an out-of-sync result is made once more). With ``allow_passthrough`` a
    failure publishes the un-synced video instead."""
    # Tools run in their own folder: every path they see must be absolute.
    still, audio, output = (path.absolute() for path in (still, audio, output))
    stage, chunk = settings.stage, settings.chunk
    window = chunk if chunk is not None else stage.chunks[0]
    provider = get_provider(stage.provider)
    folder = output.parent if chunk is None else output.with_suffix("")
    work = folder / "work"
    if work.exists():  # the provider's own folder from an earlier, interrupted attempt
        shutil.rmtree(work)
    work.mkdir(parents=True)
    inputs = _prepare_inputs(settings, window, still=still, audio=audio, folder=folder, visual=visual)
    result: LipsyncResult = {"provider": provider.id, "type": provider.type, "passthrough": False}
    if chunk is not None:
        result["chunk"] = chunk.name
    joined = chunk is not None
    (folder / sync.TRACK_NAME).unlink(missing_ok=True)
    try:
        found = check_face(provider, settings, window, video=inputs["video"], visual=visual)
        if found is not None:
            result["face"] = found.as_dict()
        face_box = found.box.as_text() if found is not None and found.box is not None else ""
        for attempt in (1, 2):
            produced = _run_provider(provider, settings, window, inputs=inputs, work=work, face_box=face_box)
            check_output(
                produced.path,
                window.input_seconds,
                stage.fps,
                provider.id,
                produced.tail,
                short_frames=provider.settings["short_frames_held"],
            )
            measured = stage.sync.enabled
            mouth = _settle(settings, window, produced.path, output, joined=joined, measure=measured)
            result["sync"] = _check_sync(
                stage, window, output, inputs["audio"], folder, attempt=attempt, mouth=mouth
            )
            if not _retry_sync(stage, window, result["sync"], attempt):
                break
            shutil.rmtree(work)
            work.mkdir()
    except VaError as exc:
        result["error"] = exc.as_dict()
        if not stage.allow_passthrough:
            write_json_atomic(folder / RESULT_NAME, result)
            raise
        log.warning("lip-sync failed, passing the un-synced video through: %s", exc.message)
        result["passthrough"] = True
        result["sync"] = sync.unchecked("the un-synced video was passed through")
        _settle(settings, window, inputs["video"], output, joined=joined, measure=False)
    write_json_atomic(folder / RESULT_NAME, result)
    return result


def _check_sync(
    stage: Lipsync,
    chunk: Chunk,
    video: Path,
    audio: Path,
    folder: Path,
    *,
    attempt: int,
    mouth: list[float | None] | None = None,
) -> sync.SyncData:
    """The sync check of the chunk's published ``video`` against the ``audio`` the tool was given (from the
    chunk's start): its record, and its track in ``sync.json`` beside the result (the join reads it). The
    ``mouth`` measured as ``video`` was encoded, when it was; else ``video`` is decoded for it."""
    settings = stage.sync
    if not settings.enabled:
        return sync.unchecked(settings.reason)
    if mouth is None:
        track = sync.measure(video, audio, stage.fps)
    else:
        track = sync.SyncTrack(stage.fps, tuple(mouth), tuple(sync.loudness(audio, stage.fps)))
    track = track.window(0, chunk.frames)
    found = sync.estimate(track, max_offset_frames=settings.max_offset_frames)
    write_json_atomic(folder / sync.TRACK_NAME, track.as_dict())
    record = found.as_dict()
    record["attempts"], record["max_offset_frames"] = attempt, settings.max_offset_frames
    return record


def _retry_sync(stage: Lipsync, chunk: Chunk, record: sync.SyncData, attempt: int) -> bool:
    """Whether to run the tool once more on a chunk found out of sync (``lipsync.sync_check.retry``)."""
    if record["verdict"] != sync.OUT_OF_SYNC or not stage.sync.retry or attempt > 1:
        return False
    log.warning(
        "lip-sync chunk %s is %+d frames off the voice; running the provider once more "
        "(lipsync.sync_check.retry)",
        chunk.name,
        record["offset_frames"],
    )
    return True


def join_chunks(settings: LipsyncSettings, clips: list[Path], output: Path) -> LipsyncResult:
    """Join the chunks' videos, frame-exactly (each holds its planned frames), to the stage's output, and
    record the stage's result: the provider, and the chunks passed through un-synced, if any."""
    stage = settings.stage
    media.concat_videos(clips, output, frames=stage.frames, failure=ExitCode.LIPSYNC_FAILED)
    results = [read_json(clip.with_suffix("") / RESULT_NAME) for clip in clips]
    passed = [str(result["chunk"]) for result in results if result.get("passthrough")]
    result: LipsyncResult = {"provider": stage.provider, "type": stage.type, "passthrough": bool(passed)}
    result["chunks"] = len(clips)
    if passed:
        result["chunks_passed_through"] = passed
        result["error"] = next(r["error"] for r in results if r.get("passthrough"))
    faces = [r["face"] for r in results if r.get("face")]
    if faces:  # a provider that needs a face: the check of the first chunk (each chunk checked its own)
        result["face"] = faces[0]
    result["sync"] = _join_sync(stage, [clip.with_suffix("") for clip in clips], output.parent)
    write_json_atomic(output.parent / RESULT_NAME, result)
    return result


def _join_sync(stage: Lipsync, folders: list[Path], target: Path) -> sync.SyncData:
    """The sync check of the joined video, from the chunks' tracks: the whole's verdict and each chunk's
    (``sync.judge``), the whole track written to ``target/sync.json`` for the report."""
    (target / sync.TRACK_NAME).unlink(missing_ok=True)
    if not stage.sync.enabled:
        return sync.unchecked(stage.sync.reason)
    tracks = []
    for folder in folders:
        found = folder / sync.TRACK_NAME
        # A chunk passed through un-synced has no track: its frames count as faceless and silent.
        tracks.append(sync.SyncTrack.from_dict(read_json(found)) if found.exists() else sync.blank(stage.fps))
    track = sync.joined(tracks, [chunk.frames for chunk in stage.chunks])
    windows = [sync.ChunkWindow(chunk.name, chunk.first, chunk.frames) for chunk in stage.chunks]
    whole, parts = sync.judge(track, windows, max_offset_frames=stage.sync.max_offset_frames)
    write_json_atomic(target / sync.TRACK_NAME, track.as_dict())
    attempts = [read_json(folder / RESULT_NAME).get("sync", {}).get("attempts", 1) for folder in folders]
    chunks = [part.as_dict() for part in parts]
    for chunk, tries in zip(chunks, attempts, strict=True):
        chunk["attempts"] = tries
    record = whole.as_dict()
    record["max_offset_frames"], record["chunks"] = stage.sync.max_offset_frames, chunks
    return record


def check_model_picture(model: ModelSync | None, video: Path | None, audio: Path, result: Path) -> None:
    """The sync check of a picture whose template lip-syncs in the model, before the encode: the mouth of
    ``video`` against the padded ``audio``, the whole and each segment (``sync.judge``), recorded in
    ``result`` (``lipsync/result.json``, with the track beside it) as a lip-sync stage's check would be.
    Without a check (``model`` None) an earlier run's record of one is removed."""
    track_file = result.with_name(sync.TRACK_NAME)
    if model is None or video is None:
        if result.exists() and read_json(result).get("in_model"):
            result.unlink()
            track_file.unlink(missing_ok=True)
        return
    track = sync.measure(video, audio, model.fps)
    settings = model.settings
    whole, parts = sync.judge(
        track, model.segments, max_offset_frames=settings.max_offset_frames, unit="segment"
    )
    record = whole.as_dict()
    record["max_offset_frames"], record["unit"] = settings.max_offset_frames, "segment"
    record["chunks"] = [part.as_dict() for part in parts]
    result.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(track_file, track.as_dict())
    found: LipsyncResult = {"provider": None, "type": "model", "passthrough": False}
    found["in_model"], found["sync"] = model.template, record
    write_json_atomic(result, found)
