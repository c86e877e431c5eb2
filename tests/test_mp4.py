"""va/mp4.py, as va.media.clip_figures uses it: a clip's figures read from its MP4 boxes are what ffprobe
says of it, and a file the reader does not know for sure is left to ffprobe."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ffmpeg
from va import media, mp4


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
