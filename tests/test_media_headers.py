"""va/media.py's header readers: what a plain WAV's RIFF header (and an MP4's index, tests/test_mp4.py)
says is what ffprobe says, read without starting a process; a file they do not know for sure, or one
that is broken, goes to ffprobe and fails as it did."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import calls_of, ffmpeg, unreadable
from va import media
from va.errors import ExitCode, VaError


def probed_audio(path: Path, monkeypatch: pytest.MonkeyPatch) -> media.AudioInfo:
    """The audio as ffprobe gives it (the header reader set aside)."""
    with monkeypatch.context() as patch:
        patch.setattr(media, "wav_audio", lambda _: None)
        return media.probe_audio(path)


def ffprobe_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Every ffprobe started from now on (``_ffprobe_json``'s)."""
    return calls_of(monkeypatch, media.subprocess, "run")


WAVS = {
    "mono-16k": ["-ar", "16000"],
    "stereo-48k": ["-ac", "2", "-ar", "48000"],
    "24-bit-44k": ["-ac", "2", "-ar", "44100", "-c:a", "pcm_s24le"],
    "float": ["-ar", "22050", "-c:a", "pcm_f32le"],
    "8-bit": ["-ar", "8000", "-c:a", "pcm_u8"],
    "5.1-extensible": ["-ac", "6", "-ar", "48000"],
    "32-bit-extensible": ["-c:a", "pcm_s32le"],
}


@pytest.mark.parametrize("name", sorted(WAVS))
def test_a_plain_wav_is_read_from_its_header_as_ffprobe_reads_it(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"{name}.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=d=1.234", *WAVS[name], str(path))
    started = ffprobe_runs(monkeypatch)
    read = media.probe_audio(path)
    assert started == []
    assert read == probed_audio(path, monkeypatch)
    assert read.duration_seconds == pytest.approx(1.234, abs=1e-4)


def _wav(tmp_path: Path, name: str = "voice.wav") -> Path:
    path = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-ar", "16000", str(path))
    return path


def test_a_wav_cut_short_is_left_to_ffprobe_which_estimates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _wav(tmp_path)
    path.write_bytes(path.read_bytes()[:10_000])
    assert media.wav_audio(path) is None
    info = media.probe_audio(path)
    assert info.duration_estimated and info.duration_seconds < 0.35
    with pytest.raises(VaError) as caught:  # the header's promise is what catches it, as before
        media.check_wav_complete(path, info.duration_seconds)
    assert caught.value.code == ExitCode.UNSUPPORTED_FORMAT
    assert caught.value.message.startswith("truncated audio: its WAV header says 1.00 s")


def test_a_wav_without_samples_is_refused_as_before(tmp_path: Path) -> None:
    path = _wav(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = (0).to_bytes(4, "little")
    path.write_bytes(bytes(data[: at + 8]))  # a header and no sample
    with pytest.raises(VaError) as caught:
        media.probe_audio(path)
    assert caught.value.code == ExitCode.UNSUPPORTED_FORMAT
    assert caught.value.message == f"not a decodable audio file: {path}"


@pytest.mark.parametrize("damage", ["bits", "channels", "tag", "riff", "more-samples"])
def test_a_wav_header_the_reader_does_not_know_goes_to_ffprobe(
    tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _wav(tmp_path)
    data = bytearray(path.read_bytes())
    fmt = data.index(b"fmt ") + 8
    if damage == "bits":
        data[fmt + 14 : fmt + 16] = (12).to_bytes(2, "little")
    elif damage == "channels":
        data[fmt + 2 : fmt + 4] = (0).to_bytes(2, "little")
    elif damage == "tag":
        data[fmt : fmt + 2] = (2).to_bytes(2, "little")  # ADPCM: not plain samples
    elif damage == "riff":
        data[:4] = b"RIFX"
    else:
        data += bytes(3200)  # samples past the data chunk that the header does not count
    path.write_bytes(bytes(data))
    assert media.wav_audio(path) is None
    started = ffprobe_runs(monkeypatch)
    try:
        media.probe_audio(path)
    except VaError as exc:
        assert exc.code == ExitCode.UNSUPPORTED_FORMAT
        assert exc.message == f"not a decodable audio file: {path}"
    assert len(started) == 1


def test_an_unreadable_wav_is_said_as_ffprobe_says_it(tmp_path: Path) -> None:
    path = _wav(tmp_path)
    with unreadable(path):
        assert media.wav_audio(path) is None
        with pytest.raises(VaError) as caught:
            media.probe_audio(path)
    assert caught.value.code == ExitCode.INPUT_NOT_FOUND
    assert caught.value.message == f"permission denied: cannot read {path}"
