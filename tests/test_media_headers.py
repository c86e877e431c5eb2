"""va/media.py's header readers: what a plain WAV's RIFF header and a plain PNG's chunks say (an MP4's
index: tests/test_mp4.py) is what ffprobe says, read without starting a process; a file they do not
know for sure, or one that is broken, goes to ffprobe and fails as it did. A video brought to the plan
is probed once."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from tests.conftest import calls_of, ffmpeg, unreadable
from tests.corpus import display_p3_profile
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


def probed_visual(path: Path, monkeypatch: pytest.MonkeyPatch) -> media.VisualInfo:
    """The picture as ffprobe (and Pillow, for an image's orientation and profile) gives it."""
    with monkeypatch.context() as patch:
        patch.setattr(media, "png_visual", lambda _: None)
        return media.probe_visual(path)


@pytest.mark.parametrize(
    "pix_fmt",
    ["rgb24", "rgba", "gray", "gray16be", "monob", "pal8", "ya8", "ya16be", "rgb48be", "rgba64be"],
)
def test_a_plain_png_is_read_from_its_chunks_as_ffprobe_reads_it(
    tmp_path: Path, pix_fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "frame.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=40x30", "-frames:v", "1", "-pix_fmt", pix_fmt, str(path))
    started = ffprobe_runs(monkeypatch)
    read = media.probe_visual(path)
    assert started == []
    assert read == probed_visual(path, monkeypatch)
    assert (read.width, read.height, read.pix_fmt) == (40, 30, pix_fmt)


def test_a_pngs_text_and_pixel_aspect_are_read_as_ffprobe_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image, PngImagePlugin  # noqa: PLC0415

    text = PngImagePlugin.PngInfo()
    text.add_text("prompt", '{"3": {"class_type": "KSampler"}}')  # what ComfyUI writes into its frames
    text.add_text("workflow", "{}", zip=True)
    path = tmp_path / "wide-pixels.png"
    Image.new("RGB", (40, 30), "teal").save(path, dpi=(144, 72), pnginfo=text)
    read = media.png_visual(path)
    assert read is not None and read == probed_visual(path, monkeypatch)
    assert (read.width, read.height) == (80, 30)  # 5669 by 2835 pixels a metre: 144 by 72 dpi
    assert read.pixel_aspect[0] / read.pixel_aspect[1] == pytest.approx(2, abs=1e-3)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


@pytest.mark.parametrize("extra", ["tRNS", "iCCP", "eXIf", "exif-text", "xmp-text", "no-IEND", "unknown"])
def test_a_png_with_what_the_reader_does_not_read_goes_to_ffprobe(
    tmp_path: Path, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image, ImageCms, PngImagePlugin  # noqa: PLC0415

    path = tmp_path / "start.png"
    picture = Image.new("RGB", (40, 30), "teal")
    if extra == "tRNS":
        picture.save(path, transparency=(0, 128, 128))
    elif extra == "iCCP":
        profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
        picture.save(path, icc_profile=profile)
    elif extra == "eXIf":
        exif = Image.Exif()
        exif[0x0112] = 6  # turned a quarter: displayed 30x40
        picture.save(path, exif=exif)
    elif extra in ("exif-text", "xmp-text"):
        text = PngImagePlugin.PngInfo()
        text.add_itxt("Raw profile type exif" if extra == "exif-text" else "XML:com.adobe.xmp", "x")
        picture.save(path, pnginfo=text)
    else:
        picture.save(path)
        data = path.read_bytes()
        if extra == "no-IEND":
            path.write_bytes(data[: data.index(b"IEND") - 4])
        else:
            at = data.index(b"IDAT") - 4
            path.write_bytes(data[:at] + _chunk(b"sBIT", b"\x08\x08\x08") + data[at:])
    assert media.png_visual(path) is None
    started = ffprobe_runs(monkeypatch)
    info = media.probe_visual(path)
    assert len(started) == 1
    if extra == "eXIf":
        assert (info.width, info.height, info.orientation) == (30, 40, 6)
    else:
        assert (info.width, info.height) == (40, 30)


@pytest.mark.parametrize("profiled", [False, True], ids=["exif-turned", "display-p3"])
def test_a_still_is_opened_once_by_pillow_for_its_orientation_and_profile(
    tmp_path: Path, profiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A camera's JPEG turned by its EXIF orientation, with or without a wide-gamut profile: one ffprobe,
    one Pillow opening; va decodes the one with a profile (upright, so its orientation is then 1)."""
    from PIL import Image  # noqa: PLC0415

    path = tmp_path / "camera.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # turned a quarter: displayed 30x40
    profile = {"icc_profile": display_p3_profile()} if profiled else {}
    Image.new("RGB", (40, 30), "teal").save(path, exif=exif, **profile)
    started, opened = ffprobe_runs(monkeypatch), calls_of(monkeypatch, Image, "open")
    info = media.probe_visual(path)
    assert (len(started), len(opened)) == (1, 1)
    assert (info.width, info.height, info.decoded_by_va) == (30, 40, profiled)
    assert info.orientation == (1 if profiled else 6)


@pytest.mark.parametrize("damage", ["cut", "text", "empty"])
def test_a_broken_png_is_refused_as_before(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "start.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=40x30", "-frames:v", "1", str(path))
    data = path.read_bytes()
    if damage == "cut":
        path.write_bytes(data[: data.index(b"IDAT") + 40])  # the picture's data cut short
    elif damage == "text":
        path.write_text("not a picture\n", encoding="utf-8")
    else:
        path.write_bytes(data[:8])
    assert media.png_visual(path) is None
    with pytest.raises(VaError) as caught:
        media.probe_visual(path)
    assert caught.value.code == ExitCode.UNSUPPORTED_FORMAT
    assert caught.value.message == f"not a decodable image or video: {path}"


def _ffprobes(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argument lists of every ffprobe started from now on (each still runs)."""
    started: list[list[str]] = []
    real = media.subprocess.run

    def run(argv: list[str], *args: object, **kwargs: object) -> object:
        if Path(argv[0]).name == "ffprobe":
            started.append(argv)
        return real(argv, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(media.subprocess, "run", run)
    return started


@pytest.mark.parametrize(
    ("fps", "b_frames", "copied", "ffprobes"),
    [(25, "0", True, 0), (30, "0", False, 0), (25, "2", True, 1)],
    ids=["conforms", "another-rate", "b-frames"],
)
def test_a_video_brought_to_the_plan_is_probed_once_and_copied_when_it_conforms(
    tmp_path: Path, fps: int, b_frames: str, copied: bool, ffprobes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its size and whether it conforms come from its boxes (a plain H.264 MP4, as va encodes them), or
    from one ffprobe (B-frames: an edit list that starts later)."""
    video, voice, final = tmp_path / "picture.mp4", tmp_path / "voice.wav", tmp_path / "final.mp4"
    source = ["-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=2", "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    ffmpeg(*source, "-bf", b_frames, str(video))
    ffmpeg("-f", "lavfi", "-i", "sine=d=2", str(voice))
    probes = _ffprobes(monkeypatch)
    muxes = calls_of(monkeypatch, media, "_run")
    frames = 2 * fps
    canvas = media.Canvas(64, 48)
    media.encode_from_video(
        video, voice, final, fps=fps, frames=frames, crf=30, preset="ultrafast", canvas=canvas
    )
    assert len(probes) == ffprobes and all("-count_packets" in argv for argv in probes)
    stream_copies = [
        argv for (argv,) in muxes if any(argv[k : k + 2] == ["-c:v", "copy"] for k in range(len(argv)))
    ]
    assert len(stream_copies) == (1 if copied else 0)
    assert media.encoded_figures(final) == media.EncodedFigures(frames, 64, 48, f"{fps}/1")
    probe = media.probe_video(video)
    assert probe.conforms(fps=25, frames=50, size=(64, 48))
    assert not probe.conforms(fps=25, frames=50, size=(66, 48)) and not probe.conforms(fps=25, frames=49)
    assert (probe.display_size, probe.coded_size) == ((64, 48), (64, 48))


def probed_video(path: Path, monkeypatch: pytest.MonkeyPatch) -> media.VideoProbe:
    """The video as ffprobe gives it (the box reader set aside)."""
    with monkeypatch.context() as patch:
        patch.setattr(media, "_video_of_movie", lambda _: None)
        return media.probe_video(path)


X264 = ["-c:v", "libx264", "-preset", "ultrafast"]
VIDEOS = {
    # What va's own encodes are: read from the boxes.
    "plain": (True, "testsrc2=s=64x48:r=25:d=1", [*X264, "-pix_fmt", "yuv420p", "-bf", "0"]),
    "odd-size-cropped": (True, "testsrc2=s=66x50:r=30:d=1", [*X264, "-pix_fmt", "yuv420p", "-bf", "0"]),
    "ntsc-rate": (True, "testsrc2=s=64x48:r=30000/1001:d=1", [*X264, "-pix_fmt", "yuv420p", "-bf", "0"]),
    # What ffprobe is asked about.
    "b-frames": (False, "testsrc2=s=64x48:r=25:d=1", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
    "full-range": (False, "testsrc2=s=64x48:r=25:d=1", [*X264, "-pix_fmt", "yuvj420p", "-bf", "0"]),
    "4:4:4": (False, "testsrc2=s=64x48:r=25:d=1", [*X264, "-pix_fmt", "yuv444p", "-bf", "0"]),
    "10-bit": (False, "testsrc2=s=64x48:r=25:d=1", [*X264, "-pix_fmt", "yuv420p10le", "-bf", "0"]),
    "wide-pixels": (False, "testsrc2=s=64x48:r=25:d=1,setsar=2", [*X264, "-pix_fmt", "yuv420p", "-bf", "0"]),
    "interlaced": (
        False,
        "testsrc2=s=64x48:r=25:d=1",
        [*X264, "-pix_fmt", "yuv420p", "-bf", "0", "-flags", "+ildct+ilme", "-x264opts", "interlaced=1"],
    ),
    "rotated": (False, "testsrc2=s=64x48:r=25:d=1", [*X264, "-pix_fmt", "yuv420p", "-bf", "0"]),
    "vp9": (False, "testsrc2=s=64x48:r=25:d=1", ["-c:v", "libvpx-vp9", "-deadline", "realtime"]),
}


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_a_videos_figures_from_its_boxes_are_what_ffprobe_says(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_from_boxes, source, codec = VIDEOS[name]
    video = tmp_path / "picture.mp4"
    ffmpeg("-f", "lavfi", "-i", source, *codec, str(video))
    if name == "rotated":  # its track's matrix turns it: displayed 48x64
        video = tmp_path / "turned.mp4"
        ffmpeg("-i", str(tmp_path / "picture.mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(video))
        assert probed_video(video, monkeypatch).display_size == (48, 64)
    fast = media._video_of_movie(video)
    assert (fast is not None) == read_from_boxes
    assert media.probe_video(video) == probed_video(video, monkeypatch)


def test_a_video_cut_short_is_left_to_ffprobe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = tmp_path / "picture.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=2", *X264, "-pix_fmt", "yuv420p", "-bf", "0",
           "-movflags", "+faststart", str(video))  # fmt: skip
    video.write_bytes(video.read_bytes()[:-2000])  # the index whole, the last frames' data gone
    assert media._video_of_movie(video) is None
    probe = media.probe_video(video)
    assert probe.packets < 50 and not probe.conforms(fps=25, frames=50)


def test_a_video_that_does_not_decode_is_refused_by_its_one_probe(tmp_path: Path) -> None:
    video = tmp_path / "picture.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(100))
    with pytest.raises(VaError) as caught:
        media.encode_from_video(
            video, None, tmp_path / "final.mp4", fps=25, frames=50, crf=30, preset="ultrafast", canvas=None
        )
    assert caught.value.code == ExitCode.UNSUPPORTED_FORMAT
    assert caught.value.message == f"not a decodable image or video: {video}"
    assert not (tmp_path / "final.mp4").exists()


@pytest.mark.parametrize(
    ("tags", "seconds"),
    [
        ({"DURATION": "00:00:02.023000000"}, 2.023),
        ({"DURATION-eng": "01:02:03.5"}, 3723.5),
        ({"ENCODER": "x", "DURATION": "garbled"}, None),
        ({}, None),
    ],
)
def test_a_matroska_streams_own_length_is_its_duration_tag(
    tags: dict[str, str], seconds: float | None
) -> None:
    """Matroska keeps no length in a stream's header: ffmpeg's muxer writes a DURATION tag, mkvmerge one
    with the track's language; what does not parse is no length (the file's is used then)."""
    assert media._stream_seconds({"duration": "N/A", "tags": tags}) == seconds
    assert media._stream_seconds({"duration": "1.5", "tags": tags}) == 1.5


def test_a_jpeg_pillow_cannot_open_is_left_to_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A JPEG Pillow cannot open at all (12-bit samples: "cannot handle 12-bit layers") is not called cut
    short: ffmpeg decodes it, or says why; one Pillow opens but cannot decode to its end is."""
    from PIL import Image  # noqa: PLC0415

    picture = tmp_path / "p.jpg"
    Image.frombytes("RGB", (160, 120), bytes(range(256)) * 225).save(picture)
    info = media.probe_visual(picture)
    media.check_image_complete(info)  # whole

    def unopenable(*_: object, **__: object) -> None:
        raise SyntaxError("cannot handle 12-bit layers")

    monkeypatch.setattr(Image, "open", unopenable)
    media.check_image_complete(info)
    monkeypatch.undo()
    data = picture.read_bytes()
    picture.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(VaError, match="truncated or damaged image") as caught:
        media.check_image_complete(info)
    assert caught.value.code == ExitCode.UNSUPPORTED_FORMAT
