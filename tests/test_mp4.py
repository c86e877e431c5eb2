"""va/mp4.py, as va.media.clip_figures uses it: a clip's figures read from its MP4 boxes are what ffprobe
says of it, and a file the reader does not know for sure is left to ffprobe."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import calls_of, ffmpeg
from va import media, mp4
from va.errors import ExitCode, VaError


def probed(path: Path, monkeypatch: pytest.MonkeyPatch) -> media.ClipFigures:
    """The figures as ffprobe gives them (the box reader set aside)."""
    with monkeypatch.context() as patch:
        patch.setattr(mp4, "read_movie", lambda _: None)
        return media.clip_figures(path)


TONE = ["-f", "lavfi", "-i"]
KINDS = {
    # ComfyUI's CreateVideo/SaveVideo: H.264 with AAC cut to the picture (an edit list for the priming).
    "aac.mp4": [*TONE, "testsrc=s=64x48:r=25:d=1.32", *TONE, "sine=d=1.32", "-c:v", "libx264", "-c:a", "aac"],
    # B-frames (an edit list on the video), a shorter 16 kHz voice, another rate and container.
    "bframes.mov": [*TONE, "testsrc=s=64x48:r=24:d=2", *TONE, "sine=d=1.5:r=16000", "-bf", "3"],
    # No audio, odd size, the moov first.
    "silent.mp4": [*TONE, "testsrc=s=66x50:r=30:d=1", "-c:v", "libx264", "-movflags", "+faststart"],
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_clips_boxes_say_what_ffprobe_says(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / name
    ffmpeg(*KINDS[name], str(path))
    assert mp4.read_movie(path) is not None
    read, slow = media.clip_figures(path), probed(path, monkeypatch)
    assert (read.frames, read.width, read.height) == (slow.frames, slow.width, slow.height)
    assert read.fps == pytest.approx(slow.fps, abs=1e-3)
    if slow.audio_seconds is None:
        assert read.audio_seconds is None
    else:
        assert read.audio_seconds == pytest.approx(slow.audio_seconds, abs=0.002)


def test_a_file_the_reader_does_not_know_is_left_to_ffprobe(tmp_path: Path) -> None:
    fragmented, webm, cut = tmp_path / "fragmented.mp4", tmp_path / "clip.webm", tmp_path / "cut.mp4"
    source = ["-f", "lavfi", "-i", "testsrc=s=64x48:r=25:d=1"]
    ffmpeg(*source, "-c:v", "libx264", "-movflags", "+frag_keyframe+empty_moov", str(fragmented))
    ffmpeg(*source, "-c:v", "libvpx-vp9", "-deadline", "realtime", str(webm))
    ffmpeg(*source, "-c:v", "libx264", "-movflags", "+faststart", str(cut))
    cut.write_bytes(cut.read_bytes()[:200])  # the moov box cut short
    assert [mp4.read_movie(path) for path in (fragmented, webm, cut)] == [None, None, None]
    for path in (fragmented, webm):
        figures = media.clip_figures(path)
        assert (figures.frames, figures.width, figures.height, figures.fps) == (25, 64, 48, 25.0)


def probed_encode(path: Path, monkeypatch: pytest.MonkeyPatch) -> media.EncodedFigures:
    """An encode's figures as ffprobe gives them (the box reader set aside)."""
    with monkeypatch.context() as patch:
        patch.setattr(mp4, "read_movie", lambda _: None)
        return media.encoded_figures(path)


def test_our_encodes_are_checked_from_their_boxes_as_ffprobe_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    still, voice = tmp_path / "still.png", tmp_path / "voice.wav"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48", "-frames:v", "1", str(still))
    ffmpeg("-f", "lavfi", "-i", "sine=d=1.3", str(voice))
    loop, final = tmp_path / "loop.mp4", tmp_path / "final.mp4"
    media.encode_still_loop(still, loop, fps=25, crf=30, preset="ultrafast", size=(64, 48))
    media.loop_still(loop, voice, final, fps=25, frames=33, size=(64, 48))
    drop = tmp_path / "ntsc.mp4"  # a rate that is no whole number, with B-frames and the index last
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=66x50:r=30000/1001:d=1", "-c:v", "libx264", str(drop))
    ffprobe_runs = calls_of(monkeypatch, media, "_run")
    read = [media.encoded_figures(path) for path in (loop, final, drop)]
    assert ffprobe_runs == []  # no process started to check them
    assert read == [probed_encode(path, monkeypatch) for path in (loop, final, drop)]
    assert read[1] == media.EncodedFigures(33, 64, 48, "25/1")
    assert read[2].fps == "30000/1001"


def test_an_encode_cut_short_is_left_to_ffprobe_and_refused(tmp_path: Path) -> None:
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=64x48:r=25:d=1",
        "-c:v",
        "libx264",
        "-movflags",
        "+faststart",
        str(whole),
    )
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) - 1500])  # the index whole, the last frames' data gone
    movie = mp4.read_movie(cut)
    track = None if movie is None else movie.first(b"vide")
    assert movie is not None and track is not None and track.data_end is not None
    assert track.data_end > movie.file_size  # the boxes are whole, the data they point to is not
    assert media._encoded_figures_of_movie(cut) is None
    with pytest.raises(VaError) as failed:
        media._check_encoded(cut, tmp_path / "final.mp4", 25, ExitCode.ENCODE_FAILED, fps=25, size=(64, 48))
    assert failed.value.code == ExitCode.ENCODE_FAILED
    assert (
        failed.value.message.startswith("final.mp4: encoded ") and "where 25 frames" in failed.value.message
    )


def test_a_variable_rate_is_left_to_ffprobe(tmp_path: Path) -> None:
    varied = tmp_path / "varied.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=64x48:r=25:d=2,setpts='if(lt(N,25),N,N*2)/25/TB'",
        "-c:v",
        "libx264",
        "-bf",
        "0",
        "-fps_mode",
        "passthrough",
        str(varied),
    )
    track = (mp4.read_movie(varied) or pytest.fail()).first(b"vide")
    assert track is not None and track.samples == 50 and track.sample_delta is None
    assert media._encoded_figures_of_movie(varied) is None
    assert media.encoded_figures(varied).frames == 50


def test_an_edit_list_that_ends_early_is_left_to_ffprobe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, edited = tmp_path / "whole.mp4", tmp_path / "edited.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=25:d=2", "-c:v", "libx264", "-bf", "0", str(whole))
    data = bytearray(whole.read_bytes())
    at = data.index(b"elst") + 4 + 8  # version and flags, the entry count, then the first entry's length
    assert int.from_bytes(data[at : at + 4], "big") == 2000  # 2 s in the movie's milliseconds
    data[at : at + 4] = (1000).to_bytes(4, "big")  # the edit shows the first second only
    edited.write_bytes(bytes(data))
    assert media._encoded_figures_of_movie(whole) == media.EncodedFigures(50, 64, 48, "25/1")
    assert media._encoded_figures_of_movie(edited) is None
    assert media.encoded_figures(edited) == probed_encode(edited, monkeypatch)


def _ffprobes_of(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """The ffprobes ``va.media`` starts from now on (its ``_run`` calls; each still runs)."""
    return calls_of(monkeypatch, media, "_run")


def probed_packets(path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """A video's packets as ffprobe counts them (the box reader set aside)."""
    with monkeypatch.context() as patch:
        patch.setattr(mp4, "read_movie", lambda _: None)
        return media.count_video_packets(path)


PACKETS = {
    # An encode as va makes them: the final checked before its run is said complete.
    "encode.mp4": ["testsrc=s=64x48:r=25:d=1.2", "-c:v", "libx264", "-bf", "0", "-movflags", "+faststart"],
    # A phone's start video: turned by its matrix, B-frames (an edit that starts later), a MOV.
    "turned.mov": ["testsrc=s=64x48:r=24:d=1", "-c:v", "libx264", "-bf", "2", "-metadata:s:v:0", "rotate=90"],
    # Frames of varying length: the samples are still the packets.
    "varied.mp4": [
        "testsrc=s=64x48:r=25:d=2,setpts='if(lt(N,25),N,N*2)/25/TB'",
        "-c:v",
        "libx264",
        "-fps_mode",
        "passthrough",
    ],
}


def test_packets_are_counted_from_the_boxes_as_ffprobe_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final's check, the plan's and the face check's frame counts start no ffprobe for an MP4 the box
    reader knows, whatever its turn or rate, and give what ffprobe gives."""
    paths = [tmp_path / name for name in sorted(PACKETS)]
    for path in paths:
        ffmpeg("-f", "lavfi", "-i", *PACKETS[path.name], str(path))
    started = _ffprobes_of(monkeypatch)
    counted = [media.count_video_packets(path) for path in paths]
    assert started == []
    assert counted == [30, 24, 50]
    assert counted == [probed_packets(path, monkeypatch) for path in paths]


def test_packets_the_boxes_do_not_say_for_sure_are_counted_by_ffprobe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fragmented MP4, a WebM, an edit that ends early, a file cut short: one ffprobe each."""
    fragmented, webm, edited, cut = (
        tmp_path / name for name in ("frag.mp4", "clip.webm", "ed.mp4", "cut.mp4")
    )
    source = ["-f", "lavfi", "-i", "testsrc=s=64x48:r=25:d=2"]
    ffmpeg(*source, "-c:v", "libx264", "-movflags", "+frag_keyframe+empty_moov", str(fragmented))
    ffmpeg(*source, "-c:v", "libvpx-vp9", "-deadline", "realtime", str(webm))
    ffmpeg(*source, "-c:v", "libx264", "-bf", "0", "-movflags", "+faststart", str(cut))
    whole = cut.read_bytes()
    data = bytearray(whole)
    at = data.index(b"elst") + 4 + 8  # version and flags, the entry count, then the first entry's length
    data[at : at + 4] = (1000).to_bytes(4, "big")  # the edit shows the first second only
    edited.write_bytes(bytes(data))
    cut.write_bytes(whole[: len(whole) - 1500])  # its edit whole, its index whole, the last frames' data gone
    started = _ffprobes_of(monkeypatch)
    counted = [media.count_video_packets(path) for path in (fragmented, webm, edited, cut)]
    assert len(started) == 4
    assert counted[:3] == [50, 50, 50] and 0 < counted[3] < 50  # ffprobe counts what it finds


def test_an_edit_that_starts_past_a_key_frame_is_counted_by_ffprobe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit may skip the first picture's B-frame delay (x264's MP4s: counted from the boxes); one that
    starts later makes ffmpeg drop the samples before the key frame it needs there: one ffprobe."""
    delayed, late = tmp_path / "delayed.mp4", tmp_path / "late.mp4"
    source = ["-f", "lavfi", "-i", "testsrc=s=64x48:r=25:d=2"]
    ffmpeg(
        *source, "-c:v", "libx264", "-bf", "2", "-g", "25", "-video_track_timescale", "12800", str(delayed)
    )
    track = (mp4.read_movie(delayed) or pytest.fail()).first(b"vide")
    assert track is not None and track.first_offset > 0 and track.edits[0][1] == track.first_offset
    data = bytearray(delayed.read_bytes())
    at = data.index(b"elst") + 4 + 8 + 4  # version and flags, the entry count, the length, then its start
    data[at : at + 4] = (12800 * 6 // 5).to_bytes(4, "big")  # from 1.2 s, past the key frame at 1 s
    late.write_bytes(bytes(data))
    started = _ffprobes_of(monkeypatch)
    counted = [media.count_video_packets(path) for path in (delayed, late)]
    assert len(started) == 1
    assert counted == [50, 25]  # ffmpeg reads from the key frame at 1 s
    assert counted == [probed_packets(path, monkeypatch) for path in (delayed, late)]


def test_a_sample_of_size_0_is_counted_by_ffprobe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ffmpeg reads no packet for a sample of no bytes: the boxes' count would be one too many."""
    whole, empty = tmp_path / "whole.mp4", tmp_path / "empty.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=25:d=2", "-c:v", "libx264", "-bf", "0", str(whole))
    data = bytearray(whole.read_bytes())
    table = data.index(b"stsz") + 4  # version and flags, one size for all, the count, then each size
    assert data[table + 4 : table + 12] == bytes(4) + (50).to_bytes(4, "big")  # a size for each sample
    data[table + 12 + 4 * 30 : table + 16 + 4 * 30] = bytes(4)  # the 31st sample holds no bytes
    empty.write_bytes(bytes(data))
    started = _ffprobes_of(monkeypatch)
    counted = [media.count_video_packets(path) for path in (whole, empty)]
    assert len(started) == 1
    assert counted == [50, 49]
    assert counted == [probed_packets(path, monkeypatch) for path in (whole, empty)]
