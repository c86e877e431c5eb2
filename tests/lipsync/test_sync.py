"""va/lipsync/sync.py: the offset between a mouth and a voice, measured on a synthetic talking face (a real
photo whose mouth opens with a voice, tests/lipsync/talking_face.py) through ffmpeg, dlib's landmarks and
the cross-correlation; the verdicts, per chunk; no verdict without a face, speech or a moving mouth."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest
from PIL import Image

from tests.conftest import Media, ffmpeg
from tests.lipsync.fakes import voice_with_pauses
from tests.lipsync.talking_face import FPS, envelope, shifted, write_talking_face, write_voice
from va import media
from va.job import SyncCheckSettings
from va.lipsync import sync
from va.lipsync.providers import Provider
from va.lipsync.sync_figure import draw_track

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> tuple[numpy.ndarray, tuple[float | None, ...]]:
    """A 10 s envelope and the mouth measured in the talking face that follows it."""
    folder = tmp_path_factory.mktemp("face")
    levels = envelope(10, seed=3)
    video = write_talking_face(folder / "face.mp4", levels)
    return levels, tuple(sync.mouth_openings(video))


@pytest.mark.parametrize("k", range(-8, 9))
def test_an_offset_of_k_frames_is_found_within_one_frame(
    spoken: tuple[numpy.ndarray, tuple[float | None, ...]], tmp_path: Path, k: int
) -> None:
    levels, mouth = spoken
    # The picture lags the voice by k frames: the voice says at frame t what the mouth shows at t + k.
    voice = write_voice(tmp_path / "voice.wav", shifted(levels, -k))
    track = sync.SyncTrack(FPS, mouth, tuple(sync.loudness(voice, FPS)))
    found = sync.estimate(track, max_offset_frames=2)
    assert found.offset_frames is not None and abs(found.offset_frames - k) <= 1, found
    assert found.confidence is not None and found.confidence >= sync.MIN_CONFIDENCE
    assert found.verdict == (sync.IN_SYNC if abs(found.offset_frames) <= 2 else sync.OUT_OF_SYNC)
    assert found.frames == 250


@pytest.mark.parametrize("k", [0, 5])
def test_a_voice_with_long_pauses_is_measured(tmp_path: Path, k: int) -> None:
    levels = envelope(16, seed=7, pauses=((3.0, 7.0), (10.0, 13.0)))  # 7 of 16 s silent
    video = write_talking_face(tmp_path / "face.mp4", shifted(levels, k))
    found = sync.estimate(
        sync.measure(video, write_voice(tmp_path / "voice.wav", levels), FPS), max_offset_frames=2
    )
    assert found.offset_frames is not None and abs(found.offset_frames - k) <= 1, found
    assert found.verdict == (sync.IN_SYNC if k == 0 else sync.OUT_OF_SYNC)


def test_the_one_shifted_chunk_of_a_long_voice_is_named(tmp_path: Path) -> None:
    levels = envelope(18, seed=11)
    chunks = [sync.ChunkWindow(f"{index:04d}", index * 150, 150) for index in range(3)]
    picture = levels.copy()
    picture[150:300] = shifted(levels, 6)[150:300]  # the middle chunk's picture 6 frames late
    video = write_talking_face(tmp_path / "face.mp4", picture)
    track = sync.measure(video, write_voice(tmp_path / "voice.wav", levels), FPS)
    whole, parts = sync.judge(track, chunks, max_offset_frames=2)
    assert [part.chunk for part in parts] == ["0000", "0001", "0002"]
    assert [part.verdict for part in parts] == [sync.IN_SYNC, sync.OUT_OF_SYNC, sync.IN_SYNC]
    assert parts[1].offset_frames is not None and abs(parts[1].offset_frames - 6) <= 1
    assert (parts[1].start_seconds, parts[1].end_seconds) == (6.0, 12.0)
    assert whole.verdict == sync.OUT_OF_SYNC and "chunk 0001" in whole.reason


def test_a_video_without_a_face_has_no_verdict(tmp_path: Path) -> None:
    video = tmp_path / "pattern.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}:duration=4", "-c:v", "libx264", str(video))
    voice = write_voice(tmp_path / "voice.wav", envelope(4, seed=1))
    found = sync.estimate(sync.measure(video, voice, FPS), max_offset_frames=2)
    assert (found.verdict, found.offset_frames) == (sync.NO_VERDICT, None)
    assert found.reason == "a face large enough in 0 of 100 frames"


def test_a_still_face_over_a_tone_that_pauses_has_no_verdict(files: Media) -> None:
    """The picture of a tool that copies its input (the face photo held), and a tone that pauses every 5 s:
    the landmarks' jitter must not match the pauses (a chunk of such a run measured -7 frames at a
    confidence of 0.17 before the thresholds were raised)."""
    video = files.face_video("face.mp4", face_seconds=9.0, blank_seconds=1.0)
    found = sync.estimate(
        sync.measure(video, voice_with_pauses(files, "tone.wav", 10.0), FPS), max_offset_frames=2
    )
    assert (found.verdict, found.reason) == (sync.NO_VERDICT, "the mouth does not move")


def test_a_still_face_or_a_silent_voice_has_no_verdict(tmp_path: Path) -> None:
    """The audiogram's picture: the face of the start, its mouth never moving."""
    still = write_talking_face(tmp_path / "still.mp4", numpy.zeros(100))
    speaking = write_voice(tmp_path / "voice.wav", envelope(4, seed=1))
    found = sync.estimate(sync.measure(still, speaking, FPS), max_offset_frames=2)
    assert (found.verdict, found.reason) == (sync.NO_VERDICT, "the mouth does not move")
    moving = write_talking_face(tmp_path / "moving.mp4", envelope(4, seed=1))
    silent = write_voice(tmp_path / "silent.wav", numpy.zeros(100))
    found = sync.estimate(sync.measure(moving, silent, FPS), max_offset_frames=2)
    assert (found.verdict, found.reason) == (sync.NO_VERDICT, "too little speech (0.0 s)")


def test_the_estimate_reads_back_from_its_record() -> None:
    found = sync.SyncEstimate(
        sync.OUT_OF_SYNC, 5, 0.61, 150, chunk="0001", start_seconds=6.0, end_seconds=12.0
    )
    assert found.as_dict() == {
        "verdict": "out_of_sync",
        "offset_frames": 5,
        "confidence": 0.61,
        "frames": 150,
        "chunk": "0001",
        "start_seconds": 6.0,
        "end_seconds": 12.0,
    }
    assert sync.SyncEstimate.from_dict(found.as_dict()) == found
    track = sync.SyncTrack(25, (0.1, None), (-20.0, -60.0))
    assert sync.SyncTrack.from_dict(track.as_dict()) == track


def test_frames_are_streamed_and_a_reader_that_stops_ends_ffmpeg(tmp_path: Path) -> None:
    video = write_talking_face(tmp_path / "face.mp4", numpy.zeros(50))
    frames = media.grey_frames(video, longest_side=180)
    first = next(frames)
    assert (first.width, first.height, len(first.pixels)) == (180, 180, 180 * 180)
    frames.close()  # kills ffmpeg and waits for it: no process is left behind
    assert sum(1 for _ in media.grey_frames(video, longest_side=180)) == 50


def test_an_out_of_sync_record_is_said_in_one_line() -> None:
    part = {
        "verdict": "out_of_sync",
        "offset_frames": 6,
        "confidence": 0.58,
        "chunk": "0001",
        "start_seconds": 6.0,
        "end_seconds": 12.0,
    }
    record = {
        "verdict": "out_of_sync",
        "offset_frames": 1,
        "confidence": 0.4,
        "start_seconds": 0.0,
        "end_seconds": 18.0,
        "max_offset_frames": 2,
        "chunks": [part],
    }
    assert sync.describe(record) == (
        "lip-sync out of sync at chunk 0001 (6.00-12.00 s): the picture lags behind the voice by 6 frames "
        "(at most 2 allowed; confidence 0.58)"
    )
    assert sync.summary(record) == "sync: out of sync in chunk 0001 (+6 frames, confidence 0.58)"
    whole = {**record, "offset_frames": -4, "chunks": []}
    assert "at 0.00-18.00 s: the picture runs ahead of the voice by 4 frames" in sync.describe(whole)
    assert (
        sync.summary(sync.unchecked("a face large enough in 0 of 100 frames"))
        == "sync: no verdict (a face large enough in 0 of 100 frames)"
    )


def test_the_report_figure_draws_the_mouth_over_the_loudness(
    spoken: tuple[numpy.ndarray, tuple[float | None, ...]], tmp_path: Path
) -> None:
    levels, mouth = spoken
    voice = write_voice(tmp_path / "voice.wav", levels)
    track = sync.SyncTrack(FPS, mouth, tuple(sync.loudness(voice, FPS)))
    record = sync.estimate(track, max_offset_frames=2).as_dict()
    draw_track(track, record, tmp_path / "sync.png")
    with Image.open(tmp_path / "sync.png") as figure:
        assert figure.size == media.WAVEFORM_SIZE
        colours = {colour for _, colour in figure.convert("RGB").getcolors(maxcolors=1 << 16) or []}
    assert (0xF5, 0x9E, 0x0B) in colours and (0x60, 0xA5, 0xFA) in colours  # the mouth and the loudness


@pytest.mark.parametrize(
    ("enable", "needs_face", "enabled", "reason"),
    [
        (None, True, True, ""),  # on by default for a tool that moves lips
        (None, False, False, "not checked: provider p needs no face (lipsync.sync_check.enable turns it on)"),
        (True, False, True, ""),
        (False, True, False, "not checked: lipsync.sync_check.enable is false"),
    ],
)
def test_the_check_is_on_for_providers_that_need_a_face_unless_the_job_says(
    enable: bool | None, needs_face: bool, enabled: bool, reason: str
) -> None:
    check = SyncCheckSettings(enable=enable, max_offset_frames=3, on_fail="warn", retry=True)
    provider = Provider("p", {"type": "command", "needs_face": needs_face}, Path("providers.json"))
    assert sync.resolve_settings(check, provider) == sync.SyncSettings(enabled, 3, "warn", True, reason)
