"""Every ffmpeg and ffprobe call of the project: probing, padding audio, holding a still, encoding.

Commands are argument lists, never shell strings, and are logged with ``shlex.join``. The executables
come from the ``FFMPEG``/``FFPROBE`` environment variables, else from ``PATH``.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import math
import os
import shlex
import shutil
import struct
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from va import icc, mp4
from va.atomic import partial_file, scratch_folder
from va.errors import DISK_ERRORS, ExitCode, VaError
from va.memo import FileIdentity, Memo, identity_of
from va.textlog import COMMAND

if TYPE_CHECKING:
    import pillow_heif
    from PIL import Image, ImageCms

log = logging.getLogger(__name__)

#: Sample rate of the padded audio track and of the AAC stream in the final video.
AUDIO_SAMPLE_RATE = 48000
#: Seconds between key frames of a held still; the usual figure for players that seek.
KEYFRAME_INTERVAL_SECONDS = 2
AAC_BITRATE = "192k"
# The "fast" coder: at this bitrate it sounds at least as good as "twoloop" and costs half the time
# (ffmpeg's own encoder notes say the same of higher bitrates).
AAC_OUT = ["-c:a", "aac", "-aac_coder", "fast", "-b:a", AAC_BITRATE]
#: Audio already encoded to AAC (``pad_audio``'s second output) is stream-copied, never encoded twice.
AAC_SUFFIX = ".m4a"
#: The index first, so players start before the whole file has arrived.
MP4_OUT = ["-movflags", "+faststart", "-f", "mp4"]
#: A filter graph longer than this goes to ffmpeg as a file: Linux takes no single argument over 128 KiB.
LONGEST_ARGUMENT = 32_000


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says about the first audio stream of a file."""

    path: Path
    codec: str
    sample_rate: int
    channels: int
    duration_seconds: float
    #: Whether the duration is ffmpeg's estimate from the bit rate (a VBR MP3 without a Xing header, raw
    #: ADTS AAC): then it says nothing of how much is there, and only decoding does.
    duration_estimated: bool = False


@dataclass(frozen=True)
class ColourTags:
    """How a picture's samples are to be read, as its stream declares (ffprobe's names; "" where it
    declares nothing): the YUV matrix, the transfer function, the primaries and the range."""

    matrix: str = ""
    transfer: str = ""
    primaries: str = ""
    range: str = ""

    @property
    def hdr(self) -> bool:
        """Whether the transfer is an HDR one (PQ, HLG): it is tone-mapped to SDR."""
        return self.transfer in HDR_TRANSFERS

    @property
    def wide(self) -> bool:
        """Whether the picture is HDR or has BT.2020 primaries or matrix: zimg converts it to BT.709."""
        return self.hdr or self.primaries == "bt2020" or self.matrix in ("bt2020nc", "bt2020c")


#: Transfer functions (ffprobe's names) of HDR video: PQ (HDR10, Dolby Vision's base) and HLG.
HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})
#: The luminance SDR white stands for in HDR (ITU-R BT.2408's reference white, cd/m2): HDR pictures are
#: mapped so that their diffuse white becomes SDR white, and only highlights above it are compressed.
REFERENCE_WHITE_NITS = 203
#: Where the tone curve leaves the identity (a share of reference white): colours up to 90% of it keep
#: their values, brighter ones are rolled off (``tonemap=mobius``) into what SDR can show.
TONE_MAP_KNEE = 0.9
#: ffprobe's matrix names as swscale's ``in_color_matrix`` takes them.
SWSCALE_MATRICES = {
    "bt709": "bt709",
    "smpte170m": "smpte170m",
    "bt470bg": "bt470",
    "fcc": "fcc",
    "smpte240m": "smpte240m",
}
#: EXIF orientation (1 upright .. 8) as the ffmpeg filters that make the picture upright.
UPRIGHT = {
    1: "",
    2: "hflip",
    3: "hflip,vflip",
    4: "vflip",
    5: "transpose=cclock_flip",
    6: "transpose=clock",
    7: "transpose=clock_flip",
    8: "transpose=cclock",
}
#: A video's clockwise display rotation as the EXIF orientation that turns it so.
ROTATION_ORIENTATION = {0: 1, 90: 6, 180: 3, 270: 8}


@dataclass(frozen=True)
class VisualInfo:
    """What ffprobe (and, for an image's EXIF orientation, Pillow) says about the first video stream of an
    image or video file. ``width`` and ``height`` are the displayed size: turned by its ``orientation``
    (EXIF's 1..8; a video's rotation as one) and stretched by its ``pixel_aspect``. ``display_filter``
    makes that picture, in RGB, from the frames as decoded without ``-autorotate``."""

    path: Path
    codec: str
    width: int
    height: int
    pix_fmt: str
    has_alpha: bool
    orientation: int = 1
    pixel_aspect: tuple[int, int] = (1, 1)
    colour: ColourTags = ColourTags()
    interlaced: bool = False
    #: Whether va decodes the picture before ffmpeg reads it (``decoded_picture``: a HEIF image, an image
    #: whose ICC profile is not sRGB's): then ffmpeg reads it upright, in sRGB, as RGB.
    decoded_by_va: bool = False

    @property
    def display_filter(self) -> str:
        """The filters that turn a decoded frame into the picture as displayed, in RGB: deinterlaced, its
        colours read by its tags (HDR tone-mapped to SDR BT.709), stretched to square pixels, turned
        upright. Empty for an upright RGB image of square pixels."""
        swapped = ORIENTATION_SWAPS[self.orientation]
        stored = (self.height, self.width) if swapped else (self.width, self.height)
        steps = ["bwdif=deint=interlaced"] if self.interlaced else []
        steps.append(to_rgb(self))
        if self.pixel_aspect[0] != self.pixel_aspect[1]:
            steps.append(f"scale={stored[0]}:{stored[1]},setsar=1")
        steps.append(UPRIGHT[self.orientation])
        return ",".join(step for step in steps if step)


@dataclass(frozen=True)
class VideoStreamCheck:
    """The figures of an encoded video that the output contract promises."""

    width: int
    height: int
    frames: int
    fps: float
    video_codec: str
    pix_fmt: str
    audio_codec: str
    video_duration_seconds: float
    audio_duration_seconds: float


@dataclass(frozen=True)
class FrameGeometry:
    """How a start frame of ``source`` size becomes an even-sized output frame."""

    width: int
    height: int
    filter: str


@dataclass(frozen=True)
class Canvas:
    """The planned picture of a video: its even size, and how frames of another size are brought to it
    (``contain``: scaled to fit inside, centred on ``background``; ``cover``: scaled to cover it and
    centre-cropped)."""

    width: int
    height: int
    fit: str = "contain"
    background: str = "black"

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.width, self.height


@dataclass(frozen=True)
class EncodedFigures:
    """What a finished encode is checked for against the plan: frames (counted from packets), size, rate."""

    frames: int
    width: int
    height: int
    fps: str


def executable(name: str) -> str:
    """The path of ``ffmpeg`` or ``ffprobe``: the upper-case environment variable, else ``PATH``."""
    override = os.environ.get(name.upper())
    found = shutil.which(override) if override else shutil.which(name)
    if not found:
        where = f"{name.upper()}={override}" if override else "PATH"
        raise VaError(ExitCode.DEPENDENCY_MISSING, f"{name} not found ({where}); install ffmpeg")
    return found


def require_tools() -> None:
    """Both ffprobe and ffmpeg must be there (``DEPENDENCY_MISSING`` otherwise), said before a job is
    planned: plain files are probed without them (their headers read here), but every run encodes, and
    any other file is probed by ffprobe."""
    for name in ("ffprobe", "ffmpeg"):
        executable(name)


#: Names ffmpeg's image2 demuxer claims: given a name with ``%`` it reads a numbered sequence instead.
IMAGE2_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".jxl", ".ppm", ".exr"}
)
#: The protocol that reads a path as the one local file it names (``concat:a|b``, ``http:x`` are no URLs).
FILE_PROTOCOL = "file:"


def input_file(path: Path) -> list[str]:
    """ffmpeg/ffprobe input arguments that read ``path`` as the one file it names, whatever its name: through
    ``file:``, so no part of it is taken for a protocol, and an image name with ``%`` with ``-pattern_type
    none``, so it is not taken for a numbered sequence (``shot%d.png`` would read ``shot1.png``)."""
    pattern = ["-pattern_type", "none"] if "%" in str(path) and path.suffix.lower() in IMAGE2_SUFFIXES else []
    return [*pattern, *_whole_wav(path), "-i", output_file(path)]


def _whole_wav(path: Path) -> list[str]:
    """``-ignore_length 1`` for a WAV whose data chunk declares less than the samples it holds
    (``WavLayout.overrun``): all of them are read, not only what the header counts."""
    try:
        layout = wav_layout(path)
    except OSError:
        return []  # ffmpeg says why it cannot read it
    if layout is not None and layout.overrun:
        if str(path) not in _WHOLE_WAVS_SAID:
            _WHOLE_WAVS_SAID.add(str(path))
            log.warning("%s holds more samples than its WAV header counts: reading all of them", path)
        return ["-ignore_length", "1"]
    return []


#: The WAVs read whole, each said once a process.
_WHOLE_WAVS_SAID: set[str] = set()


def output_file(path: Path) -> str:
    """``path`` as an ffmpeg output (or a folder): through ``file:``, so no part is taken for a protocol."""
    return FILE_PROTOCOL + str(path)


def _named(argument: str) -> str:
    """A path as ffmpeg was given it, as the user named it (without ``file:``)."""
    return argument.removeprefix(FILE_PROTOCOL)


def _run(argv: list[str], *, failure: ExitCode, what: str) -> subprocess.CompletedProcess[str]:
    log.info("%s", shlex.join(argv), extra=COMMAND)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise VaError(ExitCode.DEPENDENCY_MISSING, f"cannot start {argv[0]}: {exc}") from exc
    # ffmpeg 5.1 ends with 0 when only its trailer could not be written to a full disk: the file is cut.
    if done.returncode != 0 or any(reason in done.stderr for reason in DISK_ERRORS):
        raise _failure(argv, done.stderr, failure, what)
    if done.stderr:
        log.info("%s", done.stderr.strip())
    return done


def _failure(
    argv: list[str], stderr: str, failure: ExitCode, what: str, *, written: str | None = None
) -> VaError:
    """The error of a failed ffmpeg/ffprobe: a full or read-only disk (``WORKDIR_UNUSABLE``, naming the
    file being written) and an input it may not read (``INPUT_NOT_FOUND``, permission denied) are said
    as such, whatever the step was; anything else is the step's ``failure``. The file written is
    ``written`` when given (a command that writes a pipe after it: its format is no file), else the
    command's last argument that is not a pipe."""
    disk = next((reason for reason in DISK_ERRORS if reason in stderr), None)
    if written is None:
        written = [arg for arg in argv if not arg.startswith("pipe:")][-1]
    if disk is not None:
        return VaError(ExitCode.WORKDIR_UNUSABLE, f"{disk.lower()}: ffmpeg could not write {_named(written)}")
    if "Permission denied" in stderr:
        reads_last = Path(argv[0]).name.startswith("ffprobe")  # ffprobe's one input is its last argument
        inputs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-i"] + argv[-1:] * reads_last
        denied = next((path for path in inputs if f"{path}: Permission denied" in stderr), None)
        if denied is not None:
            return VaError(ExitCode.INPUT_NOT_FOUND, f"permission denied: cannot read {_named(denied)}")
        return VaError(
            ExitCode.WORKDIR_UNUSABLE, f"permission denied: ffmpeg could not write {_named(written)}"
        )
    return VaError(failure, f"{what}: {_last_line(stderr)}")


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "no message from ffmpeg"


#: What a tool says about itself, by the identity of its executable (an upgraded ffmpeg is asked again):
#: ``-version``'s first line, and ffmpeg's colour names.
TOOL_VERSIONS: Memo[FileIdentity, str] = Memo(limit=16)
COLOUR_NAMES: Memo[FileIdentity, frozenset[str]] = Memo(limit=16)


def tool_version(name: str) -> str:
    """First line of ``ffmpeg -version`` (or ffprobe's), e.g. ``ffmpeg version 5.1.6-0+deb12u1``."""
    path = executable(name)
    return TOOL_VERSIONS.made(identity_of(path), lambda: _ask_version(path, name))


def _ask_version(path: str, name: str) -> str:
    done = _run([path, "-version"], failure=ExitCode.DEPENDENCY_MISSING, what=name)
    return _version_line(done.stdout) or "unknown"


def _version_line(text: str) -> str | None:
    """``ffmpeg version 5.1.6-0+deb12u1`` from the first line of ``-version``'s output or of the banner."""
    first = text.splitlines()[0] if text else ""
    return first.split(" Copyright")[0] if " version " in first else None


def encoders() -> set[str]:
    """Names of the encoders this ffmpeg build has (``ffmpeg -encoders``)."""
    done = _run(
        [executable("ffmpeg"), "-hide_banner", "-encoders"],
        failure=ExitCode.DEPENDENCY_MISSING,
        what="ffmpeg",
    )
    names = set()
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return names


def filters() -> set[str]:
    """Names of the filters this ffmpeg build has (``ffmpeg -filters``)."""
    done = _run(
        [executable("ffmpeg"), "-hide_banner", "-filters"],
        failure=ExitCode.DEPENDENCY_MISSING,
        what="ffmpeg",
    )
    # Lines read " TSC name  V->V  description": flags, name, pads, words.
    return {
        parts[1]
        for parts in (line.split() for line in done.stdout.splitlines())
        if len(parts) >= 3 and "->" in parts[2]
    }


#: What ffprobe warns when it guessed a duration from the bit rate.
ESTIMATED_DURATION = "Estimating duration from bitrate"


def _ffprobe_json(path: Path, what: str, *, count_packets: bool = False) -> dict[str, object]:
    """ffprobe's JSON of ``path``'s format and streams (with each stream's packets counted, reading the
    whole file but decoding nothing, when ``count_packets``), with ``estimated_duration`` set when
    ffprobe only guessed the duration from the bit rate (it warns so)."""
    argv = [executable("ffprobe"), "-v", "warning", *(["-count_packets"] if count_packets else [])]
    argv += ["-print_format", "json", "-show_format", "-show_streams", *input_file(path)]
    log.info("%s", shlex.join(argv), extra=COMMAND)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0 and "Permission denied" in done.stderr:
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"permission denied: cannot read {path}")
    if done.returncode != 0:
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"not a decodable {what}: {path}")
    data: dict[str, object] = json.loads(done.stdout or "{}")
    data["estimated_duration"] = ESTIMATED_DURATION in done.stderr
    return data


def _first_stream(data: dict[str, object], kind: str) -> dict[str, object] | None:
    streams = data.get("streams")
    if not isinstance(streams, list):
        return None
    for stream in streams:
        if isinstance(stream, dict) and stream.get("codec_type") == kind:
            return stream
    return None


def _float(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def probe_audio(path: Path) -> AudioInfo:
    """Probe the first audio stream (a plain WAV by its header, ``wav_audio``; anything else with
    ffprobe); a file without decodable audio is ``UNSUPPORTED_FORMAT``."""
    known = wav_audio(path)
    if known is not None and known.duration_seconds > 0:
        return known
    data = _ffprobe_json(path, "audio file")
    stream = _first_stream(data, "audio")
    fmt = data.get("format")
    fmt_duration = fmt.get("duration") if isinstance(fmt, dict) else None
    duration = _stream_seconds(stream) if stream else None
    # Without a length of the stream's own, the file's is all there is: with other streams beside it (a
    # recording's video) the audio may well be shorter, so that length promises nothing.
    whole_file = duration is None
    duration = duration if duration is not None else _float(fmt_duration)
    if stream is None or not duration or duration <= 0:
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"not a decodable audio file: {path}")
    streams = data.get("streams")
    shared = whole_file and isinstance(streams, list) and len(streams) > 1
    return AudioInfo(
        path=path,
        codec=str(stream.get("codec_name", "")),
        sample_rate=int(str(stream.get("sample_rate", 0))),
        channels=int(str(stream.get("channels", 0))),
        duration_seconds=duration,
        duration_estimated=data.get("estimated_duration") is True or shared,
    )


def _stream_seconds(stream: dict[str, object]) -> float | None:
    """A stream's own length: its ``duration``, else (Matroska and WebM keep none in the stream's header)
    the ``DURATION`` tag their muxers write, ``H:MM:SS.fraction`` (``DURATION-eng`` and the like with a
    language); None when it has neither."""
    seconds = _float(stream.get("duration"))
    if seconds is not None:
        return seconds
    tags = stream.get("tags")
    # As ffmpeg's muxer writes it (``DURATION``), or mkvmerge with the track's language (``DURATION-eng``).
    tags = tags if isinstance(tags, dict) else {}
    tagged = next((value for key, value in tags.items() if key.split("-")[0] == "DURATION"), None)
    parts = str(tagged).split(":") if tagged is not None else []
    if len(parts) != 3:
        return None
    hours, minutes, rest = (_float(part) for part in parts)
    if hours is None or minutes is None or rest is None:
        return None
    return hours * 3600 + minutes * 60 + rest


def image_size(path: Path) -> tuple[int, int] | None:
    """The width and height an image's header declares, read without decoding a pixel (Pillow reads
    headers lazily; ffprobe decodes the first frame, 16 GB for a 9999x9999 PNG); None when the header
    is not one Pillow knows. A HEIF image's is its displayed size, as libheif declares it."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415  (only validation needs it; rule scripts start faster without)

    if is_heif(path):
        width, height = _open_heif(path).size
        return int(width), int(height)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
                return int(width), int(height)
        except Image.DecompressionBombError:
            return Image.MAX_IMAGE_PIXELS or 0, Image.MAX_IMAGE_PIXELS or 0  # far above any limit
        except (UnidentifiedImageError, OSError, ValueError):
            return None


def rotation(stream: dict[str, object]) -> int:
    """Degrees clockwise a video stream is turned when displayed, 0..359: its display matrix (whose
    ``rotation`` ffprobe gives counter-clockwise), else the older ``rotate`` tag (clockwise)."""
    side_data = stream.get("side_data_list")
    for entry in side_data if isinstance(side_data, list) else []:
        degrees = _float(entry.get("rotation")) if isinstance(entry, dict) and "rotation" in entry else None
        if degrees is not None:
            return round(-degrees) % 360
    tags = stream.get("tags")
    degrees = _float(tags.get("rotate")) if isinstance(tags, dict) and "rotate" in tags else None
    return round(degrees) % 360 if degrees is not None else 0


def _pixel_aspect(stream: dict[str, object]) -> tuple[int, int]:
    """A stream's sample (pixel) aspect ratio; 1:1 where it declares none (or 0:1, "unknown")."""
    num, _, den = str(stream.get("sample_aspect_ratio", "1:1")).partition(":")
    if not (num.isdigit() and den.isdigit()) or int(num) == 0 or int(den) == 0:
        return (1, 1)
    divisor = math.gcd(int(num), int(den))
    return (int(num) // divisor, int(den) // divisor)


def probe_visual(path: Path) -> VisualInfo:
    """Probe the first video stream of an image or video; none is ``UNSUPPORTED_FORMAT``. Its display
    geometry is resolved here, once: the size as displayed (turned by a video's rotation or an image's
    EXIF orientation, stretched by its pixel aspect), and with the colour tags and the field order, what
    ``VisualInfo.display_filter`` makes of its frames."""
    if is_heif(path):
        return _probe_heif(path)
    known = png_visual(path)
    if known is not None:
        return known
    return _visual_of(path, _ffprobe_json(path, "image or video"))


def _visual_of(path: Path, data: dict[str, object]) -> VisualInfo:
    """``probe_visual``'s record of ffprobe's JSON of ``path``."""
    stream = _first_stream(data, "video")
    width = int(str(stream.get("width", 0))) if stream else 0
    height = int(str(stream.get("height", 0))) if stream else 0
    if stream is None or width <= 0 or height <= 0:
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"not a decodable image or video: {path}")
    pix_fmt = str(stream.get("pix_fmt", ""))
    aspect = _pixel_aspect(stream)
    width = max(1, round(width * aspect[0] / aspect[1]))
    still_image = _is_image(data)
    if still_image:
        orientation, decoded_by_va = _image_tags(path)
    else:
        orientation, decoded_by_va = ROTATION_ORIENTATION.get(rotation(stream), 1), False
    if ORIENTATION_SWAPS[orientation]:
        width, height = height, width
    has_alpha = _has_alpha(pix_fmt)
    colour = ColourTags(*(str(stream.get(key) or "").replace("unknown", "") for key in COLOUR_KEYS))
    if decoded_by_va:  # decoded_picture makes it upright RGB in sRGB
        pix_fmt, orientation, colour = ("rgba" if has_alpha else "rgb24"), 1, ColourTags()
    return VisualInfo(
        path=path,
        codec=str(stream.get("codec_name", "")),
        width=width,
        height=height,
        pix_fmt=pix_fmt,
        has_alpha=has_alpha,
        orientation=orientation,
        pixel_aspect=aspect,
        colour=colour,
        interlaced=not still_image and str(stream.get("field_order", "")) in ("tt", "bb", "tb", "bt"),
        decoded_by_va=decoded_by_va,
    )


def _has_alpha(pix_fmt: str) -> bool:
    """Whether frames of ``pix_fmt`` may hold transparency (a palette may)."""
    return any(tag in pix_fmt for tag in ("rgba", "bgra", "argb", "abgr", "yuva", "ya", "pal8"))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: ffmpeg's pixel format of a PNG's samples, by its colour type and bit depth (the ones read here).
PNG_PIXEL_FORMATS = {
    (0, 1): "monob",
    (0, 8): "gray",
    (0, 16): "gray16be",
    (2, 8): "rgb24",
    (2, 16): "rgb48be",
    (3, 8): "pal8",
    (4, 8): "ya8",
    (4, 16): "ya16be",
    (6, 8): "rgba",
    (6, 16): "rgba64be",
}
#: The chunks a PNG read from its header may have: none changes how its pixels are read or shown (no
#: ``tRNS``, which makes ffmpeg add alpha; no ``iCCP``, ``sRGB``, ``gAMA``, ``cHRM``, ``cICP``; no ``eXIf``).
PNG_PLAIN_CHUNKS = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
)
#: Text keywords whose text Pillow reads an EXIF orientation from (ImageMagick's raw EXIF, XMP).
PNG_ORIENTATION_KEYWORDS = (b"Raw profile type", b"XML:com.adobe.xmp")


def check_image_complete(info: VisualInfo) -> None:
    """Refuse a JPEG or PNG start image cut short (a copy or download that stopped): ffmpeg would fill
    the missing part of a JPEG with a smear and still end 0, and fail on a PNG only when the run holds
    it. A JPEG is decoded at an eighth of its size (every coded block is still read, in a fraction of a
    whole decode's time); a PNG's chunks are read to its end with their checksums (a plain PNG's chunk
    headers, read for its probe, have shown it whole already). Other formats are left to ffmpeg."""
    if info.codec not in ("mjpeg", "png") or (info.codec == "png" and png_visual(info.path) is not None):
        return
    from PIL import Image  # noqa: PLC0415  (only images need it)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = Image.open(info.path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return  # a file Pillow cannot open (a 12-bit JPEG): ffmpeg, which decodes it, says why if not
        try:
            with image:
                if info.codec == "png":
                    image.verify()
                else:
                    image.draft("L", (max(1, image.width // 8), max(1, image.height // 8)))
                    image.load()
        except (OSError, ValueError, SyntaxError) as exc:
            message = f"truncated or damaged image ({exc}): {info.path}"
            raise VaError(ExitCode.UNSUPPORTED_FORMAT, message) from exc


def png_visual(path: Path) -> VisualInfo | None:
    """A plain PNG's picture as ``probe_visual`` reads it with ffprobe, from its chunks' headers alone (no
    process started): its size and pixel aspect (``pHYs``), its samples' pixel format, no orientation,
    profile or colour tags. None for anything else (another format, a chunk that changes how its pixels
    are read or shown, a chunk that does not fit in the file, no ``IEND``): ffprobe is asked."""
    try:
        with path.open("rb") as file:
            chunks = _png_chunks(file, os.fstat(file.fileno()).st_size)
    except OSError:
        return None
    if chunks is None or len(chunks[b"IHDR"]) != 13:
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    pix_fmt = PNG_PIXEL_FORMATS.get((colour, depth))
    if pix_fmt is None or width == 0 or height == 0 or interlace > 1:
        return None
    aspect = (1, 1)
    if b"pHYs" in chunks and len(chunks[b"pHYs"]) == 9:  # ffmpeg takes the pixels a unit as the aspect
        horizontal, vertical = struct.unpack(">II", chunks[b"pHYs"][:8])
        aspect = _pixel_aspect({"sample_aspect_ratio": f"{horizontal}:{vertical}"})
    return VisualInfo(
        path=path,
        codec="png",
        width=max(1, round(width * aspect[0] / aspect[1])),
        height=height,
        pix_fmt=pix_fmt,
        has_alpha=_has_alpha(pix_fmt),
        pixel_aspect=aspect,
        colour=ColourTags(range="pc"),
    )


def _png_chunks(file: BinaryIO, size: int) -> dict[bytes, bytes] | None:
    """The small chunks of a PNG (``IHDR``, ``pHYs``) by type, each chunk's header read and its data
    skipped; None when the file is no PNG, has a chunk not in ``PNG_PLAIN_CHUNKS`` or a text chunk whose
    keyword may carry an orientation, a chunk that does not fit, or ends before ``IEND``."""
    if file.read(8) != PNG_SIGNATURE:
        return None
    found: dict[bytes, bytes] = {}
    at = 8
    while at + 12 <= size:
        file.seek(at)
        length, kind = struct.unpack(">I4s", file.read(8))
        if kind not in PNG_PLAIN_CHUNKS or at + 12 + length > size or (at == 8) != (kind == b"IHDR"):
            return None
        if kind in (b"IHDR", b"pHYs"):
            found[kind] = file.read(length)
        elif kind in (b"tEXt", b"zTXt", b"iTXt") and file.read(80).startswith(PNG_ORIENTATION_KEYWORDS):
            return None
        if kind == b"IEND":
            return found
        at += 12 + length
    return None


#: The brands of an ISO BMFF ``ftyp`` box that make a file a HEIF image of HEVC pictures (HEIC), as
#: phones write their photos: ffmpeg 5.1 cannot read them, pillow-heif's libheif does.
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def is_heif(path: Path) -> bool:
    """Whether ``path`` is a HEIF image (its ``ftyp`` box names a HEIF brand), whatever its name."""
    try:
        with path.open("rb") as file:
            head = file.read(12)
    except OSError:
        return False  # ffprobe says why it cannot read it
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def _open_heif(path: Path) -> pillow_heif.HeifFile:
    """The HEIF file's primary image, its header read (nothing decoded yet); one that libheif cannot read
    is ``UNSUPPORTED_FORMAT``."""
    import pillow_heif  # noqa: PLC0415  (only HEIF starts need it)

    try:
        return pillow_heif.open_heif(path, convert_hdr_to_8bit=True)
    except (ValueError, OSError, RuntimeError) as exc:
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"not a decodable HEIF image ({exc}): {path}") from exc


def _probe_heif(path: Path) -> VisualInfo:
    """A HEIF image's display geometry: libheif turns and mirrors the picture by the file's transforms
    (``irot``, ``imir``: where phones and pillow-heif put the EXIF orientation; the HEIF standard makes
    them, not the EXIF tag, the picture's orientation) and crops it (``clap``) as it decodes, so the
    size it declares is the displayed size and the decoded picture is upright."""
    heif = _open_heif(path)
    width, height = heif.size
    return VisualInfo(
        path=path,
        codec="hevc",
        width=width,
        height=height,
        pix_fmt="rgba" if heif.has_alpha else "rgb24",
        has_alpha=heif.has_alpha,
        decoded_by_va=True,
    )


@contextmanager
def ffmpeg_readable(source: Path, scratch: Path, *, shrink: int = 1) -> Iterator[Path]:
    """``source`` as a file ffmpeg reads: itself, or for a HEIF image (which ffmpeg 5.1 cannot read) and
    an image whose ICC profile is not sRGB's (which ffmpeg does not honour), its picture decoded by libheif
    or Pillow, upright, in sRGB and ``shrink`` times smaller a side, as a PNG in ``scratch`` for as long
    as the context lasts (``decoded_picture``)."""
    picture = decoded_picture(source, shrink)
    if picture is None:
        yield source
        return
    # A PNG, not an uncompressed PPM, though that costs no CPU to write and read: ffmpeg reads an image
    # file as one packet, and the PPM of a 48 MP picture made the still's peak 578 MB instead of 414 MB.
    decoded = scratch / "decoded.png"
    with picture:
        picture.save(decoded, format="PNG", compress_level=1)
    try:
        yield decoded
    finally:
        decoded.unlink(missing_ok=True)


def decoded_picture(source: Path, shrink: int = 1) -> Image.Image | None:
    """The picture of a HEIF image, or of an image whose ICC profile is not sRGB's, as va decodes it for
    ffmpeg: upright (libheif by the file's transforms, Pillow by the EXIF orientation), at least
    ``1/shrink`` of each side (a JPEG decoded scaled down by its DCT, Pillow's draft mode; any other
    reduced right after decoding), converted to sRGB by littleCMS, RGB or RGBA. None for any other
    file: ffmpeg reads it as it is."""
    if is_heif(source):
        try:
            reduced = _decoded_heif(source, shrink)
        except (ValueError, OSError, RuntimeError) as exc:
            raise VaError(
                ExitCode.UNSUPPORTED_FORMAT, f"not a decodable HEIF image ({exc}): {source}"
            ) from exc
        profile = colour_profile(reduced, source)
        return reduced if profile is None else in_srgb(reduced, profile, source)
    from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: PLC0415  (only images need it)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = Image.open(source)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None  # ffmpeg says why it cannot read it
    with image:
        profile = colour_profile(image, source)
        if profile is None:
            return None
        whole = image.size
        try:
            image.draft(image.mode, (math.ceil(whole[0] / shrink), math.ceil(whole[1] / shrink)))
            upright = _reduced(image, shrink, whole)
            ImageOps.exif_transpose(upright, in_place=True)
        except (OSError, ValueError, SyntaxError) as exc:
            raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"not a decodable image ({exc}): {source}") from exc
    return in_srgb(upright, profile, source)


#: Rows of the reduced picture made from one strip of a decoded HEIF picture (the strip is this many
#: times the factor rows: for 8064 pixels' width reduced by 4, 1,024 rows, 33 MB in Pillow).
STRIP_ROWS = 256


def _decoded_heif(source: Path, shrink: int) -> Image.Image:
    """A HEIF image's picture (upright; its ICC profile kept, or one made from the primaries its nclx box
    names, ``icc.nclx_profile``), at least ``1/shrink`` of each side. libheif has no scaled decoding: it
    decodes the whole picture into one buffer, which is reduced strip by strip, so no second picture of
    the whole size is made (as ``to_pillow`` would)."""
    heif = _open_heif(source)
    width, height = heif.size
    factor = min(width // math.ceil(width / shrink), height // math.ceil(height / shrink))
    picture = heif.to_pillow() if factor <= 1 else _reduced_heif(heif, factor)
    # Its colours: an ICC profile, else the primaries of its nclx box (as some phones write them).
    profile = heif.info.get("icc_profile") or icc.nclx_profile(heif.info.get("nclx_profile") or {})
    if profile:
        picture.info["icc_profile"] = profile
    return picture


def _reduced_heif(heif: pillow_heif.HeifFile, factor: int) -> Image.Image:
    """The picture libheif decoded into ``heif``'s buffer, reduced by ``factor``, strip by strip."""
    from PIL import Image  # noqa: PLC0415  (only images need it)

    width, height = heif.size
    data, stride, mode = memoryview(heif.data), heif.stride, heif.mode  # libheif's buffer, not copied
    reduced = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    for top in range(0, height, STRIP_ROWS * factor):
        rows = min(STRIP_ROWS * factor, height - top)
        part = data[top * stride : (top + rows) * stride]
        strip = Image.frombuffer(mode, (width, rows), part, "raw", mode, stride, 1)  # type: ignore[arg-type]  # Pillow's stubs leave out memoryview, which it reads
        reduced.paste(strip.reduce(factor), (0, top // factor))
    return reduced


def _reduced(picture: Image.Image, shrink: int, whole: tuple[int, int] | None = None) -> Image.Image:
    """``picture`` (decoded now, if it was not yet) reduced by the whole factor that leaves each side at
    least ``1/shrink`` of ``whole`` (the size before a draft decoded it smaller; its own size by default)."""
    width, height = whole or picture.size
    least = (math.ceil(width / shrink), math.ceil(height / shrink))
    factor = min(picture.width // least[0], picture.height // least[1])
    picture.load()
    return picture.reduce(factor) if factor > 1 else picture


#: The colour space of an ICC profile (its header's) by the colour space of a Pillow mode's samples.
PROFILE_SPACES = {
    "RGB": "RGB",
    "RGBA": "RGB",
    "RGBX": "RGB",
    "P": "RGB",
    "PA": "RGB",
    "L": "GRAY",
    "LA": "GRAY",
    "CMYK": "CMYK",
}
#: What is logged of a profile that cannot be used (the file, why): the picture is read as sRGB.
PROFILE_UNUSABLE = "the ICC profile of %s cannot be used (%s): its values are taken as sRGB"
#: The Pillow mode of the samples an ICC profile of each colour space describes.
SPACE_MODES = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}
#: The colours a profile is tried on to tell whether it is sRGB's own: greys, and colours well inside
#: every RGB gamut (a saturated primary would be clipped to itself by a wider profile). A profile that
#: keeps each within 1/255 is taken as sRGB.
SRGB_PROBES = (
    (0, 0, 0),
    (64, 64, 64),
    (128, 128, 128),
    (192, 192, 192),
    (255, 255, 255),
    (200, 60, 50),
    (60, 180, 70),
    (50, 70, 200),
    (220, 200, 80),
    (90, 40, 160),
)


def colour_profile(
    picture: Image.Image, source: Path, *, quiet: bool = False
) -> ImageCms.ImageCmsProfile | None:
    """The ICC profile ``picture`` (of ``source``) carries when it makes its colours other than sRGB's
    (Display P3, Adobe RGB, ProPhoto, a grey or CMYK one). None for no profile, an sRGB one, and one
    littleCMS cannot read or that does not describe the picture's samples: that one is logged (unless
    ``quiet``), and the values are taken as sRGB."""
    icc = picture.info.get("icc_profile")
    if not icc:
        return None
    from PIL import Image, ImageCms  # noqa: PLC0415  (only pictures with a profile need it)

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = profile.profile.xcolor_space.strip()
        if PROFILE_SPACES.get(picture.mode) != space:
            raise ValueError(f"a profile of {space} colours for {picture.mode} samples")
        if space != "RGB":
            return profile
        probes = Image.frombytes("RGB", (len(SRGB_PROBES), 1), bytes(v for c in SRGB_PROBES for v in c))
        seen = ImageCms.profileToProfile(probes, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        if not quiet:
            log.warning(PROFILE_UNUSABLE, source, exc)
        return None
    assert seen is not None  # None only when converting in place
    shifts = (abs(a - b) for a, b in zip(seen.tobytes(), probes.tobytes(), strict=True))
    return None if max(shifts) <= 1 else profile


def in_srgb(picture: Image.Image, profile: ImageCms.ImageCmsProfile, source: Path) -> Image.Image:
    """``picture`` (of ``source``) in sRGB, as a viewer shows it: converted by littleCMS from ``profile``
    (``colour_profile``), as RGB, or RGBA when it has alpha (kept as it is). A conversion littleCMS
    refuses is logged, and the values are taken as sRGB."""
    from PIL import ImageCms  # noqa: PLC0415  (only pictures with a profile need it)

    if picture.mode in ("P", "PA"):
        picture = picture.convert("RGBA" if picture.has_transparency_data else "RGB")
    alpha = picture.getchannel("A") if "A" in picture.getbands() else None
    samples = SPACE_MODES[profile.profile.xcolor_space.strip()]
    try:
        colour = picture if picture.mode == samples else picture.convert(samples)
        converted = ImageCms.profileToProfile(
            colour, profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        log.warning(PROFILE_UNUSABLE, source, exc)
        converted = picture.convert("RGB")
    assert converted is not None  # None only when converting in place
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


#: ffprobe's stream fields of the colour tags, in ``ColourTags``'s order.
COLOUR_KEYS = ("color_space", "color_transfer", "color_primaries", "color_range")


def _is_image(data: dict[str, object]) -> bool:
    """Whether ffprobe read a still image (an image demuxer: ``png_pipe``, ``image2``, ...)."""
    fmt = data.get("format")
    name = str(fmt.get("format_name", "")) if isinstance(fmt, dict) else ""
    return name.endswith("_pipe") or name == "image2"


#: Orientations that swap width and height (the picture is turned a quarter).
ORIENTATION_SWAPS = {o: o >= 5 for o in UPRIGHT}
#: Pixel formats whose samples are RGB (or grey, or a palette): no matrix to read them by.
_RGB_LIKE = ("rgb", "bgr", "argb", "abgr", "gbr", "gray", "ya", "pal", "monob", "monow", "0rgb", "rgb0")


def is_yuv(pix_fmt: str) -> bool:
    """Whether frames of ``pix_fmt`` hold YUV, which a matrix turns into RGB."""
    return bool(pix_fmt) and not pix_fmt.startswith(_RGB_LIKE)


def to_rgb(info: VisualInfo) -> str:
    """The filter that turns ``info``'s decoded frames into full-range RGB by its colour tags, as players do:
    HDR (PQ, HLG) and BT.2020 through zimg to BT.709, HDR tone-mapped (reference white to SDR white,
    highlights rolled off); other YUV by its matrix, an untagged one by its size (BT.709 from 1280 wide
    or above 576 lines, as HD is made; BT.601 below), in its range (an untagged one limited, unless the
    pixel format is a full-range "yuvj" one). Empty for RGB frames."""
    if not is_yuv(info.pix_fmt):
        return ""
    tags = info.colour
    full = tags.range == "pc" or (not tags.range and info.pix_fmt.startswith("yuvj"))
    if tags.wide:
        return wide_to_rgb(tags, full)
    hd = (
        info.width >= 1280 or info.height > 576
        if not ORIENTATION_SWAPS[info.orientation]
        else (info.height >= 1280 or info.width > 576)
    )
    matrix = SWSCALE_MATRICES.get(tags.matrix, "bt709" if hd else "smpte170m")
    out = "rgba" if info.has_alpha else "rgb24"
    return f"scale=in_color_matrix={matrix}:in_range={'pc' if full else 'tv'}:out_range=pc,format={out}"


def wide_to_rgb(tags: ColourTags, full: bool) -> str:
    """zimg's (``zscale``) conversion of an HDR or BT.2020 picture to BT.709 RGB: to linear light (reference
    white as 1.0), to BT.709 primaries, tone-mapped when HDR, then BT.709's transfer."""
    known = (*HDR_TRANSFERS, "bt709", "bt2020-10", "bt2020-12")
    transfer = tags.transfer if tags.transfer in known else "bt709"
    matrix = tags.matrix if tags.matrix in ("bt2020nc", "bt2020c", "bt709") else "bt2020nc"
    primaries = "bt2020" if tags.primaries in ("", "bt2020") else tags.primaries
    read = f"zscale=tin={transfer}:min={matrix}:pin={primaries}:rin={'full' if full else 'limited'}"
    linear = f"{read}:t=linear:npl={REFERENCE_WHITE_NITS},format=gbrpf32le,zscale=p=bt709"
    tone = f",tonemap=tonemap=mobius:param={TONE_MAP_KNEE}:desat=0" if tags.hdr else ""
    return f"{linear}{tone},zscale=t=bt709:m=bt709:r=full,format=gbrp,format=rgb24"


def _image_tags(path: Path) -> tuple[int, bool]:
    """An image file's EXIF orientation (1..8; 1 for none) and whether it carries an ICC profile that
    makes its colours other than sRGB's (``colour_profile``: va decodes it, ``decoded_picture``), read in
    one opening by Pillow (JPEG, PNG, WebP, TIFF); (1, False) for a file Pillow does not know."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415  (only images need it)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(path) as image:
                value = image.getexif().get(0x0112, 1)
                profiled = "icc_profile" in image.info and colour_profile(image, path, quiet=True) is not None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return 1, False
    return (value if isinstance(value, int) and value in UPRIGHT else 1), profiled


def check_complete(info: AudioInfo, decoded_seconds: float) -> None:
    """Refuse audio that decodes to far less than its header promises: a truncated or damaged file.

    A duration ffmpeg only estimated from the bit rate (``duration_estimated``) promises nothing: what
    decodes is the length. Other headers of VBR files without an index only estimate their length, so
    a shortfall up to a fifth of the length (or one second) is accepted.
    """
    if decoded_seconds <= 0:
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"no audio could be decoded from {info.path}")
    if info.duration_estimated:
        return
    missing = info.duration_seconds - decoded_seconds
    if missing > max(1.0, 0.2 * info.duration_seconds):
        raise VaError(
            ExitCode.UNSUPPORTED_FORMAT,
            f"truncated or damaged audio: its header says {info.duration_seconds:.2f} s "
            f"but only {decoded_seconds:.2f} s decode: {info.path}",
        )


#: WAVE format tags of plain samples (PCM, float, A-law, mu-law, extensible), whose length is their size
#: over channels x bytes a sample x rate: the header's ``byte_rate`` is not read (writers get it wrong).
WAV_SAMPLE_FORMATS = frozenset({1, 3, 6, 7, 0xFFFE})


@dataclass(frozen=True)
class WavLayout:
    """What a RIFF/WAVE file's chunks say: bytes a second of its samples (0 where they are compressed),
    the size its data chunk declares, and what the file holds after that chunk (its size, its first bytes)."""

    bytes_per_second: int
    data_size: int
    after_size: int
    after: bytes
    #: The ``fmt `` chunk's figures (0 where it has none before the data): the format (an extensible
    #: one's sub-format), channels, samples a second and bits a sample; where the data starts.
    format_tag: int = 0
    channels: int = 0
    sample_rate: int = 0
    bits: int = 0
    data_start: int = 0

    @property
    def open_size(self) -> bool:
        """Whether the header leaves the size open (a streamed or unfinished WAV: 0 or all ones)."""
        return self.data_size in (0, 0xFFFFFFFF)

    @property
    def overrun(self) -> bool:
        """Whether the file goes on past its data chunk with what no chunk could be (a four-letter ASCII
        name and a size that fits): samples the header leaves out, as a recorder that stopped updating
        it leaves them. ffmpeg would drop them without a word."""
        if self.open_size or self.after_size == 0:
            return False
        name, size = self.after[:4], int.from_bytes(self.after[4:8], "little")
        chunk = len(self.after) == 8 and all(0x20 <= byte <= 0x7E for byte in name)
        return not (chunk and 8 + size <= self.after_size + 1)


def wav_layout(path: Path) -> WavLayout | None:
    """The chunks of a RIFF/WAVE file; None for other files."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
        file_size = os.fstat(handle.fileno()).st_size
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        offset, per_second, found = 12, 0, (0, 0, 0, 0)
        while offset + 8 <= len(head):
            chunk, size = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
            if chunk == b"fmt " and offset + 24 <= len(head):
                tag, channels, rate = (
                    int.from_bytes(head[offset + a : offset + b], "little")
                    for a, b in ((8, 10), (10, 12), (12, 16))
                )
                bits = int.from_bytes(head[offset + 22 : offset + 24], "little")
                per_second = channels * ((bits + 7) // 8) * rate if tag in WAV_SAMPLE_FORMATS else 0
                found = (_sub_format(head[offset + 8 : offset + 8 + size], tag), channels, rate, bits)
            if chunk == b"data":
                end = offset + 8 + size + (size % 2)  # a chunk of odd size is followed by a pad byte
                handle.seek(end)
                after = handle.read(8)
                return WavLayout(per_second, size, max(0, file_size - end), after, *found, offset + 8)
            offset += 8 + size + (size % 2)
    return None


#: WAVE_FORMAT_EXTENSIBLE: the format is the first two bytes of the sub-format GUID that follows.
WAV_EXTENSIBLE = 0xFFFE
#: The rest of the GUID of a sub-format that is a plain WAVE format tag (KSDATAFORMAT_SUBTYPE_PCM's, ...).
WAV_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def _sub_format(fmt: bytes, tag: int) -> int:
    """A ``fmt `` chunk's format: its tag, or an extensible one's sub-format (0: one of no WAVE tag)."""
    if tag != WAV_EXTENSIBLE:
        return tag
    if len(fmt) < 40 or fmt[26:40] != WAV_GUID_TAIL:
        return 0
    return int.from_bytes(fmt[24:26], "little")


#: ffmpeg's names of plain samples in a WAV, by format tag (1: integer PCM, 3: float) and bits a sample.
WAV_CODECS = {
    (1, 8): "pcm_u8",
    (1, 16): "pcm_s16le",
    (1, 24): "pcm_s24le",
    (1, 32): "pcm_s32le",
    (3, 32): "pcm_f32le",
    (3, 64): "pcm_f64le",
}


def wav_audio(path: Path) -> AudioInfo | None:
    """A plain WAV's audio as ffprobe reads it, from its header alone (no process started): PCM or float
    samples, all of the data size the header declares in the file. None for anything else (another
    format, a header that leaves the size open or counts fewer or more samples than the file holds, an
    unreadable file): ffprobe is asked."""
    try:
        layout = wav_layout(path)
    except OSError:
        return None
    if layout is None or layout.open_size or layout.overrun or layout.sample_rate <= 0:
        return None
    codec = WAV_CODECS.get((layout.format_tag, layout.bits))
    if codec is None or not 1 <= layout.channels <= 64:
        return None
    if layout.data_start + layout.data_size > path.stat().st_size:
        return None  # cut short: ffprobe estimates its length, and says so
    samples = layout.data_size * 8 // (layout.channels * layout.bits)
    # Rounded as ffprobe prints it.
    seconds = round(samples / layout.sample_rate, 6)
    return AudioInfo(path, codec, layout.sample_rate, layout.channels, seconds)


def wav_header_seconds(path: Path) -> float | None:
    """The length a RIFF/WAVE file's header promises (data chunk size over the samples' bytes a second);
    None for other files, compressed WAVs and streamed WAVs whose header leaves the size open. ffprobe
    measures a WAV by its file size, so a file cut short is only caught by its header."""
    layout = wav_layout(path)
    if layout is None or layout.bytes_per_second <= 0 or layout.open_size:
        return None
    return layout.data_size / layout.bytes_per_second


def check_wav_complete(path: Path, decoded_seconds: float) -> None:
    """A WAV whose data is shorter than its header says (a copy cut short) is refused, with both figures."""
    promised = wav_header_seconds(path)
    if promised is not None and promised - decoded_seconds > 0.05:
        raise VaError(
            ExitCode.UNSUPPORTED_FORMAT,
            f"truncated audio: its WAV header says {promised:.2f} s but only {decoded_seconds:.2f} s "
            f"decode: {path}",
        )


def decoded_duration(path: Path, stream: str = "a") -> float:
    """Seconds that actually decode from the first audio (``a``) or video (``v``) stream; writes nothing."""
    argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-nostats", *input_file(path)]
    argv += ["-map", f"0:{stream}:0", "-progress", "pipe:1", "-f", "null", "-"]
    kind = "audio file" if stream == "a" else "video"
    done = _run(argv, failure=ExitCode.UNSUPPORTED_FORMAT, what=f"not a decodable {kind}: {path}")
    times = [line.split("=", 1)[1] for line in done.stdout.splitlines() if line.startswith("out_time_us=")]
    usable = [int(t) for t in times if t.strip().lstrip("-").isdigit()]
    return max(usable, default=0) / 1e6


def colour_names() -> frozenset[str]:
    """The colour names this ffmpeg knows (``ffmpeg -colors``), lower case."""
    path = executable("ffmpeg")
    return COLOUR_NAMES.made(identity_of(path), lambda: _ask_colour_names(path))


def _ask_colour_names(path: str) -> frozenset[str]:
    # With its banner, whose first line is -version's: the plan's tool versions then start no ffmpeg.
    done = _run([path, "-colors"], failure=ExitCode.DEPENDENCY_MISSING, what="ffmpeg -colors failed")
    version = _version_line(done.stderr)
    if version is not None:
        TOOL_VERSIONS.keep(identity_of(path), version)
    names = (line.split()[0].lower() for line in done.stdout.splitlines()[1:] if line.strip())
    return frozenset(names)


def check_colour(value: str, field: str) -> None:
    """A colour is ``#rrggbb`` or a name ffmpeg knows; anything else is refused, naming the field."""
    if value.startswith("#") or value.lower() in colour_names():
        return
    raise VaError(
        ExitCode.VALIDATION_FAILED,
        f"{field}: {value!r} is not a colour ffmpeg knows (a name such as black, white, gray, or #rrggbb)",
    )


def even_size(width: int, height: int) -> tuple[int, int]:
    """A picture size H.264 in yuv420p takes: each side made even (down), at least 2."""
    return max(2, width - width % 2), max(2, height - height % 2)


#: The largest frame of H.264 (level 6.2, the highest: 139,264 macroblocks of 16x16 pixels, e.g. 8192x4352).
#: x264 encodes a larger one with a warning, and players refuse it or fail on it.
H264_MAX_MACROBLOCKS = 139_264


def largest_frame(width: int, height: int) -> tuple[int, int]:
    """``width`` x ``height`` itself when H.264 can carry it, else the largest even size of its aspect
    that it can (an 8000x8000 start becomes 5968x5968, 8192x8192 too)."""
    if math.ceil(width / 16) * math.ceil(height / 16) <= H264_MAX_MACROBLOCKS:
        return width, height
    scale = math.sqrt(H264_MAX_MACROBLOCKS * 256 / (width * height))
    fitted = even_size(int(width * scale), int(height * scale))
    while math.ceil(fitted[0] / 16) * math.ceil(fitted[1] / 16) > H264_MAX_MACROBLOCKS:
        scale = min((fitted[0] - 2) / width, (fitted[1] - 2) / height)
        fitted = even_size(int(width * scale), int(height * scale))
    return fitted


def plan_geometry(
    source_width: int,
    source_height: int,
    width: int | None,
    height: int | None,
    fit: str,
    *,
    display: str = "",
) -> FrameGeometry:
    """Output size and the scale/crop filter for a start frame, of the source's displayed size; the
    filter starts with ``display`` (``VisualInfo.display_filter``: the frame as decoded made the picture
    as displayed, upright, in RGB).

    Without a requested size the source size is kept, and an odd width or height loses its last
    column or row (a crop, so no pixel is resampled); a source larger than H.264 can carry
    (``largest_frame``) is scaled down to fit it. With a requested size the frame is scaled to fit
    inside it and centred on the background (``contain``) or scaled to cover it and centre-cropped
    (``cover``).
    """
    first = f"{display}," if display else ""
    if width is None or height is None:
        fitted = largest_frame(source_width, source_height)
        if fitted != (source_width, source_height):
            width, height = fitted
            chain = f"scale={width}:{height}:force_original_aspect_ratio=decrease,setsar=1"
            return FrameGeometry(width, height, first + chain)
        even_w, even_h = even_size(source_width, source_height)
        if source_width < 2 or source_height < 2:  # a 1 px side is doubled (2 px is the least H.264 takes)
            crop = f"crop={min(source_width, even_w)}:{min(source_height, even_h)}:0:0"
            chain = f"{first}{crop},scale={even_w}:{even_h}:flags=neighbor,setsar=1"
            return FrameGeometry(even_w, even_h, chain)
        return FrameGeometry(even_w, even_h, f"{first}crop={even_w}:{even_h}:0:0,setsar=1")
    if fit == "cover":
        chain = f"scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height},setsar=1"
    else:
        chain = f"scale={width}:{height}:force_original_aspect_ratio=decrease,setsar=1"
    return FrameGeometry(width, height, first + chain)


def fit_filter(canvas: Canvas, source: tuple[int, int] | None = None) -> str:
    """The filter chain that brings frames of any size to exactly the canvas's size, whatever size a
    tool returned. A source at most one pixel larger (an odd side made even) is cropped, so no pixel is
    resampled; any other is scaled by the canvas's ``fit`` (``contain`` pads with the background)."""
    width, height = canvas.size
    if source is not None and 0 <= source[0] - width <= 1 and 0 <= source[1] - height <= 1:
        return f"crop={width}:{height}:0:0,setsar=1"
    if canvas.fit == "cover":
        return f"scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height},setsar=1"
    return (
        f"scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color={canvas.background},setsar=1"
    )


def render_still(
    source: Path,
    target: Path,
    geometry: FrameGeometry,
    background: str,
    probe: VisualInfo | None = None,
) -> None:
    """Write the first frame of ``source`` as an RGB PNG of the planned size, alpha flattened
    (``probe``: the source's ``probe_visual`` when it was made already, the plan's).

    Its memory is bounded by the frame's sizes: a JPEG at least twice the still's size is decoded
    scaled down by its DCT (``-lowres``, by 2, 4 or 8; an 8000x8000 start made a 1280x720 still in
    369 MB, now 94 MB), a picture va decodes itself (HEIF; an ICC profile other than sRGB) is reduced
    as it is decoded (``decoded_picture``), and an opaque frame is padded onto the background, not laid
    over a frame of it (an 8000x8000 still took 1.67 GB, now 0.54 GB)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    info = probe or probe_visual(source)
    size = f"{geometry.width}:{geometry.height}"
    if info.has_alpha:
        graph = (
            f"color=c={background}:s={geometry.width}x{geometry.height}:d=1,format=rgb24[bg];"
            f"[0:v:0]{geometry.filter},format=rgba[fg];"
            "[bg][fg]overlay=x=(W-w)/2:y=(H-h)/2:format=auto:shortest=1,format=rgb24[still]"
        )
    else:
        graph = (
            f"[0:v:0]{geometry.filter},format=rgb24,pad={size}:(ow-iw)/2:(oh-ih)/2:color={background}[still]"
        )
    # The geometry's filter turns the frame upright itself (an image's EXIF orientation too, which
    # ffmpeg 5.1 applies to a JPEG only): ffmpeg's own turning is off.
    shrink = shrink_factor(info, geometry) if info.decoded_by_va else 1
    with scratch_folder(target) as scratch, ffmpeg_readable(source, scratch, shrink=shrink) as readable:
        argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y", "-noautorotate"]
        argv += [*_scaled_decode(info, geometry), *input_file(readable)]
        argv += ["-filter_complex", graph, "-map", "[still]", "-frames:v", "1", "-update", "1"]
        what = f"cannot read a frame of {source}"
        _run([*argv, str(target)], failure=ExitCode.UNSUPPORTED_FORMAT, what=what)
    if not target.exists() or target.stat().st_size == 0:
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"no frame could be decoded from {source}")


#: The most a JPEG's DCT decoding scales a picture down: 2 ** 3, an eighth of each side.
LOWRES_STEPS = 3


def shrink_factor(info: VisualInfo, geometry: FrameGeometry) -> int:
    """How many times smaller each side of ``info``'s picture may be decoded for ``geometry``: the largest
    whole factor that leaves each side at least the still's, so the scale that follows only shrinks,
    where the geometry's filter only scales the picture (square pixels, no crop of its own size first);
    1 otherwise."""
    scaling = "force_original_aspect_ratio" in geometry.filter
    crops_first = geometry.filter.find("crop=") != -1 and geometry.filter.find(
        "crop="
    ) < geometry.filter.find("force_original_aspect_ratio")
    if info.pixel_aspect != (1, 1) or not scaling or crops_first:
        return 1
    return max(1, min(info.width // geometry.width, info.height // geometry.height))


def _scaled_decode(info: VisualInfo, geometry: FrameGeometry) -> list[str]:
    """``-lowres K`` for a JPEG ffmpeg reads itself, decoded at 1/2**K of each side: the largest K (at
    most ``LOWRES_STEPS``) within its ``shrink_factor``."""
    if info.codec != "mjpeg" or info.decoded_by_va:
        return []
    steps = min(LOWRES_STEPS, shrink_factor(info, geometry).bit_length() - 1)
    return ["-lowres", str(steps)] if steps else []


@dataclass(frozen=True)
class LoudnessTarget:
    """An EBU R128 target: integrated loudness (LUFS) and the highest true peak (dBTP)."""

    target_lufs: float
    true_peak_db: float


@dataclass(frozen=True)
class Loudness:
    """What ffmpeg's ``loudnorm`` measured of a file: integrated loudness (LUFS), true peak (dBTP),
    loudness range (LU) and the gate's threshold (LUFS)."""

    integrated_lufs: float
    true_peak_db: float
    range_lu: float
    threshold_lufs: float


#: loudnorm's own default loudness range target (LU), kept unless the input's range is wider.
LOUDNESS_RANGE_LU = 7.0
#: EBU R128's absolute gate (LUFS): nothing quieter counts as loudness.
LOUDNESS_GATE_LUFS = -70.0
#: How far below the target's true peak the limiter holds the peaks (dB): room for the small gain
#: loudnorm adds after it, to make up the loudness the limiter took.
LIMITER_MARGIN_DB = 0.5
#: Passes that look for the limiter's gain before loudnorm's dynamic mode is left to do it.
LIMITER_PASSES = 6


@dataclass(frozen=True)
class LoudnessFit:
    """How the voice reaches a loudness target: loudnorm's second pass, given the first pass's figures
    (``measured``, with its proposed ``offset_lu``). Where a linear gain to the target would lift the
    true peak above the target's, a gain of ``limiter_gain_db`` and a true-peak limiter (at 192 kHz, as
    loudnorm measures true peak) come first, and ``measured`` are the figures of the limited voice, so
    loudnorm's gain stays linear and lands on the target. ``voice``: the figures of the voice as it is."""

    target: LoudnessTarget
    voice: Loudness
    measured: Loudness
    offset_lu: float
    limiter_gain_db: float | None = None

    @property
    def range_lu(self) -> float:
        """The loudness range allowed: at least the input's own, so a linear gain stays possible (loudnorm
        compresses whatever exceeds its range target); loudnorm takes 1 to 50."""
        return min(50.0, max(LOUDNESS_RANGE_LU, math.ceil(self.measured.range_lu * 10) / 10))

    @property
    def measurable(self) -> bool:
        """Whether the voice has a loudness at all: silence, or less than one 400 ms gating block of
        sound, measures none (-inf, kept as -99), and is left as it is."""
        return self.voice.integrated_lufs > LOUDNESS_GATE_LUFS

    @property
    def linear(self) -> bool:
        """Whether loudnorm applies one linear gain, as it decides (libavfilter/af_loudnorm.c): the gain
        leaves the true peak at or below the target's and the input's range fits the range target (and
        a first pass's figures are given: loudnorm takes its defaults, a threshold of -70 and an
        integrated loudness or range of 0, for figures not given). Otherwise it normalizes dynamically."""
        m, target = self.measured, self.target
        gain = target.target_lufs - m.integrated_lufs
        given = (
            self.measurable and m.true_peak_db != 99 and m.threshold_lufs != -70 and m.integrated_lufs != 0
        )
        return given and m.true_peak_db + gain <= target.true_peak_db and m.range_lu <= self.range_lu

    @property
    def normalization(self) -> str:
        """``linear`` (one gain), ``limited`` (a gain, the limiter, one gain), ``dynamic`` (loudnorm's
        own dynamic mode, where no limiter gain was found) or ``none`` (the voice has no loudness)."""
        if not self.measurable:
            return "none"
        if not self.linear:
            return "dynamic"
        return "linear" if self.limiter_gain_db is None else "limited"

    @property
    def filter(self) -> str:
        """The filter chain: the limiter when there is one, then loudnorm given the figures of its input.
        A range of 0 (a steady tone) is given as 0.01: loudnorm reads 0 as "not measured" and would not
        stay linear. loudnorm takes no figure above 0 LUFS (a voice that loud is refused as "out of range"),
        so such a voice is first turned down by the excess, and loudnorm given its figures as turned down."""
        m = self.measured
        excess = max(0.0, m.integrated_lufs, m.threshold_lufs)
        loudnorm = (
            f"loudnorm=I={self.target.target_lufs}:TP={self.target.true_peak_db}:LRA={self.range_lu}"
            f":measured_I={m.integrated_lufs - excess:.2f}:measured_TP={m.true_peak_db - excess:.2f}"
            f":measured_LRA={m.range_lu or 0.01}:measured_thresh={m.threshold_lufs - excess:.2f}"
            f":offset={self.offset_lu}:linear=true:print_format=none"
        )
        if excess:
            loudnorm = f"volume=-{excess:.2f}dB:precision=float,{loudnorm}"
        if self.limiter_gain_db is None:
            return loudnorm
        return f"{true_peak_limiter(self.limiter_gain_db, self.target.true_peak_db)},{loudnorm}"


def true_peak_limiter(gain_db: float, true_peak_db: float) -> str:
    """A gain, then a limiter that holds the peaks ``LIMITER_MARGIN_DB`` under ``true_peak_db``: at
    192 kHz, where the sample peaks are the true peaks within a fraction of a dB, its delay compensated."""
    ceiling = 10 ** ((true_peak_db - LIMITER_MARGIN_DB) / 20)
    return (
        f"volume={gain_db:.3f}dB:precision=float,aresample=192000,"
        f"alimiter=limit={ceiling:.6f}:attack=1:release=50:level=disabled:latency=1"
    )


def _loudnorm_report(stderr: str, source: Path) -> dict[str, str]:
    """The JSON block ``loudnorm`` (print_format=json) writes last on stderr."""
    start, end = stderr.rfind("{"), stderr.rfind("}")
    try:
        report: dict[str, str] = json.loads(stderr[start : end + 1]) if 0 <= start < end else {}
    except json.JSONDecodeError:
        report = {}
    if "input_i" not in report:
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"loudness could not be measured: {source}")
    return report


def _figure(report: dict[str, str], name: str) -> float:
    """One figure of a loudnorm report; silence measures -inf, kept as loudnorm's floor, -99."""
    value = _float(report.get(name))
    return -99.0 if value is None or math.isinf(value) or math.isnan(value) else value


def measure_loudness(
    source: Path,
    target: LoudnessTarget,
    *,
    chain: str | None = None,
    window: tuple[float, float] | None = None,
) -> tuple[Loudness, float]:
    """A first pass of ``loudnorm`` over the first audio stream of ``source`` (after the filters of
    ``chain``; only the ``window`` (start, seconds) when given): its figures, and the offset it proposes."""
    settings = f"I={target.target_lufs}:TP={target.true_peak_db}:LRA={LOUDNESS_RANGE_LU}"
    measure = f"loudnorm={settings}:print_format=json"
    argv = [executable("ffmpeg"), "-nostdin", "-hide_banner", "-nostats"]
    if window is not None:
        argv += ["-ss", f"{window[0]:.6f}", "-t", f"{window[1]:.6f}"]
    argv += [*input_file(source), "-map", "0:a:0", "-af", f"{chain},{measure}" if chain else measure]
    done = _run(
        [*argv, "-f", "null", "-"],
        failure=ExitCode.UNSUPPORTED_FORMAT,
        what=f"cannot measure the loudness of {source}",
    )
    report = _loudnorm_report(done.stderr, source)
    figures = Loudness(
        integrated_lufs=_figure(report, "input_i"),
        true_peak_db=_figure(report, "input_tp"),
        range_lu=max(0.0, _figure(report, "input_lra")),
        threshold_lufs=_figure(report, "input_thresh"),
    )
    return figures, _float(report.get("target_offset")) or 0.0


def fit_loudness(source: Path, target: LoudnessTarget, probe: AudioInfo | None = None) -> LoudnessFit:
    """Measure the voice as ``pad_audio`` decodes it (``decode_voice``: a 5.1 voice downmixed to stereo) and
    find how it reaches ``target``: a linear gain when its peaks allow one,
    else the gain before a true-peak limiter after which loudnorm's remaining gain is linear. The limiter
    takes loudness as it takes peaks, so the gain is searched (secant steps on the measured loudness),
    aiming half the margin under the target, until the rest fits under the margin. ``probe``: the voice's
    ``probe_audio`` when it was made already."""
    decoded = decode_voice(probe or probe_audio(source))  # measured as pad_audio decodes it: what is encoded
    voice, offset = measure_loudness(source, target, chain=decoded)
    fit = LoudnessFit(target, voice, voice, offset)
    if fit.linear or not fit.measurable:
        return fit
    aim = target.target_lufs - LIMITER_MARGIN_DB / 2
    gain, tried = aim - voice.integrated_lufs, (0.0, voice.integrated_lufs)
    for _ in range(LIMITER_PASSES):
        limiter = true_peak_limiter(gain, target.true_peak_db)
        limited, offset = measure_loudness(source, target, chain=f"{decoded},{limiter}")
        candidate = LoudnessFit(target, voice, limited, offset, limiter_gain_db=round(gain, 3))
        if candidate.linear:
            return candidate
        # dB of loudness per dB of gain: 1 without limiting, less the harder the limiter works.
        slope = (limited.integrated_lufs - tried[1]) / (gain - tried[0]) if gain != tried[0] else 1.0
        tried = (gain, limited.integrated_lufs)
        gain += (aim - limited.integrated_lufs) / min(1.0, max(0.05, slope))
    log.warning("no limiter gain found for %s; loudnorm normalizes it dynamically", source)
    return fit


def voice_channels(info: AudioInfo) -> int:
    """Channels of the padded voice: mono stays mono, anything else becomes stereo."""
    return 1 if info.channels == 1 else 2


def decode_voice(info: AudioInfo) -> str:
    """The filter that decodes the voice to what is padded and encoded: 48 kHz, mono or stereo (ffmpeg's
    ITU-R BS.775 downmix: centre and surrounds at -3 dB, the LFE dropped), its gains scaled so those of one
    output channel add up to at most 1 (``rematrix_maxval=1``), so a downmix never peaks above its source.
    ffmpeg scales so only for integer output; a float output (the AAC encoder's) would sum 5.1 up to 7.7 dB
    louder, so the one decode both the WAV and the AAC come from sets it."""
    named = "mono" if voice_channels(info) == 1 else "stereo"
    return f"aresample={AUDIO_SAMPLE_RATE}:ochl={named}:rematrix_maxval=1"


def pad_audio(
    source: Path,
    target: Path,
    pre_seconds: float,
    post_seconds: float,
    *,
    aac: Path | None = None,
    loudness: LoudnessFit | None = None,
    probe: AudioInfo | None = None,
) -> AudioInfo:
    """Decode ``source`` to 16-bit PCM WAV with exact silence before and after it (and, when ``aac``
    is given, the same padded audio encoded to AAC in that ``.m4a``: one decode, split in two). With
    ``loudness`` (a first pass's measurement, made of the same decode) the voice is normalized first, by
    loudnorm's second pass.

    Mono stays mono, anything else becomes stereo (``decode_voice``). The pads are counted in samples, so
    the result is exactly ``pre + input + post`` long, and its duration is read back from the WAV header.
    ``probe``: the source's ``probe_audio`` when it was made already (the plan's). Whether the voice
    decodes as long as its header promises is the plan's check (``va.job``), not this one's: a voice
    replaced since is told by the padded length (``stages.prepare_audio``).
    """
    info = probe or probe_audio(source)
    pre = round(pre_seconds * AUDIO_SAMPLE_RATE)
    post = round(post_seconds * AUDIO_SAMPLE_RATE)
    chain = [decode_voice(info)]
    if loudness and loudness.measurable:
        # loudnorm writes 192 kHz; the resampler after it names the layout too, as ffmpeg 5.1 otherwise
        # fails to negotiate one for a WAV that declares none ("Cannot select channel layout").
        named = "mono" if voice_channels(info) == 1 else "stereo"
        chain += [loudness.filter, f"aresample={AUDIO_SAMPLE_RATE}:ochl={named}"]
    if pre:
        chain.append(f"adelay=delays={pre}S:all=1")
    if post:
        chain.append(f"apad=pad_len={post}")
    target.parent.mkdir(parents=True, exist_ok=True)
    outputs = ["[wav]", "[aac]"] if aac is not None else ["[wav]"]
    split = f",asplit={len(outputs)}{''.join(outputs)}" if aac is not None else "[wav]"
    graph = f"[0:a:0]{','.join(chain)}{split}"
    argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y", *input_file(source)]
    argv += ["-filter_complex", graph, "-map", "[wav]", "-c:a", "pcm_s16le", "-f", "wav", str(target)]
    if aac is not None:
        argv += ["-map", "[aac]", *AAC_OUT, "-f", "ipod", str(aac)]
    _run(argv, failure=ExitCode.UNSUPPORTED_FORMAT, what=f"cannot decode audio {source}")
    return probe_audio(target)


X264_COLOUR = [
    "-color_primaries",
    "bt709",
    "-color_trc",
    "bt709",
    "-colorspace",
    "bt709",
    "-color_range",
    "tv",
]
TO_YUV420 = "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p"
TAGGED_BT709 = "setparams=range=tv:colorspace=bt709:color_primaries=bt709:color_trc=bt709"


def _check_encoded(
    partial: Path,
    target: Path,
    frames: int,
    failure: ExitCode,
    *,
    fps: int | None = None,
    size: tuple[int, int] | None = None,
) -> None:
    """Check a finished file against the plan (its frame count, and its rate and size when given) before
    it is renamed into place (``va.atomic.partial_file``: never half-written, never a wrong one)."""
    encoded = encoded_figures(partial)
    planned = (frames, *(size or (encoded.width, encoded.height)), f"{fps}/1" if fps else encoded.fps)
    if (encoded.frames, encoded.width, encoded.height, encoded.fps) != planned:
        raise VaError(
            failure,
            f"{target.name}: encoded {encoded.frames} frames of {encoded.width}x{encoded.height} at "
            f"{encoded.fps.removesuffix('/1')} fps where {frames} frames of {planned[1]}x{planned[2]} at "
            f"{planned[3].removesuffix('/1')} fps were planned",
        )


def _with_inputs(
    source: list[str], audio: Path | None, subtitles: Path | None, *, picture: str = "0:v:0"
) -> list[str]:
    """The inputs (the picture's arguments, then the audio and the SRT file ``subtitles`` if given) and
    the map of each into the output (the picture: ``picture``, a stream or a filter graph's output):
    every input before the first output option, as ffmpeg wants."""
    argv = [*source]
    argv += [*input_file(audio)] if audio is not None else []
    argv += [*input_file(subtitles)] if subtitles is not None else []
    argv += ["-map", picture]
    argv += ["-map", "1:a:0"] if audio is not None else []
    argv += ["-map", f"{2 if audio is not None else 1}:s:0"] if subtitles is not None else []
    return argv


def _subtitle_out(subtitles: Path | None) -> list[str]:
    """Output arguments of a subtitle track: MP4's own text format."""
    return [] if subtitles is None else ["-c:s", "mov_text", "-metadata:s:s:0", "language=und"]


def _audio_out(audio: Path) -> list[str]:
    """Output arguments for ``audio``: stream copy when it is AAC already, else encode to AAC."""
    return ["-c:a", "copy"] if audio.suffix == AAC_SUFFIX else AAC_OUT


def _x264(preset: str, crf: int, gop: int, *, still: bool) -> list[str]:
    argv = ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]
    # A still's frames are all alike: no lookahead, one thread and one reference frame, so x264 holds a
    # frame or two, not a lookahead's, every thread's and three references' worth (an 8000x8000 still
    # loop took 4.3 GB for 12 frames, 2.2 GB so; a 5968x5968 one 1.63 GB with three references, 1.25 GB
    # with one). Its predicted frames repeat the key frame whatever they may refer to.
    argv += ["-tune", "stillimage", "-rc-lookahead", "0", "-threads", "1", "-refs", "1"] if still else []
    return [*argv, "-bf", "0", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", *X264_COLOUR]


def encode_still_loop(
    still: Path, target: Path, *, fps: int, crf: int, preset: str, size: tuple[int, int] | None = None
) -> None:
    """Encode one key-frame interval (2 s) of ``still`` at ``fps``: the piece a held still is made of
    (checked to be ``size``, when given).

    A still compresses to one key frame and empty predicted frames, so this piece is encoded once and
    stream-copied as often as a video needs (``loop_still``): the cost does not grow with the length.
    """
    gop = KEYFRAME_INTERVAL_SECONDS * fps
    with partial_file(target) as partial:
        argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y", "-loop", "1", "-framerate", str(fps)]
        argv += [*input_file(still), "-frames:v", str(gop), "-vf", TO_YUV420]
        argv += _x264(preset, crf, gop, still=True)
        _run([*argv, *MP4_OUT, str(partial)], failure=ExitCode.ENCODE_FAILED, what=f"encoding {still} failed")
        _check_encoded(partial, target, gop, ExitCode.ENCODE_FAILED, fps=fps, size=size)


def loop_still(
    loop: Path,
    audio: Path | None,
    target: Path,
    *,
    fps: int,
    frames: int,
    no_clobber: bool = False,
    subtitles: Path | None = None,
    size: tuple[int, int] | None = None,
) -> None:
    """Repeat the key-frame interval ``loop`` (from ``encode_still_loop``) to exactly ``frames`` frames,
    stream-copied, with ``audio`` (stream-copied when it is AAC already, else encoded to AAC) and the
    ``subtitles`` file (SRT) as a ``mov_text`` track; the result is checked to be ``size``, when given."""
    gop = KEYFRAME_INTERVAL_SECONDS * fps  # as encode_still_loop made it, and checked there
    # The picture is cut on its input, half a frame after the last frame's start: -frames:v on the
    # output would end the whole file there and drop the audio packets muxed after that point.
    seconds = f"{(frames - 0.5) / fps:.6f}"
    with partial_file(target, no_clobber=no_clobber) as partial:
        argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y"]
        picture = ["-stream_loop", str(math.ceil(frames / gop) - 1), "-t", seconds, *input_file(loop)]
        argv += _with_inputs(picture, audio, subtitles)
        argv += [*(_audio_out(audio) if audio is not None else []), *_subtitle_out(subtitles)]
        argv += ["-c:v", "copy", *MP4_OUT]
        _run([*argv, str(partial)], failure=ExitCode.ENCODE_FAILED, what=f"muxing {target.name} failed")
        _check_encoded(partial, target, frames, ExitCode.ENCODE_FAILED, fps=fps, size=size)


def encode_held_still(
    still: Path,
    audio: Path | None,
    target: Path,
    *,
    fps: int,
    frames: int,
    crf: int,
    preset: str,
) -> None:
    """Encode ``still`` held for exactly ``frames`` frames at ``fps`` (with ``audio``, if given), to MP4.

    The result is written under a temporary name in the target's folder and renamed when complete,
    so ``target`` never exists half-written.
    """
    with scratch_beside(target) as scratch:
        loop = scratch / "loop.mp4"
        encode_still_loop(still, loop, fps=fps, crf=crf, preset=preset)
        loop_still(loop, audio, target, fps=fps, frames=frames)


def video_source(video: Path) -> list[str]:
    """ffmpeg input arguments for a video file."""
    return [*input_file(video)]


def burn_subtitles(subtitles: Path) -> str:
    """The filter that draws the SRT file ``subtitles`` into the picture (libass, DejaVu Sans)."""
    return f"subtitles=filename={filter_path(subtitles)}:force_style='FontName=DejaVu Sans,FontSize=20'"


def filter_path(path: Path) -> str:
    """A file path as a quoted filter option value (a ``:`` or ``,`` in it stays part of the path)."""
    text = str(path)
    if "'" in text:
        raise VaError(
            ExitCode.WORKDIR_UNUSABLE, f"a path with a quote cannot be given to ffmpeg's filters: {path}"
        )
    return f"'{text}'"


def detect_shake(video: Path, transforms: Path, *, shakiness: int, accuracy: int) -> None:
    """vidstab's first pass: the camera's motion in ``video``, frame by frame, written to ``transforms``."""
    transforms.parent.mkdir(parents=True, exist_ok=True)
    detect = f"vidstabdetect=shakiness={shakiness}:accuracy={accuracy}:result={filter_path(transforms)}"
    argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y", *input_file(video)]
    argv += ["-vf", detect, "-f", "null", "-"]
    _run(argv, failure=ExitCode.ENCODE_FAILED, what=f"vidstabdetect on {video} failed")


def still_source(still: Path, fps: int) -> list[str]:
    """ffmpeg input arguments that repeat the image ``still`` at ``fps`` (cut to length by the filters)."""
    return ["-loop", "1", "-framerate", str(fps), *input_file(still)]


def frames_source(folder: Path, fps: float) -> list[str]:
    """ffmpeg input arguments for numbered frames ``000001.png ...`` at ``fps``."""
    # A "%" of the folder is written "%%": the sequence pattern is only the file name.
    pattern = output_file(folder).replace("%", "%%") + "/%06d.png"
    return ["-framerate", str(fps), "-start_number", "1", "-i", pattern]


def clips_source(clips: list[Path], scratch: Path) -> list[str]:
    """ffmpeg input arguments that play ``clips`` one after the other (concat demuxer)."""
    listing = scratch / "clips.txt"
    quoted = (str(clip.absolute()).replace("'", "'\\''") for clip in clips)
    listing.write_text("".join(f"file '{path}'\n" for path in quoted), encoding="utf-8")
    return ["-f", "concat", "-safe", "0", *input_file(listing)]


def encode_from_video(
    video: Path,
    audio: Path | None,
    target: Path,
    *,
    fps: int,
    frames: int,
    crf: int,
    preset: str,
    no_clobber: bool = False,
    subtitles: Path | None = None,
    canvas: Canvas | None = None,
    tap: PictureTap | None = None,
) -> None:
    """Re-time the picture of ``video`` to exactly ``frames`` frames at constant ``fps`` (with ``audio``),
    and bring it to the ``canvas`` when one is given, whatever size it has (``tap``: ``encode_picture``'s).

    A video that already conforms is stream-copied (e.g. the audiogram's output). One ffprobe tells both
    its size as displayed and whether it conforms.
    """
    probe = probe_video(video)
    source_size = probe.display_size if canvas is not None else None
    size = canvas.size if canvas is not None else None
    conforming = probe.conforms(fps=fps, frames=frames, size=size)
    encode_picture(
        video_source(video),
        audio,
        target,
        fps=fps,
        frames=frames,
        crf=crf,
        preset=preset,
        copy_from=video if conforming else None,
        no_clobber=no_clobber,
        subtitles=subtitles,
        canvas=canvas,
        source_size=source_size,
        tap=tap,
    )


@dataclass(frozen=True, slots=True)
class SeamBlend:
    """Frames of a source blended into the picture ``encode_picture`` selects (a crossfade at the seams of
    joined clips): ``select``, an expression of the source's frame number ``n``, takes as many frames as
    the picture's ``select`` does, each the one blended into the picture's frame of the same position;
    ``blends``: for each weight, the picture frames (an expression of their number ``n``) that keep that
    share of themselves, the rest coming from the blended frame (frames named by no blend are kept whole)."""

    select: str
    blends: tuple[tuple[float, str], ...]


def _blended(select: str, timing: str, blend: SeamBlend) -> str:
    """The filters that take the picture's frames (``select``) and blend ``blend``'s frames into them at
    the positions and weights it names (ffmpeg's blend in its normal mode: picture * share + other *
    (1 - share), on frames a blend's ``enable`` names, others passed whole)."""
    count = len(blend.blends)
    copies = "".join(f"[other{i}]" for i in range(count))
    parts = [
        "split[picture][other]",
        f"[picture]select='{select}',{timing}null[mixed0]",
        f"[other]select='{blend.select}',{timing}split={count}{copies}",
    ]
    for i, (share, frames) in enumerate(blend.blends):
        end = "" if i == count - 1 else f"[mixed{i + 1}]"
        sep = ";" if end else ""
        parts.append(
            f"[mixed{i}][other{i}]blend=all_mode=normal:all_opacity={share:.6f}:enable='{frames}'{end}{sep}"
        )
    return ";".join(parts[:3]) + ";" + "".join(parts[3:]) + ","


@dataclass(frozen=True, slots=True)
class PictureTap:
    """The frames of an encode's picture as it encodes them, for analysis: each frame cut to ``crop`` as
    grey (``grey_frames``' luma), handed to ``take`` as a stream, so nothing decodes the video again."""

    crop: Crop
    take: Callable[[Iterator[GreyFrame]], None]


def _grey_window(crop: Crop) -> str:
    """The filters that make ``grey_frames``' frames of a picture: its window, its luma, scaled. The range
    is pinned: a frame tagged limited range would otherwise be stretched to full range on the way to grey
    (half of these filters' time, and values that are no longer the stored ones)."""
    window = f"crop={crop.width}:{crop.height}:{crop.x}:{crop.y}:exact=1,{LUMA_PLANE}"
    scale = f"scale={crop.out_width}:{crop.out_height}:flags=area:in_range=tv:out_range=tv"
    return f"{window},{scale},format=gray"


def _encode_tapped(argv: list[str], tap: PictureTap, target: Path) -> None:
    """Run the encode ``argv`` (ending with the file it writes, its graph's grey frames labelled ``[grey]``)
    with those frames sent to its standard output too, handing them to ``tap`` as they come; the encode
    runs to its end whatever ``tap`` reads."""
    size = tap.crop.out_width * tap.crop.out_height
    tapped = [*argv, "-map", "[grey]", "-f", "rawvideo", "pipe:1"]
    what = f"encoding {target.name} failed"
    blocks = _grey_blocks(tapped, size, what, ExitCode.ENCODE_FAILED, written=argv[-1])
    with contextlib.closing(blocks):
        grey = (GreyFrame(tap.crop.out_width, tap.crop.out_height, b, n) for n, b in enumerate(blocks))
        tap.take(grey)
        for _ in blocks:  # what the taker left: the encode still needs its frames written
            pass


def encode_picture(
    source: list[str],
    audio: Path | None,
    target: Path,
    *,
    fps: int,
    frames: int,
    crf: int,
    preset: str,
    copy_from: Path | None = None,
    retime: float | None = None,
    no_clobber: bool = False,
    picture_filter: str = "",
    drawn_filter: str = "",
    subtitles: Path | None = None,
    canvas: Canvas | None = None,
    source_size: tuple[int, int] | None = None,
    select: str = "",
    blend: SeamBlend | None = None,
    tap: PictureTap | None = None,
) -> None:
    """Encode a picture source (ffmpeg input arguments) to exactly ``frames`` frames at constant ``fps``.

    ``select``: an ffmpeg expression of the source's frame number ``n`` saying which of its frames are
    taken (the rest are left out before anything else); ``blend`` (with ``select``): other frames of the
    source blended into some of those (a crossfade). Frames are dropped or repeated to the output
    rate; a picture that ends early holds its last frame.
    With ``retime``, the source's own timestamps are replaced: its frames follow each other at that rate
    (clips whose container says another rate than the frames were generated at).
    The audio track, when given, is ``audio`` (the padded voice), never what the source carries.
    ``picture_filter`` (e.g. a camera move) works on the frames at the output rate, in yuv420p.
    ``drawn_filter`` (burnt captions) works on the frames at their final times, once the picture is held
    or cut to its length: what it draws at a time is on that frame of the result, whatever the source's.
    ``subtitles`` (an SRT file) becomes a ``mov_text`` track.
    With a ``canvas``, frames of any size are brought to its size (``fit_filter``; ``source_size``, when
    known, lets a source one pixel larger be cropped instead of scaled), and the result is checked for it.
    ``tap`` gets the encoded picture's frames as the encode makes them, from the same decode (a
    stream-copied source's are decoded for it). ``copy_from``: the source's file when it conforms
    already (``VideoProbe.conforms``): it is stream-copied, not encoded again.
    """
    gop = KEYFRAME_INTERVAL_SECONDS * fps
    size = canvas.size if canvas is not None else None
    with partial_file(target, no_clobber=no_clobber) as partial:
        head = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y"]
        argv = [*head, *_with_inputs(source, audio, subtitles)]
        audio_out = [*(_audio_out(audio) if audio else []), *_subtitle_out(subtitles)]
        if copy_from is not None:
            _run(
                [*argv, "-c:v", "copy", *audio_out, *MP4_OUT, str(partial)],
                failure=ExitCode.ENCODE_FAILED,
                what=f"muxing {copy_from} failed",
            )
            _check_encoded(partial, target, frames, ExitCode.ENCODE_FAILED, fps=fps, size=size)
            if tap is not None:
                with contextlib.closing(grey_frames(copy_from, crop=tap.crop)) as copied:
                    tap.take(copied)
            return
        # The picture is cut to length in the filter graph: -frames:v would also end the audio early,
        # by as many frames as the encoder holds in its lookahead.
        timing = f"setpts=N/({retime:g}*TB)," if retime else ""
        # The frames say what TO_YUV420 made of them, or the closing TO_YUV420 takes them for BT.601.
        picture = f"{TO_YUV420},{picture_filter},{TAGGED_BT709}," if picture_filter else ""
        fit = f"{fit_filter(canvas, source_size)}," if canvas is not None else ""
        drawn = f"{TO_YUV420},{drawn_filter},{TAGGED_BT709}," if drawn_filter else ""
        ending = f"tpad=stop_mode=clone:stop=-1,trim=end_frame={frames},{drawn}{TO_YUV420}"
        chosen = f"select='{select}',{timing}" if select else timing
        if blend is not None:
            chosen = _blended(select, timing, blend)
        chain = f"{chosen}fps={fps},{fit}{picture}{ending}"
        option = "-vf"
        if tap is not None:  # the encoded frames split: one copy to x264, one cut and grey to the pipe
            argv = [*head, *_with_inputs(source, audio, subtitles, picture="[encoded]")]
            chain = f"[0:v:0]{chain},split[encoded][tapped];[tapped]{_grey_window(tap.crop)}[grey]"
            # One thread, as -vf's graph runs: its slice threads cost more than the tap's filters.
            argv += ["-filter_complex_threads", "1"]
            option = "-filter_complex"
        if len(chain) > LONGEST_ARGUMENT:  # a join of thousands of clips: the system limits one argument
            script = partial.parent / "picture.filter"
            script.write_text(chain, encoding="utf-8")
            argv += ["-filter_complex_script" if tap else "-filter_script:v", str(script)]
        else:
            argv += [option, chain]
        argv += [*_x264(preset, crf, gop, still=False), *audio_out, *MP4_OUT, str(partial)]
        if tap is None:
            _run(argv, failure=ExitCode.ENCODE_FAILED, what=f"encoding {target.name} failed")
        else:
            _encode_tapped(argv, tap, target)
        _check_encoded(partial, target, frames, ExitCode.ENCODE_FAILED, fps=fps, size=size)


@contextmanager
def scratch_beside(target: Path) -> Iterator[Path]:
    """A scratch folder beside ``target`` for inputs of an encode (e.g. a concat list)."""
    with scratch_folder(target.with_name(target.name + ".inputs")) as scratch:
        yield scratch


@dataclass(frozen=True)
class Silence:
    """A stretch of an audio file quieter than the detector's threshold, in seconds from its start."""

    start_seconds: float
    end_seconds: float


def detect_silences(audio: Path, *, noise_db: float, min_seconds: float) -> tuple[Silence, ...]:
    """Every silence of at least ``min_seconds`` below ``noise_db`` in ``audio`` (ffmpeg ``silencedetect``);
    a silence still open at the end closes at the decoded end."""
    argv = [executable("ffmpeg"), "-nostdin", "-hide_banner", "-nostats", "-v", "info", *input_file(audio)]
    argv += ["-map", "0:a:0", "-af", f"silencedetect=noise={noise_db:g}dB:d={min_seconds:g}"]
    argv += ["-progress", "pipe:1", "-f", "null", "-"]
    log.info("%s", shlex.join(argv), extra=COMMAND)
    try:  # not _run: its stderr is one line per silence, hours of speech make thousands
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise VaError(ExitCode.DEPENDENCY_MISSING, f"cannot start {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise VaError(
            ExitCode.UNSUPPORTED_FORMAT, f"not a decodable audio file: {audio}: {_last_line(done.stderr)}"
        )
    times = [line.split("=", 1)[1] for line in done.stdout.splitlines() if line.startswith("out_time_us=")]
    end = max((int(t) for t in times if t.strip().lstrip("-").isdigit()), default=0) / 1e6
    silences, opened = [], None
    for line in done.stderr.splitlines():
        if "silence_start:" in line:
            opened = max(0.0, float(line.split("silence_start:", 1)[1].split()[0]))
        elif "silence_end:" in line and opened is not None:
            silences.append(Silence(opened, float(line.split("silence_end:", 1)[1].split()[0])))
            opened = None
    if opened is not None and end > opened:
        silences.append(Silence(opened, end))
    return tuple(silences)


def cut_audio(
    source: Path,
    target: Path,
    *,
    start_seconds: float,
    seconds: float,
    length_seconds: float,
    sample_rate: int,
    channels: int,
) -> None:
    """``seconds`` of ``source`` from ``start_seconds`` as 16-bit PCM WAV at the rate and channel count a
    tool expects, padded with silence to ``length_seconds`` (a chunk of the voice for a lip-sync tool).
    A negative ``start_seconds`` puts that much silence first (a model's head frames before the voice)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    length = max(length_seconds, seconds)
    lead = round(max(0.0, -start_seconds) * sample_rate)
    delay = f"adelay=delays={lead}S:all=1," if lead else ""
    # The input seek is exact for PCM WAV (a sample's byte offset is known), so a chunk of an hour-long
    # track costs as much as the first one.
    argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y", "-ss", f"{max(0.0, start_seconds):.6f}"]
    argv += ["-t", f"{max(0.0, seconds - lead / sample_rate):.6f}", *input_file(source), "-map", "0:a:0"]
    whole = round(length * sample_rate)
    argv += ["-af", f"aresample={sample_rate},{delay}apad=whole_len={whole},atrim=end_sample={whole}"]
    argv += ["-ar", str(sample_rate), "-ac", str(channels), "-c:a", "pcm_s16le", "-f", "wav", str(target)]
    _run(argv, failure=ExitCode.UNSUPPORTED_FORMAT, what=f"cannot cut audio {source}")


def video_window(video: Path, start_seconds: float) -> list[str]:
    """ffmpeg input arguments for ``video`` from ``start_seconds`` on (an exact seek: ffmpeg decodes from
    the key frame before it and drops the frames before it)."""
    return ["-ss", f"{start_seconds:.6f}", *input_file(video)]


def concat_videos(clips: list[Path], target: Path, *, frames: int, failure: ExitCode) -> None:
    """Join ``clips`` (H.264 made with the same settings) one after the other by stream copy, into a file of
    exactly ``frames`` frames (checked before it is renamed into place)."""
    with partial_file(target) as partial:
        argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y", *clips_source(clips, partial.parent)]
        argv += ["-map", "0:v:0", "-c:v", "copy", *MP4_OUT, str(partial)]
        _run(argv, failure=failure, what=f"joining {len(clips)} clips into {target.name} failed")
        _check_encoded(partial, target, frames, failure)


def render_audiogram(
    video: Path,
    audio: Path,
    target: Path,
    *,
    fps: int,
    frames: int,
    style: str,
    colour: str,
    crf: int,
    preset: str,
) -> None:
    """Overlay an audio-reactive band (``waves`` or ``freqs``) on the lower quarter of ``video``."""
    info = probe_visual(video)
    band_w, band_h = info.width, max(2, (info.height // 4) // 2 * 2)
    if style == "freqs":
        band = f"showfreqs=s={band_w}x{band_h}:mode=bar:ascale=sqrt:colors={colour}"
    else:
        band = f"showwaves=s={band_w}x{band_h}:mode=cline:rate={fps}:colors={colour}"
    graph = (
        f"[1:a]{band},fps={fps},format=rgba,colorkey=black:0.1:0.0[band];"
        f"[0:v]fps={fps},tpad=stop_mode=clone:stop=-1[base];"
        f"[base][band]overlay=x=0:y=H-h:eof_action=pass,trim=end_frame={frames},{TO_YUV420}[v]"
    )
    gop = KEYFRAME_INTERVAL_SECONDS * fps
    with partial_file(target) as partial:
        argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y", *input_file(video), *input_file(audio)]
        argv += ["-filter_complex", graph, "-map", "[v]", "-map", "1:a:0"]
        argv += [*_x264(preset, crf, gop, still=False), *AAC_OUT, *MP4_OUT, str(partial)]
        _run(argv, failure=ExitCode.LIPSYNC_FAILED, what="audiogram rendering failed")
        _check_encoded(partial, target, frames, ExitCode.LIPSYNC_FAILED, fps=fps)


@dataclass(frozen=True)
class VideoProbe:
    """A video as ``encode_from_video`` reads it: the size of its picture as displayed, and its first
    video stream's codec, pixel format, coded size, rates (ffprobe's ``r_frame_rate`` and
    ``avg_frame_rate``) and packets (counted, no decoding: one a frame)."""

    display_size: tuple[int, int]
    codec: str
    pix_fmt: str
    coded_size: tuple[int, int]
    r_frame_rate: str
    avg_frame_rate: str
    packets: int

    def conforms(self, *, fps: int, frames: int, size: tuple[int, int] | None = None) -> bool:
        """Whether the video already is H.264 yuv420p at constant ``fps`` with exactly ``frames`` frames
        (and of ``size``, when given): then it is stream-copied, not encoded again."""
        return (
            self.codec == "h264"
            and self.pix_fmt == "yuv420p"
            and self.r_frame_rate == self.avg_frame_rate == f"{fps}/1"
            and self.packets == frames
            and (size is None or self.coded_size == size)
        )


def probe_video(path: Path) -> VideoProbe:
    """``path``'s picture size as displayed (as ``probe_visual`` finds it) and the figures that say whether
    it conforms: from the boxes of a plain H.264 MP4 (``_video_of_movie``), else from one ffprobe that
    counts its packets; none is ``UNSUPPORTED_FORMAT``."""
    known = _video_of_movie(path)
    if known is not None:
        return known
    data = _ffprobe_json(path, "image or video", count_packets=True)
    visual = _visual_of(path, data)
    stream = _first_stream(data, "video") or {}
    return VideoProbe(
        display_size=(visual.width, visual.height),
        codec=str(stream.get("codec_name", "")),
        pix_fmt=str(stream.get("pix_fmt", "")),
        coded_size=(int(str(stream.get("width", 0))), int(str(stream.get("height", 0)))),
        r_frame_rate=str(stream.get("r_frame_rate", "")),
        avg_frame_rate=str(stream.get("avg_frame_rate", "")),
        packets=int(str(stream.get("nb_read_packets") or 0)),
    )


def _video_of_movie(path: Path) -> VideoProbe | None:
    """A ``VideoProbe`` from an MP4's boxes (``va.mp4``), without a process, when they say for sure what
    ffprobe would: an ``avc1`` track whose one SPS is 4:2:0 in 8 bits, limited range, whole frames and
    square pixels (so ffmpeg decodes it as yuv420p, at the size its sample entry says), shown as stored
    (no matrix, no ``pasp`` other than 1:1), every sample as long, no edit but one from the start that
    covers them all, and every sample's data in the file. None for anything else: ffprobe is asked."""
    read = _steady_video(path)
    if read is None or read[0].codec != b"avc1" or any(start != 0 for _, start in read[0].edits):
        return None  # an edit that starts later: ffmpeg's rates may be its own estimates
    video, rate = read
    picture = mp4.avc_picture(video.entry_boxes.get(b"avcC", b""))
    plain = (
        picture is not None
        and (picture.chroma_format, picture.luma_bits, picture.chroma_bits) == (1, 8, 8)
        and not picture.full_range
        and picture.frames_only
        and picture.sample_aspect in ((0, 0), (1, 1))
        and (picture.width, picture.height) == (video.width, video.height)
    )
    aspect = video.entry_boxes.get(b"pasp")
    square = aspect is None or (len(aspect) == 8 and aspect[:4] == aspect[4:])
    if not (plain and square):
        return None
    size = (video.width, video.height)
    return VideoProbe(size, "h264", "yuv420p", size, rate, rate, video.samples or 0)


def cut_voice_and_context(
    audio: Path,
    voice: Path,
    *,
    start_seconds: float,
    seconds: float,
    sample_rate: int,
    clip: Path | None = None,
    still: Path | None = None,
    context: Path | None = None,
    last: Path | None = None,
    frames: int = 0,
    fps: int = 25,
) -> None:
    """A model segment's inputs in one ffmpeg run: ``seconds`` of ``audio`` from ``start_seconds`` (a
    negative start puts that much silence first) as mono 16-bit WAV at ``sample_rate`` (``voice``);
    given ``context``, the last ``frames`` frames of ``clip`` (else ``still`` held that long) as a short,
    nearly lossless H.264 video at ``fps`` (what the model continues from); given ``last`` and a
    ``clip``, its last frame as a PNG. All written under temporary names."""
    lead = round(max(0.0, -start_seconds) * sample_rate)
    whole = round(seconds * sample_rate)
    delay = f"adelay=delays={lead}S:all=1," if lead else ""
    argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y", "-ss", f"{max(0.0, start_seconds):.6f}"]
    argv += ["-t", f"{max(0.0, seconds - lead / sample_rate):.6f}", *input_file(audio)]
    held = clip is None and still is not None and context is not None
    if clip is not None and (context is not None or last is not None):
        argv += [*input_file(clip)]
    elif held and still is not None:
        argv += ["-loop", "1", "-framerate", str(fps), *input_file(still)]
    picture = held or clip is not None
    targets = [voice, *([context] if picture and context else []), *([last] if clip and last else [])]
    with contextlib.ExitStack() as published:
        partials = [published.enter_context(partial_file(target)) for target in targets]
        argv += [
            "-map",
            "0:a:0",
            "-af",
            f"aresample={sample_rate},{delay}apad=whole_len={whole},atrim=end_sample={whole}",
            "-ar",
            str(sample_rate),
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
            "-f",
            "wav",
            str(partials[0]),
        ]
        if picture and context is not None:
            # The last frames without counting them first: the clip backwards, its first frames,
            # forwards; a still is held, converted as encode_still_loop converts it.
            frames_of = (
                f"reverse,trim=end_frame={frames},reverse"
                if clip is not None
                else f"trim=end_frame={frames},{TO_YUV420}"
            )
            argv += ["-map", "1:v:0", "-vf", f"{frames_of},setpts=N/({fps}*TB)", "-r", str(fps)]
            argv += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "4", "-pix_fmt", "yuv420p"]
            argv += [*(X264_COLOUR if held else []), *MP4_OUT, str(partials[1])]
        if clip is not None and last is not None:
            argv += ["-map", "1:v:0", "-vf", "reverse", "-frames:v", "1", "-f", "image2", "-c:v", "png"]
            argv += [str(partials[-1])]
        _run(argv, failure=ExitCode.ENCODE_FAILED, what=f"cannot cut a segment's voice from {audio}")


@dataclass(frozen=True)
class ClipFigures:
    """What a generated clip holds: its frames (counted by decoding), rate, size, and the length of its
    audio (None: it has no audio track)."""

    frames: int
    fps: float
    width: int
    height: int
    audio_seconds: float | None


def _figures_of_movie(path: Path) -> ClipFigures | None:
    """A clip's figures as its MP4 boxes state them (``va.mp4``), None when they do not say for sure."""
    movie = mp4.read_movie(path)
    video = None if movie is None else movie.first(b"vide")
    if movie is None or video is None or video.samples is None or not video.sample_time:
        return None
    audio = movie.first(b"soun")
    seconds = None
    if audio is not None:
        if audio.edited is not None and movie.timescale:
            seconds = round(audio.edited / movie.timescale, 6)
        elif audio.timescale:
            seconds = round(audio.duration / audio.timescale, 6)
        else:
            return None
    return ClipFigures(
        frames=video.samples,
        fps=round(video.samples * video.timescale / video.sample_time, 6),
        width=video.width,
        height=video.height,
        audio_seconds=seconds,
    )


def clip_figures(path: Path) -> ClipFigures:
    """The figures of a clip: as its MP4 boxes state them (a sample a frame), else from one ffprobe,
    its frames counted as packets (no decoding: a video a model saves as H.264 has a packet a frame)."""
    known = _figures_of_movie(path)
    if known is not None:
        return known
    argv = [executable("ffprobe"), "-v", "error", "-count_packets", "-show_entries"]
    argv += ["stream=codec_type,nb_read_packets,width,height,avg_frame_rate,r_frame_rate,duration"]
    what = f"not a decodable video: {path}"
    done = _run(
        [*argv, "-print_format", "json", output_file(path)], failure=ExitCode.UNSUPPORTED_FORMAT, what=what
    )
    streams = json.loads(done.stdout).get("streams") or []
    video: dict[str, object] = next((s for s in streams if s.get("codec_type") == "video"), {})
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    rate = str(video.get("avg_frame_rate") or "0/0")
    if rate in ("0/0", "0/1"):
        rate = str(video.get("r_frame_rate") or "0/1")
    num, _, den = rate.partition("/")
    return ClipFigures(
        frames=int(str(video.get("nb_read_packets") or 0)),
        fps=round(float(num) / float(den), 6) if float(den or 0) else 0.0,
        width=int(str(video.get("width") or 0)),
        height=int(str(video.get("height") or 0)),
        audio_seconds=None if audio is None else _float(audio.get("duration")),
    )


@dataclass(frozen=True)
class ClipTiming:
    """A clip's frames (counted by decoding: an animated PNG or WebP has no packet per frame) and its
    rate as the container states it."""

    frames: int
    fps: float


def clip_timing(path: Path) -> ClipTiming:
    """Count the frames of a clip's first video stream and read its frame rate."""
    argv = [executable("ffprobe"), "-v", "error", "-select_streams", "v:0", "-count_frames"]
    argv += ["-show_entries", "stream=nb_read_frames,r_frame_rate,avg_frame_rate"]
    what = f"not a decodable video: {path}"
    argv += ["-print_format", "json", *input_file(path)]
    done = _run(argv, failure=ExitCode.UNSUPPORTED_FORMAT, what=what)
    stream = (json.loads(done.stdout).get("streams") or [{}])[0]
    rate = str(stream.get("avg_frame_rate") or "0/0")
    if rate in ("0/0", "0/1"):
        rate = str(stream.get("r_frame_rate") or "0/1")
    num, _, den = rate.partition("/")
    fps = float(num) / float(den) if float(den or 0) else 0.0
    return ClipTiming(frames=int(str(stream.get("nb_read_frames") or 0)), fps=round(fps, 6))


def encoded_figures(path: Path) -> EncodedFigures:
    """Frames (counted from packets, no decoding), size and frame rate of the first video stream: as the
    file's MP4 boxes state them (``_encoded_figures_of_movie``), else from one ffprobe."""
    known = _encoded_figures_of_movie(path)
    if known is not None:
        return known
    argv = [executable("ffprobe"), "-v", "error", "-select_streams", "v:0", "-count_packets"]
    argv += ["-show_entries", "stream=nb_read_packets,width,height,r_frame_rate", "-print_format", "json"]
    done = _run(
        [*argv, *input_file(path)], failure=ExitCode.UNSUPPORTED_FORMAT, what=f"not a decodable video: {path}"
    )
    stream = (json.loads(done.stdout).get("streams") or [{}])[0]
    return EncodedFigures(
        frames=int(str(stream.get("nb_read_packets") or 0)),
        width=int(str(stream.get("width") or 0)),
        height=int(str(stream.get("height") or 0)),
        fps=str(stream.get("r_frame_rate") or "0/0"),
    )


def _encoded_figures_of_movie(path: Path) -> EncodedFigures | None:
    """An MP4's figures as its ``moov`` states them (``va.mp4``): the first video track's samples (one a
    packet), its sample entry's size, and its rate when every sample lasts as long (ffprobe's
    ``r_frame_rate`` then). None when the boxes do not say for sure, or when the samples' data is not all
    in the file (a file cut short: ffprobe would count fewer packets)."""
    read = _steady_video(path)
    if read is None:
        return None
    video, rate = read
    return EncodedFigures(video.samples or 0, video.width, video.height, rate)


def _whole_video(path: Path) -> tuple[mp4.Movie, mp4.Track] | None:
    """An MP4 (``va.mp4``) and its first video track, when its samples are the packets ffprobe would
    count: no edit but one that covers them all (one that ends early makes ffmpeg leave samples out) and
    starts no later than the first picture is shown (it may skip the B-frames' delay, as x264's MP4s
    do; from a later start ffmpeg drops the samples before the key frame it needs there), no sample of
    size 0 (ffmpeg reads no packet for it), and every sample's data in the file (a file cut short:
    ffprobe would count fewer packets). None otherwise."""
    movie = mp4.read_movie(path)
    video = None if movie is None else movie.first(b"vide")
    if movie is None or video is None or not video.samples or not video.timescale or video.empty_sample:
        return None
    if video.data_end is None or video.data_end > movie.file_size:
        return None
    whole = video.sample_time * movie.timescale - video.timescale  # within a tick of the movie's timescale
    edits = video.edits
    if edits and not (
        len(edits) == 1 and 0 <= edits[0][1] <= video.first_offset and edits[0][0] * video.timescale >= whole
    ):
        return None
    return movie, video


def _steady_video(path: Path) -> tuple[mp4.Track, str] | None:
    """The first video track of an MP4 (``va.mp4``) and its rate as ffprobe says it (``25/1``), when its
    boxes say for sure what ffprobe would: its samples are its packets (``_whole_video``), they all last
    as long, and the picture is shown as stored. None otherwise."""
    read = _whole_video(path)
    if read is None:
        return None
    movie, video = read
    if not video.sample_delta or not movie.upright or not video.upright:
        return None
    rate = Fraction(video.timescale, video.sample_delta)
    return video, f"{rate.numerator}/{rate.denominator}"


def count_video_packets(path: Path) -> int:
    """Frames of the first video stream, counted from its packets (no decoding): an MP4's samples when
    its boxes say for sure (``_whole_video``: its turn and rates do not matter here), else ffprobe's."""
    read = _whole_video(path)
    if read is not None:
        return read[1].samples or 0
    argv = [executable("ffprobe"), "-v", "error", "-select_streams", "v:0", "-count_packets"]
    argv += ["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", *input_file(path)]
    done = _run(argv, failure=ExitCode.UNSUPPORTED_FORMAT, what=f"not a decodable video: {path}")
    return int(done.stdout.strip().split(",")[0] or 0)


def check_video(path: Path) -> VideoStreamCheck:
    """Count the frames and read the stream figures of an encoded video (decodes every frame)."""
    argv = [executable("ffprobe"), "-v", "error", "-count_frames", "-print_format", "json"]
    argv += ["-show_streams", *input_file(path)]
    done = _run(argv, failure=ExitCode.UNSUPPORTED_FORMAT, what=f"not a decodable video: {path}")
    data = json.loads(done.stdout)
    video = _first_stream(data, "video") or {}
    audio = _first_stream(data, "audio") or {}
    num, _, den = str(video.get("avg_frame_rate", "0/1")).partition("/")
    return VideoStreamCheck(
        width=int(str(video.get("width", 0))),
        height=int(str(video.get("height", 0))),
        frames=int(str(video.get("nb_read_frames", 0))),
        fps=float(num) / float(den or 1) if float(den or 1) else 0.0,
        video_codec=str(video.get("codec_name", "")),
        pix_fmt=str(video.get("pix_fmt", "")),
        audio_codec=str(audio.get("codec_name", "")),
        video_duration_seconds=_float(video.get("duration")) or 0.0,
        audio_duration_seconds=_float(audio.get("duration")) or 0.0,
    )


#: The look of the report's figures: contact-sheet cells of this width, a waveform of this size.
CONTACT_SHEET_TILE_WIDTH = 320
WAVEFORM_SIZE = (1280, 240)
FIGURE_BACKGROUND = "0x1e1e1e"
WAVEFORM_COLOUR = "0x60a5fa"


def sample_frames(frames: int, count: int) -> list[int]:
    """``count`` frame numbers spread evenly from the first to the last of ``frames`` (all when fewer)."""
    if frames <= count:
        return list(range(frames))
    return sorted({round(i * (frames - 1) / (count - 1)) for i in range(count)})


@dataclass(frozen=True)
class RawFrame:
    """One decoded frame: its number in the source, its size, its pixels as packed RGB (3 bytes a pixel),
    and ``scale``: how many pixels of the full-size picture one of its pixels stands for."""

    index: int
    width: int
    height: int
    rgb: bytes
    scale: float


def decode_frames(
    source: Path,
    indices: list[int],
    *,
    fitted: tuple[FrameGeometry, str] | None = None,
    longest_side: int = 0,
    probe: VisualInfo | None = None,
) -> list[RawFrame]:
    """Decode the frames ``indices`` (0-based, ascending) of the first video stream of ``source`` as packed
    RGB, for analysis: ``fitted`` into a geometry on a background first (as the held still is made), then
    at most ``longest_side`` pixels on the longer side (0: the full size). Frames past the end are missing.
    ``probe``: the source's ``probe_visual`` when it was made already (the plan's)."""
    info = probe or probe_visual(source)
    reduce = 1
    if fitted is not None:
        geometry, background = fitted
        width, height = geometry.width, geometry.height
        fit = f"{geometry.filter},format=rgb24,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color={background},"
        reduce = shrink_factor(info, geometry) if info.decoded_by_va else 1  # as render_still decodes it
    else:
        width, height, fit = info.width, info.height, ""
    shrink = min(1.0, longest_side / max(width, height)) if longest_side else 1.0
    out_w, out_h = max(1, round(width * shrink)), max(1, round(height * shrink))
    # Frames are numbered consecutively after the selection, so no output mode repeats one to fill a gap.
    select = "+".join(f"eq(n\\,{n})" for n in indices)
    chain = f"select={select},setpts=N/FRAME_RATE/TB,{fit}scale={out_w}:{out_h}:flags=area,format=rgb24"
    turning = ["-noautorotate"] if fitted is not None else []  # the geometry's filter turns it upright
    with (
        tempfile.TemporaryDirectory(prefix="va-decode-") as scratch,
        ffmpeg_readable(source, Path(scratch), shrink=reduce) as readable,
    ):
        argv = [executable("ffmpeg"), "-nostdin", "-v", "error", *turning, *input_file(readable)]
        argv += ["-map", "0:v:0", "-vf", chain, "-frames:v", str(len(indices))]
        argv += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        log.info("%s", shlex.join(argv), extra=COMMAND)
        done = subprocess.run(argv, capture_output=True, check=False)
    if done.returncode != 0:
        message = _last_line(done.stderr.decode("utf-8", errors="replace"))
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"cannot decode frames of {source}: {message}")
    size = out_w * out_h * 3
    count = len(done.stdout) // size
    return [
        RawFrame(index, out_w, out_h, done.stdout[i * size : (i + 1) * size], width / out_w)
        for i, index in enumerate(indices[:count])
    ]


def render_contact_sheet(video: Path, target: Path, *, columns: int = 4, rows: int = 3) -> None:
    """Write a PNG of ``columns`` x ``rows`` frames of ``video``, spread evenly from its first to its last.

    Each cell is ``CONTACT_SHEET_TILE_WIDTH`` wide; a video of fewer frames leaves the last cells empty.
    """
    picks = sample_frames(count_video_packets(video), columns * rows)
    if not picks:
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"no frames in {video}")
    select = "+".join(f"eq(n\\,{n})" for n in picks)
    chain = (
        f"select={select},scale={CONTACT_SHEET_TILE_WIDTH}:-2,setsar=1,"
        f"tile={columns}x{rows}:padding=4:margin=4:color={FIGURE_BACKGROUND}"
    )
    with partial_file(target) as partial:
        argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y", *input_file(video), "-map", "0:v:0"]
        argv += ["-vf", chain, "-frames:v", "1", "-update", "1", str(partial)]
        _run(argv, failure=ExitCode.ENCODE_FAILED, what=f"contact sheet of {video} failed")


def render_waveform(audio: Path, target: Path) -> None:
    """Write a PNG of the waveform of the first audio stream of ``audio`` (``WAVEFORM_SIZE``)."""
    width, height = WAVEFORM_SIZE
    graph = (
        f"[0:a:0]showwavespic=s={width}x{height}:split_channels=0:scale=sqrt:draw=full:"
        f"colors={WAVEFORM_COLOUR}[wave];"
        f"color=c={FIGURE_BACKGROUND}:s={width}x{height},format=rgba[bg];"
        "[bg][wave]overlay=shortest=1:format=auto,format=rgb24[figure]"
    )
    with partial_file(target) as partial:
        argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-y", *input_file(audio)]
        argv += ["-filter_complex", graph, "-map", "[figure]", "-frames:v", "1", "-update", "1", str(partial)]
        _run(argv, failure=ExitCode.ENCODE_FAILED, what=f"waveform of {audio} failed")


@dataclass(frozen=True, slots=True)
class GreyFrame:
    """One decoded frame as 8-bit grey (one byte a pixel, rows top to bottom), no larger than asked: the
    picture's luma plane as stored (black at 16, white at 235 in the usual limited range)."""

    width: int
    height: int
    pixels: bytes
    #: Its number in the video (0: the first frame), so a decode that skips frames still says which one
    #: this is.
    number: int


#: The size asked for the pipes ffmpeg streams frames and samples through (Linux lets any process ask
#: for up to 1 MiB, ``/proc/sys/fs/pipe-max-size``).
PIPE_BYTES = 1 << 20


def _stream(
    argv: list[str], block: int, what: str, failure: ExitCode | None = None, *, written: str | None = None
) -> Generator[bytes, None, None]:
    """``argv``'s standard output in blocks of ``block`` bytes (the last one may be shorter), read as ffmpeg
    writes them: memory holds one block whatever the length. Closing the iterator early ends ffmpeg.
    A failure is an unreadable input, or, for a step that writes the file ``written`` too, that step's
    ``failure`` (``_failure``: a full disk said as such)."""
    log.info("%s", shlex.join(argv), extra=COMMAND)
    # stderr goes to a file: a damaged stream can make ffmpeg say a line a frame, more than a pipe holds
    # while this side reads only stdout.
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        except OSError as exc:
            raise VaError(ExitCode.DEPENDENCY_MISSING, f"cannot start {argv[0]}: {exc}") from exc
        assert process.stdout is not None
        # A pipe of 1 MiB, not 64 KiB: ffmpeg runs up to a second of small frames ahead of the reader,
        # so a reader that stops for a moment (a face looked for) does not stop an encode that feeds it.
        with contextlib.suppress(OSError, AttributeError):  # Linux's; elsewhere the pipe keeps its size
            fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        finished = False
        try:
            while chunk := process.stdout.read(block):
                yield chunk
            finished = True
        finally:
            if not finished:  # the reader stopped early (or failed): ffmpeg need not decode the rest
                process.kill()
            process.stdout.close()
            returncode = process.wait()
        errors.seek(0)
        stderr = errors.read().decode("utf-8", errors="replace")
    if failure is not None and (returncode != 0 or any(reason in stderr for reason in DISK_ERRORS)):
        raise _failure(argv, stderr, failure, what, written=written)
    if returncode != 0:
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"{what}: {_last_line(stderr)}")


@dataclass(frozen=True, slots=True)
class Crop:
    """A window of a picture (``x``, ``y``, ``width``, ``height`` in its displayed pixels) and the size
    it is scaled to (``out_width`` x ``out_height``)."""

    x: int
    y: int
    width: int
    height: int
    out_width: int
    out_height: int


def grey_frames(
    source: Path, *, longest_side: int = 0, crop: Crop | None = None
) -> Generator[GreyFrame, None, None]:
    """Every frame of the first video stream of ``source``, in order, as grey pixels (its luma plane),
    streamed from ffmpeg one frame at a time: the window ``crop`` at its size, else the whole picture at
    most ``longest_side`` pixels on the longer side. For analysis: the decoder skips its deblocking
    filter (a quarter of its time; the blocks' edges it would smooth are below what a measure of the
    picture sees), and the luma plane is taken as stored, neither the chroma scaled nor the range
    converted (that was a fifth of ffmpeg's time)."""
    if crop is None:
        info = probe_visual(source)
        shrink = min(1.0, longest_side / max(info.width, info.height, 1)) if longest_side else 1.0
        out = max(1, round(info.width * shrink)), max(1, round(info.height * shrink))
        crop = Crop(0, 0, info.width, info.height, *out)
    argv = [*_luma_decoder(source), "-vf", _grey_window(crop), "-f", "rawvideo", "pipe:1"]
    blocks = _grey_blocks(argv, crop.out_width * crop.out_height, f"cannot decode frames of {source}")
    for number, pixels in enumerate(blocks):
        yield GreyFrame(crop.out_width, crop.out_height, pixels, number)


#: Bytes of a frame's number in the row ``referenced_grey_frames`` has ffmpeg add under the picture
#: (little-endian; up to 2**32 frames).
NUMBER_BYTES = 4


def referenced_grey_frames(
    source: Path, crop: Crop, *, rate: Fraction, first: int = 0
) -> Generator[GreyFrame, None, None]:
    """The frames of the constant-``rate`` video ``source`` that other frames refer to, from frame
    ``first`` on, each with its number, as ``grey_frames`` gives them (``crop``, at least
    ``NUMBER_BYTES`` px wide). The frames no other frame refers to (most of H.264's B-frames: some 45 %
    of x264's by default) are not decoded at all, so not given; every frame given is the full decode's.
    Each frame's number is read from its presentation time in the file (ffmpeg writes it in an extra row
    under the picture, dropped here), as ``grey_frames`` counts them: a picture that starts later than
    the file's sound starts at a later number. Only for a file whose times say when each frame is shown
    and that seeks to them exactly (``shown_by_time``). ffmpeg's exact seek starts half a frame before
    ``first`` (a frame stored up to half a frame before the time its number says is kept: Matroska's
    milliseconds from a start that is no multiple of a frame), the frames numbered before ``first``
    dropped."""
    return _numbered_grey_frames(source, crop, rate=rate, first=first, referenced_only=True)


def grey_frames_from(
    source: Path, crop: Crop, *, rate: Fraction, first: int
) -> Generator[GreyFrame, None, None]:
    """Every frame of the constant-``rate`` video ``source`` from frame ``first`` on, each with its number:
    as ``referenced_grey_frames`` seeks and numbers them (``shown_by_time`` files only), none left out,
    each frame the one ``grey_frames`` gives at that number."""
    return _numbered_grey_frames(source, crop, rate=rate, first=first, referenced_only=False)


def _numbered_grey_frames(
    source: Path, crop: Crop, *, rate: Fraction, first: int, referenced_only: bool
) -> Generator[GreyFrame, None, None]:
    """``referenced_grey_frames`` (``referenced_only``) or ``grey_frames_from``."""
    size = crop.out_width * crop.out_height
    # Half a frame early, in whole microseconds (ffmpeg's -ss), not after.
    start = max(0, math.floor((first - Fraction(1, 2)) * 1_000_000 / rate)) if first else 0
    # The number of the frame (its time at the rate, from the file's start) as bytes: column X holds byte X.
    number = f"round((T+{start}/1000000)*{rate.numerator}/{rate.denominator})"
    row = f"crop={NUMBER_BYTES}:1:0:0,geq=lum='mod(floor({number}/pow(256\\,X))\\,256)'"
    graph = f"{_grey_window(crop)},split[picture][stamp];[stamp]{row},pad={crop.out_width}:1[number];"
    graph += "[picture][number]vstack"
    argv = [*_luma_decoder(source, start / 1_000_000, referenced_only=referenced_only), "-vf", graph]
    argv += ["-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"]  # a frame skipped is not repeated
    for block in _grey_blocks(argv, size + crop.out_width, f"cannot decode frames of {source}"):
        counted = int.from_bytes(block[size : size + NUMBER_BYTES], "little")
        if counted >= first:
            yield GreyFrame(crop.out_width, crop.out_height, block[:size], counted)


#: The first bytes of a Matroska or WebM file (its EBML header's ID).
EBML_MAGIC = b"\x1a\x45\xdf\xa3"


def shown_by_time(source: Path) -> bool:
    """Whether ``source`` is a file whose video frames carry the times they are shown at and that ffmpeg
    seeks in exactly: an MP4 or MOV that ``va.mp4`` reads, or a Matroska or WebM file. Not an AVI (no
    presentation times: MPEG-4's B-frames shift them a frame), MPEG-TS (a seek lands elsewhere) nor a raw
    stream (no times)."""
    if mp4.read_movie(source) is not None:
        return True
    try:
        with source.open("rb") as stream:
            return stream.read(len(EBML_MAGIC)) == EBML_MAGIC
    except OSError:
        return False


def _grey_blocks(
    argv: list[str], size: int, what: str, failure: ExitCode | None = None, *, written: str | None = None
) -> Generator[bytes, None, None]:
    """The frames of ``size`` bytes that ``argv`` writes on its standard output (``_stream``: ``what``,
    ``failure`` and ``written`` say its failure), a short last block dropped."""
    for block in _stream(argv, size, what, failure, written=written):
        if len(block) == size:
            yield block


#: The luma plane of a frame, as stored: a Y'CbCr or grey picture passes as it is, an RGB one (PNG or
#: QuickTime RLE in a video, libx264rgb) is converted first, a deeper one brought to 8 bits.
LUMA_PLANE = "format=pix_fmts=yuv420p|yuvj420p|yuv422p|yuvj422p|yuv444p|yuvj444p|gray,extractplanes=y"


def _luma_decoder(source: Path, start_seconds: float = 0.0, *, referenced_only: bool = False) -> list[str]:
    """ffmpeg decoding the first video stream of ``source`` for analysis: one thread (no frames decoded
    ahead), no deblocking filter, the decoder's shortcuts allowed; from ``start_seconds`` on (ffmpeg's
    exact seek: decoded from the key frame before, the frames before it dropped); ``referenced_only``:
    the frames no other frame refers to are not decoded (``-skip_frame noref``)."""
    argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-threads", "1", "-skip_loop_filter", "all"]
    argv += ["-skip_frame", "noref"] if referenced_only else []
    argv += ["-ss", f"{start_seconds:.6f}"] if start_seconds else []
    return [*argv, "-flags2", "fast", *input_file(source), "-map", "0:v:0"]


def first_grey_frame(source: Path) -> GreyFrame:
    """The first frame of the first video stream of ``source`` at its full size as grey pixels (its luma
    plane, 8 bits, as ``grey_frames`` gives them), and so its size: no probe needed to place a ``Crop``."""
    argv = [*_luma_decoder(source), "-frames:v", "1", "-vf", f"{LUMA_PLANE},format=gray", "-c:v", "pgm"]
    argv += ["-f", "image2pipe", "pipe:1"]
    log.info("%s", shlex.join(argv), extra=COMMAND)
    done = subprocess.run(argv, capture_output=True, check=False)
    # A binary PGM: "P5", width, height, the largest value, each after whitespace, then the pixels.
    fields = done.stdout.split(maxsplit=4)
    if done.returncode != 0 or len(fields) < 5 or fields[0] != b"P5":
        message = _last_line(done.stderr.decode("utf-8", errors="replace")) or "no frame"
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"cannot decode frames of {source}: {message}")
    width, height = int(fields[1]), int(fields[2])
    return GreyFrame(width, height, done.stdout[len(done.stdout) - width * height :], 0)


def pcm_blocks(source: Path, *, sample_rate: int, samples: int) -> Generator[bytes, None, None]:
    """The first audio stream of ``source`` as mono 16-bit little-endian PCM at ``sample_rate``, in blocks
    of ``samples`` samples (the last one may be shorter), streamed from ffmpeg."""
    argv = [executable("ffmpeg"), "-nostdin", "-v", "error", "-i", str(source), "-map", "0:a:0"]
    argv += ["-ac", "1", "-ar", str(sample_rate), "-f", "s16le", "-c:a", "pcm_s16le", "pipe:1"]
    return _stream(argv, 2 * samples, f"not a decodable audio file: {source}")
