"""The frames the sync check measures (va/media.py's ``first_grey_frame``, ``grey_frames``,
``referenced_grey_frames`` and an encode's ``PictureTap``, va/face.py's ``find_face_in_picture``): the luma
plane as stored, at the size asked, only the frames others refer to when asked, each as a full decode's;
the face placed in the first frame's pixels whatever the picture's size, the mouth measured in an
encode's frames."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy
import pytest

from tests.conftest import ffmpeg
from tests.lipsync.talking_face import FPS, envelope, shifted, write_talking_face, write_voice
from va import face, media
from va.errors import ExitCode, VaError
from va.lipsync import sync

pytestmark = pytest.mark.timeout(60)


def _halves(path: Path, size: str = "320x180") -> Path:
    """A 10-frame video whose left half is black and right half white (limited range, as x264 stores it)."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"color=black:size={size}:rate=25:duration=0.4[a];color=white:size={size}:rate=25:duration=0.4,"
        "crop=iw/2:ih:iw/2:0[b];[a][b]overlay=W/2:0",
        "-c:v",
        "libx264",
        "-qp",
        "0",
        "-pix_fmt",
        "yuv420p",
        str(path),
    )
    return path


def test_the_first_frame_is_its_luma_at_full_size(tmp_path: Path) -> None:
    frame = media.first_grey_frame(_halves(tmp_path / "halves.mp4"))
    assert (frame.width, frame.height, len(frame.pixels)) == (320, 180, 320 * 180)
    pixels = numpy.frombuffer(frame.pixels, dtype=numpy.uint8).reshape(180, 320)
    # Limited range as stored: black is 16 and white 235, not converted to 0 and 255.
    assert abs(int(pixels[:, :150].mean()) - 16) <= 1 and abs(int(pixels[:, 170:].mean()) - 235) <= 1


def test_streamed_frames_are_the_window_asked_at_its_size(tmp_path: Path) -> None:
    video = _halves(tmp_path / "halves.mp4")
    crop = media.Crop(140, 20, 40, 100, 20, 50)  # 20 px of black, then 20 of white, halved
    frames = list(media.grey_frames(video, crop=crop))
    assert len(frames) == 10 and {(f.width, f.height, len(f.pixels)) for f in frames} == {(20, 50, 1000)}
    pixels = numpy.frombuffer(frames[-1].pixels, dtype=numpy.uint8).reshape(50, 20)
    assert abs(int(pixels[:, :8].mean()) - 16) <= 1 and abs(int(pixels[:, 12:].mean()) - 235) <= 1


def test_an_encode_hands_over_the_luma_it_encodes_as_stored(tmp_path: Path) -> None:
    """The encode's frames are tagged limited range on their way to x264: the tap takes their luma as
    stored (black 16, white 235), as a decode of the encoded video does, not stretched to full range."""
    taken: list[media.GreyFrame] = []
    crop = media.Crop(140, 20, 40, 100, 20, 50)
    source = media.video_source(_halves(tmp_path / "halves.mp4"))
    tap = media.PictureTap(crop, taken.extend)
    media.encode_picture(
        source, None, tmp_path / "encoded.mp4", fps=25, frames=8, crf=0, preset="veryfast", tap=tap
    )
    assert len(taken) == 8
    pixels = numpy.frombuffer(taken[-1].pixels, dtype=numpy.uint8).reshape(50, 20)
    assert abs(int(pixels[:, :8].mean()) - 16) <= 1 and abs(int(pixels[:, 12:].mean()) - 235) <= 1


def test_the_face_is_placed_in_the_pixels_of_a_large_picture(tmp_path: Path) -> None:
    small = write_talking_face(tmp_path / "face.mp4", numpy.zeros(5))
    large = tmp_path / "large.mp4"
    # The face video (360 px) scaled to 720 px and set at x=280 in a 1280x720 picture, as the benchmark's.
    ffmpeg("-i", str(small), "-vf", "scale=720:720,pad=1280:720:280:0", "-c:v", "libx264", str(large))
    frames = [media.first_grey_frame(path) for path in (small, large)]
    found = [
        face.find_face_in_picture(numpy.frombuffer(f.pixels, dtype=numpy.uint8).reshape(f.height, f.width))
        for f in frames
    ]
    assert found[0] is not None and found[1] is not None
    scale = 720 / frames[0].height
    assert abs(found[1].x - (280 + found[0].x * scale)) <= 0.1 * found[1].width
    assert abs(found[1].width - found[0].width * scale) <= 0.15 * found[1].width


def test_a_file_without_a_picture_is_said_in_one_line(tmp_path: Path) -> None:
    voice = tmp_path / "voice.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", str(voice))
    with pytest.raises(VaError) as raised:
        media.first_grey_frame(voice)
    assert raised.value.code == ExitCode.UNSUPPORTED_FORMAT
    assert raised.value.message.startswith(f"cannot decode frames of {voice}")


@pytest.mark.parametrize(("codec", "suffix"), [("png", ".mov"), ("libx264rgb", ".mp4"), ("libx264", ".mp4")])
def test_frames_of_an_rgb_or_deep_video_are_read_as_grey(tmp_path: Path, codec: str, suffix: str) -> None:
    """A tool may write PNG frames in a QuickTime file, RGB H.264 or 10 bits: the luma is read as well."""
    video = tmp_path / f"picture{suffix}"
    deep = ["-pix_fmt", "yuv420p10le"] if codec == "libx264" else []
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.2", "-c:v", codec, *deep, str(video))
    first = media.first_grey_frame(video)
    assert (first.width, first.height, len(first.pixels)) == (64, 48, 64 * 48)
    frames = list(media.grey_frames(video, crop=media.Crop(0, 0, 64, 48, 32, 24)))
    assert [len(frame.pixels) for frame in frames] == [32 * 24] * 5


def test_an_encode_measures_the_mouth_in_the_frames_it_encodes(tmp_path: Path) -> None:
    """The stage's re-encode hands its frames to the check (``sync.mouth_tap``): the same openings as
    decoding the encoded video again, one a frame of it, and the same offset found."""
    levels = envelope(8, seed=5)
    produced = write_talking_face(tmp_path / "produced.mp4", shifted(levels, 4))
    mouth: list[float | None] = []
    encoded = tmp_path / "encoded.mp4"
    source = media.video_source(produced)
    tap = sync.mouth_tap(produced, mouth)
    media.encode_picture(source, None, encoded, fps=FPS, frames=190, crf=18, preset="veryfast", tap=tap)
    assert media.decoded_duration(encoded, stream="v") == pytest.approx(190 / FPS, abs=1e-3)
    again = list(sync.mouth_openings(encoded))
    assert len(mouth) == len(again) == 190 and None not in mouth
    assert max(abs(a - b) for a, b in zip(mouth, again, strict=True) if b is not None) < 0.05
    voice = tuple(sync.loudness(write_voice(tmp_path / "voice.wav", levels), FPS))
    found = sync.estimate(sync.SyncTrack(FPS, tuple(mouth), voice), max_offset_frames=2)
    assert found.offset_frames is not None and abs(found.offset_frames - 4) <= 1, found


def test_a_failed_encode_with_a_tap_is_said_and_leaves_no_file(tmp_path: Path) -> None:
    produced = write_talking_face(tmp_path / "produced.mp4", numpy.zeros(10))
    taken: list[float | None] = []
    tap = sync.mouth_tap(produced, taken)
    target = tmp_path / "encoded.mp4"
    with pytest.raises(VaError) as raised:  # a preset x264 does not know fails the encode itself
        media.encode_picture(
            media.video_source(produced), None, target, fps=FPS, frames=10, crf=18, preset="no-such", tap=tap
        )
    assert raised.value.code == ExitCode.ENCODE_FAILED
    assert raised.value.message.startswith("encoding encoded.mp4 failed")
    assert not target.exists()


def test_a_face_that_jumps_between_two_looks_is_found_again(tmp_path: Path) -> None:
    levels = envelope(8, seed=5)
    small = write_talking_face(tmp_path / "face.mp4", levels)
    moved = tmp_path / "moved.mp4"
    # The face set in a wider picture, 60 px further right from 4 s on (the look at frame 100): beyond
    # what the look searches around where it was, still inside the window the check decodes.
    place = "[1:v][0:v]overlay=x='if(lt(t,4),40,100)':y=0:shortest=1"
    ground = "color=c=gray:s=600x360:r=25"
    ffmpeg(
        "-i", str(small), "-f", "lavfi", "-i", ground, "-filter_complex", place, "-c:v", "libx264", str(moved)
    )
    track = sync.measure(moved, write_voice(tmp_path / "voice.wav", levels), FPS)
    assert all(value is not None for value in track.mouth)
    found = sync.estimate(track, max_offset_frames=2)
    assert found.verdict == sync.IN_SYNC and found.offset_frames is not None and abs(found.offset_frames) <= 1


def test_only_the_frames_others_refer_to_are_decoded_each_as_in_a_full_decode(tmp_path: Path) -> None:
    """A video with B-frames (libx264's defaults): the frames decoded are fewer than all, each numbered,
    and each the full decode's frame of its number; from a frame on (a seek), the same frames from there."""
    video = write_talking_face(tmp_path / "face.mp4", envelope(4, seed=2))
    crop = media.Crop(80, 80, 200, 200, 100, 100)
    whole = [frame.pixels for frame in media.grey_frames(video, crop=crop)]
    sparse = list(media.referenced_grey_frames(video, crop, rate=Fraction(FPS)))
    numbers = [frame.number for frame in sparse]
    assert len(whole) == 100 and numbers[0] == 0 and numbers == sorted(set(numbers))
    assert 30 < len(sparse) < 90  # x264's B-frames that no frame refers to are left out
    assert all(frame.pixels == whole[frame.number] for frame in sparse)
    assert {(frame.width, frame.height) for frame in sparse} == {(100, 100)}
    later = list(media.referenced_grey_frames(video, crop, rate=Fraction(FPS), first=37))
    assert [frame.number for frame in later] == [number for number in numbers if number >= 37]
    assert all(frame.pixels == whole[frame.number] for frame in later)


def test_a_video_of_no_constant_rate_is_decoded_whole(tmp_path: Path) -> None:
    video = tmp_path / "varying.mp4"
    ffmpeg(
        "-i",
        str(write_talking_face(tmp_path / "face.mp4", envelope(4, seed=2))),
        "-vf",
        "setpts='N/25/TB+gte(N,50)*N/50/TB'",  # from frame 50 on, frames further apart
        "-c:v",
        "libx264",
        "-fps_mode",
        "vfr",
        str(video),
    )
    assert sync._timing(video) is None
    mouth = list(sync.mouth_openings(video))
    assert len(mouth) == sum(1 for _ in media.grey_frames(video, longest_side=64)) and None not in mouth


def test_a_picture_that_starts_late_in_its_file_is_measured_in_the_file_s_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A picture that starts 0.2 s into its file (its sound from 0): its frames are numbered in the file's
    time, as a decode of every frame counts them (that one repeats the first frame from 0)."""
    face = write_talking_face(tmp_path / "face.mp4", envelope(4, seed=2))
    late = tmp_path / "late.mp4"
    sound = ["-f", "lavfi", "-i", "sine=duration=4", "-map", "0:v", "-map", "1:a"]
    ffmpeg("-itsoffset", "0.2", "-i", str(face), *sound, "-c:v", "copy", str(late))
    sparse = list(sync.mouth_openings(late))
    monkeypatch.setattr(sync, "_timing", lambda _video: None)
    every = list(sync.mouth_openings(late))
    assert len(sparse) == len(every) == 105 and sparse[:5] == [None] * 5 and None not in sparse[5:]
    crop = media.Crop(0, 0, 64, 64, 64, 64)
    decoded = [frame.number for frame in media.referenced_grey_frames(late, crop, rate=Fraction(FPS))]
    assert decoded[0] == 5
    pairs = [(sparse[n], every[n]) for n in decoded]
    assert max(abs(a - b) for a, b in pairs if a is not None and b is not None) < 0.05


def test_a_long_video_is_read_in_two_halves_as_in_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long video is decoded in two halves side by side: the second starts a few frames before its
    first, the first reads on to a frame past it, and the openings and the offset found are those of one
    decode; those of the frames decoded, and the offset, are those of a decode of every frame too."""
    frames = sync.HALVES_FROM_FRAMES + 20
    levels = envelope(frames / FPS, seed=7)
    video = write_talking_face(tmp_path / "long.mp4", shifted(levels, 3))
    timing = sync._timing(video) or pytest.fail("a long video is not read by its frames' numbers")
    split = timing.split
    assert split % sync.DETECT_EVERY == 0 and abs(split - frames / 2) < sync.DETECT_EVERY
    assert (timing.rate, timing.frames) == (FPS, frames)
    halves = list(sync.mouth_openings(video))
    monkeypatch.setattr(sync, "_timing", lambda _video: dataclasses.replace(timing, split=0))
    one = list(sync.mouth_openings(video))
    monkeypatch.setattr(sync, "_timing", lambda _video: None)
    every = list(sync.mouth_openings(video))
    assert len(halves) == len(one) == len(every) == frames and None not in halves
    assert max(abs(a - b) for a, b in zip(halves, one, strict=True) if b is not None) < 0.05
    # The frames decoded measure as in a decode of every frame; the others lie between their neighbours.
    crop = media.Crop(0, 0, 64, 64, 64, 64)
    decoded = [frame.number for frame in media.referenced_grey_frames(video, crop, rate=timing.rate)]
    assert len(decoded) < 0.8 * frames
    pairs = [(halves[n], every[n]) for n in decoded]
    assert max(abs(a - b) for a, b in pairs if a is not None and b is not None) < 0.05
    voice = tuple(sync.loudness(write_voice(tmp_path / "voice.wav", levels), FPS))
    for mouth in (halves, one, every):
        found = sync.estimate(sync.SyncTrack(FPS, tuple(mouth), voice), max_offset_frames=2)
        assert found.offset_frames is not None and abs(found.offset_frames - 3) <= 1, found


def test_a_reader_that_stops_early_stops_the_second_half_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = sync.HALVES_FROM_FRAMES + 20
    video = write_talking_face(tmp_path / "long.mp4", envelope(frames / FPS, seed=7))
    real, read = media.referenced_grey_frames, {"later": 0}

    def counted(source: Path, crop: media.Crop, **options: Any) -> Iterator[media.GreyFrame]:
        for frame in real(source, crop, **options):
            if options.get("first"):
                read["later"] += 1
                time.sleep(0.005)  # slower than the first half's three frames
            yield frame

    monkeypatch.setattr(media, "referenced_grey_frames", counted)
    openings = sync.mouth_openings(video)
    first = [next(openings) for _ in range(3)]
    openings.close()
    assert len(first) == 3
    assert "mouth-second-half" not in {thread.name for thread in threading.enumerate()}
    assert 0 < read["later"] < frames - frames // 2 // sync.DETECT_EVERY * sync.DETECT_EVERY


def _encoded(source: Path, target: Path, *options: str) -> Path:
    """``source``'s picture encoded again with ffmpeg's ``options``."""
    ffmpeg("-i", str(source), "-map", "0:v", *options, str(target))
    return target


@pytest.mark.parametrize(
    ("name", "options"),
    [
        (
            "mpeg4.avi",
            ("-c:v", "mpeg4", "-bf", "2", "-q:v", "2"),
        ),  # B-frames: the AVI's times run a frame late
        ("raw.h264", ("-c:v", "copy", "-f", "h264")),  # no times at all
        ("stream.ts", ("-c:v", "copy")),  # a seek lands elsewhere
    ],
)
def test_a_file_without_times_to_number_its_frames_by_is_decoded_whole(
    tmp_path: Path, name: str, options: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AVI, MPEG-TS and a raw H.264 stream do not say when each frame is shown, or not so that a seek
    lands on it: each frame is decoded and measured where a decode of every frame of the MP4 it came from
    has it."""
    mp4 = write_talking_face(tmp_path / "face.mp4", envelope(3, seed=3))
    other = _encoded(mp4, tmp_path / name, *options)
    assert media.shown_by_time(mp4) and not media.shown_by_time(other) and sync._timing(other) is None
    got = list(sync.mouth_openings(other))
    monkeypatch.setattr(sync, "_timing", lambda _video: None)
    want = list(sync.mouth_openings(mp4))
    assert len(got) == len(want) == 75 and None not in got
    assert max(abs(a - b) for a, b in zip(got, want, strict=True) if a is not None and b is not None) < 0.05


def test_a_video_whose_decode_leaves_out_long_runs_of_frames_is_decoded_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight B-frames in a row that no frame refers to (x264's bframes=8 without pyramid): filling eight
    frames from their neighbours loses the mouth's moves, so every frame is decoded and measured."""
    mp4 = write_talking_face(tmp_path / "face.mp4", envelope(3, seed=3))
    params = "bframes=8:b-pyramid=none:b-adapt=0"
    video = _encoded(mp4, tmp_path / "long_runs.mp4", "-c:v", "libx264", "-x264-params", params)
    crop = media.Crop(0, 0, 64, 64, 64, 64)
    decoded = [frame.number for frame in media.referenced_grey_frames(video, crop, rate=Fraction(FPS))]
    assert max(b - a - 1 for a, b in itertools.pairwise(decoded)) > sync.MAX_SKIPPED
    sparse = list(sync.mouth_openings(video))
    monkeypatch.setattr(sync, "_timing", lambda _video: None)
    every = list(sync.mouth_openings(video))
    assert len(sparse) == 75 and None not in sparse and sparse == every


def test_a_split_next_to_frames_left_out_measures_them_from_both_sides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The halves split where the frames either side are not decoded (two B-frames in a row that no frame
    refers to): the first half reads on to a frame past the split, the second from one before it, so each
    frame has a value, as in one decode."""
    mp4 = write_talking_face(tmp_path / "face.mp4", envelope(4, seed=2))
    params = "bframes=2:b-pyramid=none:b-adapt=0:keyint=1000:scenecut=0"
    video = _encoded(mp4, tmp_path / "pairs.mp4", "-c:v", "libx264", "-x264-params", params)
    crop = media.Crop(0, 0, 64, 64, 64, 64)
    decoded = [frame.number for frame in media.referenced_grey_frames(video, crop, rate=Fraction(FPS))]
    split = next(n for n in range(40, 100) if n - 1 not in decoded and n not in decoded)
    timing = sync._timing(video) or pytest.fail("an MP4 of one rate is not read by its frames' numbers")
    one = list(sync.mouth_openings(video))
    monkeypatch.setattr(sync, "_timing", lambda _video: dataclasses.replace(timing, split=split))
    halves = list(sync.mouth_openings(video))
    assert len(halves) == len(one) == 100 and None not in halves
    assert max(abs(a - b) for a, b in zip(halves, one, strict=True) if b is not None) < 0.05


@pytest.mark.parametrize(("rate", "suffix"), [("30000/1001", ".mkv"), ("25", ".mp4")])
def test_a_seek_keeps_the_frame_aimed_at(tmp_path: Path, rate: str, suffix: str) -> None:
    """A Matroska file with sound stores its picture's times in milliseconds from a start that is no
    multiple of a frame (23 ms, AAC's priming), so a frame's time is up to half a frame before the time
    its number says: the decode from a frame on still starts at that frame, each frame the full decode's,
    of the referenced frames or of every frame."""
    video = tmp_path / f"with_sound{suffix}"
    picture = ["-f", "lavfi", "-i", f"testsrc2=size=64x64:rate={rate}:duration=3"]
    ffmpeg(*picture, "-f", "lavfi", "-i", "sine=duration=3", "-c:v", "libx264", "-c:a", "aac", str(video))
    crop = media.Crop(0, 0, 64, 64, 64, 64)
    whole = [frame.pixels for frame in media.grey_frames(video, crop=crop)]
    numbers = [frame.number for frame in media.referenced_grey_frames(video, crop, rate=Fraction(rate))]
    for first in numbers[10:50:4]:
        later = list(media.referenced_grey_frames(video, crop, rate=Fraction(rate), first=first))
        assert [frame.number for frame in later] == [n for n in numbers if n >= first]
        assert all(frame.pixels == whole[frame.number] for frame in later)
        every = list(media.grey_frames_from(video, crop, rate=Fraction(rate), first=first))
        assert [frame.number for frame in every] == list(range(first, len(whole)))
        assert [frame.pixels for frame in every] == whole[first:]


def test_a_video_cut_by_an_edit_list_has_a_value_for_each_frame_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An MP4 cut by stream copy from 1.3 s: all its packets from the key frame before are stored, fewer
    frames shown (its edit list). The mouth has a value for each frame shown, as in a decode of every one."""
    mp4 = write_talking_face(tmp_path / "face.mp4", envelope(4, seed=2))
    cut = tmp_path / "cut.mp4"
    ffmpeg("-ss", "1.3", "-i", str(mp4), "-c", "copy", str(cut))
    assert media.probe_video(cut).packets == 100
    sparse = list(sync.mouth_openings(cut))
    monkeypatch.setattr(sync, "_timing", lambda _video: None)
    every = list(sync.mouth_openings(cut))
    assert len(sparse) == len(every) == 67


def test_a_second_half_that_leaves_out_too_many_frames_is_decoded_whole_from_the_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second half's decode leaves out ten frames in a row (its frames 60-69 dropped here): the first
    half is still measured whole, up to the split, whatever the two threads' timing, and from the split on
    every frame is decoded (from there, not from frame 0) and measured: the series is the single full
    decode's from the split, the first half's before it."""
    video = write_talking_face(tmp_path / "face.mp4", envelope(4, seed=2))
    timing = sync._timing(video) or pytest.fail("an MP4 of one rate is not read by its frames' numbers")
    one = list(sync.mouth_openings(video))
    real = media.referenced_grey_frames

    def holed(source: Path, crop: media.Crop, **options: Any) -> Iterator[media.GreyFrame]:
        frames = real(source, crop, **options)
        return (f for f in frames if not (options.get("first") and 60 <= f.number < 70))

    monkeypatch.setattr(media, "referenced_grey_frames", holed)
    monkeypatch.setattr(sync, "_timing", lambda _video: dataclasses.replace(timing, split=50))
    real_from = media.grey_frames_from
    starts: list[int] = []

    def counted(source: Path, crop: media.Crop, **options: Any) -> Iterator[media.GreyFrame]:
        starts.append(options["first"])
        return real_from(source, crop, **options)

    monkeypatch.setattr(media, "grey_frames_from", counted)
    halves = list(sync.mouth_openings(video))
    monkeypatch.setattr(sync, "_timing", lambda _video: None)
    every = list(sync.mouth_openings(video))
    assert len(halves) == len(one) == len(every) == 100 and None not in halves and None not in every
    assert starts == [50]  # one full decode, from the split
    assert halves[:50] == one[:50]  # the first half's openings, all of them
    # From the split, a full decode's openings (the face looked for at the split, as at each 50th frame).
    assert max(abs(a - b) for a, b in zip(halves[50:], every[50:], strict=True)) < 0.05
    assert halves[50:] != one[50:]  # not the second half's sparse decode
    assert "mouth-second-half" not in {thread.name for thread in threading.enumerate()}


def test_a_first_half_that_leaves_out_too_many_frames_is_decoded_whole_from_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first half's decode leaves out ten frames in a row (its frames 10-19 dropped here) before its
    first openings are given (they wait for the face's next look): every frame is decoded again from frame
    0, none from the split, and the series is a full decode's."""
    video = write_talking_face(tmp_path / "face.mp4", envelope(4, seed=2))
    timing = sync._timing(video) or pytest.fail("an MP4 of one rate is not read by its frames' numbers")
    real = media.referenced_grey_frames

    def holed(source: Path, crop: media.Crop, **options: Any) -> Iterator[media.GreyFrame]:
        frames = real(source, crop, **options)
        return (f for f in frames if options.get("first") or not 10 <= f.number < 20)

    def no_seek(*_args: Any, **_options: Any) -> Iterator[media.GreyFrame]:
        raise AssertionError("a full decode from the split")

    monkeypatch.setattr(media, "referenced_grey_frames", holed)
    monkeypatch.setattr(media, "grey_frames_from", no_seek)
    monkeypatch.setattr(sync, "_timing", lambda _video: dataclasses.replace(timing, split=50))
    halves = list(sync.mouth_openings(video))
    monkeypatch.setattr(sync, "_timing", lambda _video: None)
    every = list(sync.mouth_openings(video))
    assert len(halves) == 100 and None not in halves and halves == every
    assert "mouth-second-half" not in {thread.name for thread in threading.enumerate()}


def test_a_first_half_that_ends_early_is_made_up_from_a_whole_decode_when_the_second_is_too_sparse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The decode from the split after a second half too sparse is only right when the first half gave every
    frame before the split: one that ended early without an error (a probe counting more packets than
    frames decode) is made up from a decode of every frame, so no frame is missing and none moves."""
    frames, split = 200, 100

    def grey(number: int) -> media.GreyFrame:
        return media.GreyFrame(1, 1, b"\0", number)

    def referenced(video: Path, crop: object, *, rate: Fraction, first: int = 0) -> Iterator[media.GreyFrame]:
        if first == 0:  # the first half ends at frame 90, no error
            yield from (grey(n) for n in range(90))
        else:  # the second half leaves out nine frames in a row
            yield from (grey(first), grey(first + 10))

    def every(
        video: Path, crop: object, *, rate: Fraction = Fraction(25), first: int = 0
    ) -> Iterator[media.GreyFrame]:
        yield from (grey(n) for n in range(first, frames))

    def numbers(frames: Iterator[media.GreyFrame], window: object, *, first: int = 0) -> Iterator[float]:
        yield from (float(frame.number) for frame in frames if frame.number >= first)

    monkeypatch.setattr(sync, "_window", lambda video: SimpleNamespace(crop=SimpleNamespace(out_width=64)))
    monkeypatch.setattr(sync, "_timing", lambda video: sync._Timing(Fraction(25), frames, split))
    monkeypatch.setattr(sync, "_openings", numbers)
    monkeypatch.setattr(media, "referenced_grey_frames", referenced)
    monkeypatch.setattr(media, "grey_frames_from", every)
    monkeypatch.setattr(media, "grey_frames", every)
    assert list(sync.mouth_openings(Path("talking.mp4"))) == [float(n) for n in range(frames)]
