"""A corpus of real-world media, made on the fly by ffmpeg and Pillow as phones, cameras, broadcasters,
podcasters and screen recorders make it: every picture shows one reference picture (six flat patches,
none alike, so a picture turned or mirrored shows other colours where they are checked), every sound one
tone at -3 dBFS (``TONE_PEAK_DB``), so what va makes of each can be checked against one reference.
"""

from __future__ import annotations

import io
import math
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageCms

from va.icc import matrix_profile

#: The reference picture: its size, and its patches' colours in rows (3 across, 2 down).
REFERENCE_SIZE = (320, 180)
PATCHES = (
    ((250, 250, 250), (200, 60, 50), (60, 180, 70)),
    ((50, 70, 200), (128, 128, 128), (20, 20, 20)),
)
#: How far from the reference a patch's colour may be, per channel (of 255).
COLOUR_TOLERANCE = 4
#: The reference sound: seconds, and the peak of its tone in every channel.
TONE_SECONDS = 2.0
TONE_PEAK_DB = -3.0
#: EXIF orientation -> the turn that stores an upright picture so that a viewer applying the
#: orientation shows it upright again (the inverse of what the orientation asks).
STORED_TURN = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; a failure fails the test with ffmpeg's message."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def peak_db(path: Path) -> float:
    """The highest sample of any channel of ``path``'s audio, dBFS (ffmpeg ``volumedetect``)."""
    argv = [
        "ffmpeg",
        "-hide_banner",
        "-nostats",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-af",
        "volumedetect",
        "-f",
        "null",
        "-",
    ]
    report = subprocess.run(argv, capture_output=True, text=True, check=True).stderr
    return float(report.split("max_volume:")[1].split("dB")[0])


def reference_picture(size: tuple[int, int] = REFERENCE_SIZE) -> Image.Image:
    """The upright reference picture at ``size``."""
    width, height = size
    picture = Image.new("RGB", size)
    for row, colours in enumerate(PATCHES):
        for column, colour in enumerate(colours):
            box = (column * width // 3, row * height // 2, (column + 1) * width // 3, (row + 1) * height // 2)
            picture.paste(colour, box)
    return picture


def patch_centres(size: tuple[int, int]) -> list[tuple[tuple[int, int], tuple[int, int, int]]]:
    """Where each patch's centre lies in a picture of ``size`` showing the reference, with its colour."""
    width, height = size
    return [
        (((2 * column + 1) * width // 6, (2 * row + 1) * height // 4), colour)
        for row, colours in enumerate(PATCHES)
        for column, colour in enumerate(colours)
    ]


def colour_errors(picture: Image.Image) -> list[int]:
    """How far each patch centre of ``picture`` is from the reference colour (the largest channel's)."""
    rgb = picture.convert("RGB")
    return [
        max(abs(int(got) - want) for got, want in zip(rgb.getpixel(centre), colour, strict=True))  # type: ignore[arg-type]
        for centre, colour in patch_centres(rgb.size)
    ]


@dataclass(frozen=True)
class VisualKind:
    """A start picture as some device makes it: its file name, its maker, and the size it is displayed at."""

    name: str
    file: str
    make: Callable[[Path, Path], None]  # (reference PNG, target)
    display: tuple[int, int] = REFERENCE_SIZE


@dataclass(frozen=True)
class AudioKind:
    """A voice track as some device makes it: its file name, its maker, and the seconds that decode."""

    name: str
    file: str
    make: Callable[[Path], None]
    seconds: float = TONE_SECONDS


def _pillow(format_: str, orientation: int = 1, **options: object) -> Callable[[Path, Path], None]:
    def make(reference: Path, target: Path) -> None:
        with Image.open(reference) as opened:
            picture = opened.convert("RGB")
        if orientation != 1:
            picture = picture.transpose(STORED_TURN[orientation])
            exif = Image.Exif()
            exif[0x0112] = orientation
            options["exif"] = exif.tobytes()
        if format_ == "PNG-RGBA":
            picture.putalpha(255)
        if format_ in ("PNG-P", "GIF"):
            picture = picture.quantize(colors=8)
        picture.save(target, format=format_.split("-", maxsplit=1)[0], **options)

    return make


def _heic(orientation: int = 1) -> Callable[[Path, Path], None]:
    """A phone's HEIC photo (HEVC, 4:2:0): pillow-heif writes an EXIF orientation as the file's transforms
    (``irot``, ``imir``), as iPhones do, and keeps the tag."""

    def make(reference: Path, target: Path) -> None:
        import pillow_heif  # noqa: PLC0415  (only this kind needs it)

        with Image.open(reference) as opened:
            picture = opened.convert("RGB")
        exif = Image.Exif()
        if orientation != 1:
            picture = picture.transpose(STORED_TURN[orientation])
            exif[0x0112] = orientation
        pillow_heif.from_pillow(picture).save(target, quality=95, exif=exif.tobytes())

    return make


#: Display P3 (the primaries of DCI-P3, D65 white, the sRGB curve) as an ICC profile states it: the
#: primaries' XYZ adapted to the D50 white of the profile connection space, as Apple's profile has them.
DISPLAY_P3_COLORANTS = [(0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841)]
#: Adobe RGB (1998) likewise, as Adobe's profile has them; its curve is a gamma of 563/256.
ADOBE_RGB_COLORANTS = [(0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446)]
ADOBE_RGB_GAMMA = 563 / 256
#: ProPhoto RGB (ROMM RGB: D50 white, a gamma of 1.8), as raw converters export it.
PROPHOTO_COLORANTS = [(0.7977, 0.2880, 0.0), (0.1352, 0.7119, 0.0), (0.0313, 0.0001, 0.8249)]
PROPHOTO_GAMMA = 461 / 256


def display_p3_profile() -> bytes:
    """Display P3's profile, as iPhones embed in their photos."""
    return matrix_profile("Display P3", DISPLAY_P3_COLORANTS)


def adobe_rgb_profile() -> bytes:
    """Adobe RGB (1998)'s profile, as cameras set to it embed in their photos."""
    return matrix_profile("Adobe RGB (1998)", ADOBE_RGB_COLORANTS, ADOBE_RGB_GAMMA)


def prophoto_profile() -> bytes:
    """ProPhoto RGB's profile, as raw converters embed in what they export."""
    return matrix_profile("ProPhoto RGB", PROPHOTO_COLORANTS, PROPHOTO_GAMMA)


def in_profile(picture: Image.Image, profile: bytes) -> Image.Image:
    """``picture`` (sRGB) with its colours converted to ``profile``'s values and the profile embedded, so
    only a reader that honours the profile shows the reference's colours."""
    target = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    converted = ImageCms.profileToProfile(picture, ImageCms.createProfile("sRGB"), target, outputMode="RGB")
    assert converted is not None
    converted.info["icc_profile"] = profile
    return converted


def _heic_display_p3(reference: Path, target: Path) -> None:
    """An iPhone's HEIC photo in Display P3."""
    import pillow_heif  # noqa: PLC0415  (only this kind needs it)

    with Image.open(reference) as opened:
        picture = in_profile(opened.convert("RGB"), display_p3_profile())
    pillow_heif.from_pillow(picture).save(target, quality=95)


def _profiled(format_: str, profile: Callable[[], bytes], **options: object) -> Callable[[Path, Path], None]:
    """A picture of ``format_`` in the colours of ``profile``, embedded (a phone's or a camera's photo)."""

    def make(reference: Path, target: Path) -> None:
        with Image.open(reference) as opened:
            picture = in_profile(opened.convert("RGB"), profile())
        picture.save(target, format=format_, icc_profile=picture.info["icc_profile"], **options)

    return make


def _png16(reference: Path, target: Path) -> None:
    ffmpeg("-i", str(reference), "-pix_fmt", "rgb48be", str(target))


def _video(
    *out: str, size: tuple[int, int] = REFERENCE_SIZE, into: str = "", sar: str = "1", frames: int = 10
) -> Callable[[Path, Path], None]:
    """A short video of the reference: scaled to ``size`` (through ``into``: the filters that make the
    device's samples) and encoded with ``out``."""

    def make(reference: Path, target: Path) -> None:
        chain = f"scale={size[0]}:{size[1]}:flags=neighbor,setsar={sar}" + (f",{into}" if into else "")
        ffmpeg(
            "-loop",
            "1",
            "-framerate",
            "25",
            "-i",
            str(reference),
            "-vf",
            chain,
            "-frames:v",
            str(frames),
            *out,
            str(target),
        )

    return make


SD_YUV = "scale=out_color_matrix=bt601,format=yuv420p"
X264 = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "12")
TAG_709 = ("-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709")


def _hdr(transfer: str) -> Callable[[Path, Path], None]:
    """HEVC 10-bit BT.2020 as phones record it (HLG, or PQ as HDR10): the reference's colours at
    ITU-R BT.2408's reference white (203 cd/m2)."""
    convert = (
        f"zscale=tin=bt709:pin=bt709:min=gbr:rin=full:t={transfer}:p=bt2020:m=bt2020nc:r=tv:npl=203,"
        "format=yuv420p10le"
    )
    params = f"log-level=error:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc"
    tags = ("-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc")
    return _video(
        "-c:v", "libx265", "-crf", "12", "-x265-params", params, *tags, "-tag:v", "hvc1", into=convert
    )


def _rotated_phone(reference: Path, target: Path) -> None:
    """A phone held upright: the sensor's picture stored on its side, with a display matrix that turns it
    back (clockwise) when played."""
    stored = target.with_name("stored-" + target.name)
    upright = "transpose=cclock,scale=out_color_matrix=bt709,format=yuv420p"
    _video(*X264, *TAG_709, into=upright)(reference, stored)
    ffmpeg("-i", str(stored), "-c", "copy", "-metadata:s:v", "rotate=270", str(target))


def _vfr(reference: Path, target: Path) -> None:
    """A screen recording: frames only when something changed, at irregular times."""
    irregular = "setpts='(N*N*0.013)/TB',scale=out_color_matrix=bt709,format=yuv420p"
    ffmpeg(
        "-loop",
        "1",
        "-framerate",
        "25",
        "-i",
        str(reference),
        "-vf",
        irregular,
        "-frames:v",
        "8",
        "-fps_mode",
        "passthrough",
        *X264,
        *TAG_709,
        str(target),
    )


VISUAL_KINDS = (
    VisualKind("png", "start.png", _pillow("PNG")),
    VisualKind("png-alpha", "start.png", _pillow("PNG-RGBA")),
    VisualKind("png-16-bit", "start.png", _png16),
    VisualKind("png-palette", "start.png", _pillow("PNG-P")),
    VisualKind("gif", "start.gif", _pillow("GIF")),
    VisualKind("bmp", "start.bmp", _pillow("BMP")),
    VisualKind("webp-lossless", "start.webp", _pillow("WEBP", lossless=True)),
    VisualKind("jpeg-progressive", "start.jpg", _pillow("JPEG", quality=95, progressive=True)),
    VisualKind("jpeg-exif-6-portrait", "start.jpg", _pillow("JPEG", 6, quality=95)),
    VisualKind("jpeg-exif-8", "start.jpg", _pillow("JPEG", 8, quality=95)),
    VisualKind("jpeg-exif-3", "start.jpg", _pillow("JPEG", 3, quality=95)),
    VisualKind("jpeg-exif-2-mirrored", "start.jpg", _pillow("JPEG", 2, quality=95)),
    VisualKind("jpeg-exif-5-transposed", "start.jpeg", _pillow("JPEG", 5, quality=95)),
    VisualKind("png-exif-6", "start.png", _pillow("PNG", 6)),
    VisualKind("webp-exif-8", "start.webp", _pillow("WEBP", 8, lossless=True)),
    VisualKind("tiff-exif-6", "start.tiff", _pillow("TIFF", 6)),
    VisualKind("heic-iphone", "start.heic", _heic()),
    VisualKind("heic-exif-6-portrait", "IMG_0001.HEIC", _heic(6)),
    VisualKind("heif-exif-3", "start.heif", _heic(3)),
    VisualKind("heic-display-p3", "IMG_0002.HEIC", _heic_display_p3),
    VisualKind("jpeg-display-p3", "IMG_0003.JPG", _profiled("JPEG", display_p3_profile, quality=95)),
    VisualKind("png-display-p3", "screenshot.png", _profiled("PNG", display_p3_profile)),
    VisualKind("jpeg-adobe-rgb", "DSC_0001.JPG", _profiled("JPEG", adobe_rgb_profile, quality=95)),
    VisualKind("png-adobe-rgb", "export.png", _profiled("PNG", adobe_rgb_profile)),
    VisualKind(
        "h264-sd-untagged",
        "start.mp4",
        _video(*X264, size=(640, 360), into="scale=out_color_matrix=bt601,format=yuv420p"),
        display=(640, 360),
    ),
    VisualKind(
        "h264-hd-untagged",
        "start.mp4",
        _video(*X264, size=(1280, 720), into="scale=out_color_matrix=bt709,format=yuv420p", frames=2),
        display=(1280, 720),
    ),
    VisualKind(
        "h264-hd-bt709",
        "start.mp4",
        _video(
            *X264, *TAG_709, size=(1280, 720), into="scale=out_color_matrix=bt709,format=yuv420p", frames=2
        ),
        display=(1280, 720),
    ),
    VisualKind(
        "h264-full-range",
        "start.mp4",
        _video(
            *X264,
            *TAG_709,
            "-color_range",
            "pc",
            into="scale=out_color_matrix=bt709:out_range=pc,format=yuvj420p",
        ),
    ),
    VisualKind(
        "h264-10-bit",
        "start.mp4",
        _video(*X264, *TAG_709, into="scale=out_color_matrix=bt709,format=yuv420p10le"),
    ),
    VisualKind(
        "h264-4:4:4-mkv",
        "start.mkv",
        _video(*X264, *TAG_709, into="scale=out_color_matrix=bt709,format=yuv444p"),
    ),
    VisualKind("hevc-hlg-phone", "start.mov", _hdr("arib-std-b67")),
    VisualKind("hevc-pq-hdr10", "start.mp4", _hdr("smpte2084")),
    VisualKind(
        "h264-interlaced-pal",
        "start.mp4",
        _video(
            *X264,
            "-flags",
            "+ildct+ilme",
            "-x264-params",
            "tff=1",
            "-field_order",
            "tt",
            size=(720, 576),
            into="scale=out_color_matrix=bt601,format=yuv420p",
        ),
        display=(720, 576),
    ),
    VisualKind(
        "h264-anamorphic-pal",
        "start.mp4",
        _video(*X264, size=(720, 576), sar="64/45", into=SD_YUV),
        display=(1024, 576),
    ),
    VisualKind("h264-rotated-phone", "start.mp4", _rotated_phone),
    VisualKind("h264-vfr-screen", "start.mp4", _vfr),
    VisualKind(
        "vp9-webm",
        "start.webm",
        _video(
            "-c:v",
            "libvpx-vp9",
            "-crf",
            "10",
            "-b:v",
            "0",
            "-deadline",
            "realtime",
            *TAG_709,
            into="scale=out_color_matrix=bt709,format=yuv420p",
        ),
    ),
    VisualKind(
        "mjpeg-camera-mov",
        "start.mov",
        _video(
            "-c:v", "mjpeg", "-q:v", "2", into="scale=out_color_matrix=bt601:out_range=pc,format=yuvj422p"
        ),
    ),
    VisualKind(
        "prores-422-10-bit",
        "start.mov",
        # ffmpeg's ProRes in MOV carries no colour tags: an SD picture, taken as BT.601 by its size
        _video(
            "-c:v", "prores_ks", "-profile:v", "2", into="scale=out_color_matrix=bt601,format=yuv422p10le"
        ),
    ),
)


def _tone(
    *out: str, layout: str = "mono", rate: int = 48000, seconds: float = TONE_SECONDS
) -> Callable[[Path], None]:
    """The reference tone in every channel of ``layout``, at ``rate``, encoded with ``out``."""

    def make(target: Path) -> None:
        channels = layout.split("|", maxsplit=1)[0]
        spread = "|".join(f"c{i}=c0" for i in range(_CHANNELS[channels]))
        tone = f"sine=frequency=330:sample_rate={rate}:duration={seconds},volume={_tone_gain():.4f}"
        ffmpeg("-f", "lavfi", "-i", tone, "-af", f"pan={channels}|{spread}", *out, str(target))

    return make


_CHANNELS = {"mono": 1, "stereo": 2, "5.1": 6, "7.1": 8}


def _tone_gain() -> float:
    """The gain that brings ffmpeg's sine (amplitude 1/8) to ``TONE_PEAK_DB``."""
    return 8 * 10 ** (TONE_PEAK_DB / 20)


def _speech_like_mp3(*out: str) -> Callable[[Path], None]:
    """A podcast's VBR MP3: a quiet stretch, then a busy one, so frames of very different sizes follow."""

    def make(target: Path) -> None:
        quiet = f"sine=frequency=220:sample_rate=44100:duration=1,volume={_tone_gain() / 20:.4f}"
        busy = "anoisesrc=duration=1:sample_rate=44100:amplitude=0.2:seed=3"
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            quiet,
            "-f",
            "lavfi",
            "-i",
            busy,
            "-filter_complex",
            "[0:a][1:a]concat=n=2:v=0:a=1",
            "-c:a",
            "libmp3lame",
            "-q:a",
            "4",
            *out,
            str(target),
        )

    return make


def pcm_wav(
    target: Path, *, seconds: float, declared_seconds: float | None = None, byte_rate: int | None = None
) -> None:
    """A 16 kHz mono 16-bit WAV of the reference tone, written by hand: its data chunk may declare
    another length than it holds, its header another byte rate than its samples have."""
    rate = 16000
    peak = 32767 * 10 ** (TONE_PEAK_DB / 20)
    samples = b"".join(
        struct.pack("<h", round(peak * math.sin(2 * math.pi * 330 * i / rate)))
        for i in range(round(seconds * rate))
    )
    declared = len(samples) if declared_seconds is None else round(declared_seconds * rate) * 2
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2 if byte_rate is None else byte_rate, 2, 16)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", declared)
        + samples
    )
    target.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


AUDIO_KINDS = (
    AudioKind("aac-5.1-broadcast", "voice.m4a", _tone("-c:a", "aac", "-b:a", "384k", layout="5.1")),
    AudioKind("wav-7.1-24-bit", "voice.wav", _tone("-c:a", "pcm_s24le", layout="7.1")),
    AudioKind("mp3-vbr-without-xing", "voice.mp3", _speech_like_mp3("-write_xing", "0")),
    AudioKind("mp3-vbr-with-xing", "voice.mp3", _speech_like_mp3()),
    AudioKind("opus-podcast", "voice.opus", _tone("-c:a", "libopus", "-b:a", "64k", layout="stereo")),
    AudioKind("vorbis-ogg", "voice.ogg", _tone("-c:a", "libvorbis", layout="stereo", rate=44100)),
    AudioKind("flac-24-bit-96k", "voice.flac", _tone("-c:a", "flac", "-sample_fmt", "s32", rate=96000)),
    AudioKind("wav-float", "voice.wav", _tone("-c:a", "pcm_f32le", layout="stereo")),
    AudioKind("wav-mu-law-telephone", "voice.wav", _tone("-c:a", "pcm_mulaw", rate=8000)),
    AudioKind("alac-m4a", "voice.m4a", _tone("-c:a", "alac", layout="stereo", rate=44100)),
    AudioKind("aiff", "voice.aiff", _tone("-c:a", "pcm_s16be", layout="stereo", rate=44100)),
    AudioKind(
        "wav-wrong-byte-rate", "voice.wav", lambda target: pcm_wav(target, seconds=2.0, byte_rate=12345)
    ),
    AudioKind(
        "wav-data-chunk-short", "voice.wav", lambda target: pcm_wav(target, seconds=2.0, declared_seconds=0.5)
    ),
)
