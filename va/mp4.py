"""The figures of an MP4 or MOV file read from its boxes, without starting ffprobe.

A generated clip is checked once a segment (``va.media.clip_figures``), and every video va encodes
before it is published (``va.media.encoded_figures``); on a busy machine an ffprobe start alone takes
longer than the rest of a segment's own time. What a clip's ``moov`` box says is enough: a video
track's sample count (one sample a frame, as ffprobe counts packets), its sample entry's size, its
rate, the length of an audio track, and where the samples' data ends (a file cut short is not taken).
A video brought to the plan (``va.media.probe_video``) is read so too: its H.264 sequence parameter set
(in the ``avcC`` box) says its pixel format, coded size and pixel aspect, its matrices how it is shown.
A file this reader does not know for sure (fragmented, no ``moov``, no video sample entry, a damaged
box) gives None, and the caller asks ffprobe.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

#: Boxes whose children are boxes (ISO/IEC 14496-12), the ones on the way to the tables read here.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}
#: A moov box larger than this is not a short clip's: left to ffprobe.
_LONGEST_MOOV = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Track:
    """What one track's boxes say: its handler (``vide``, ``soun``), media timescale and duration, its
    sample count and summed sample durations, its sample entry's size (video), and its edit list's
    length in the movie's timescale (None: no edit list); its first sample entry's format (``avc1``),
    the one duration every sample has (None: they differ), and where its last sample's data ends in the
    file (None: its tables do not add up)."""

    handler: bytes
    timescale: int
    duration: int
    samples: int | None
    sample_time: int
    width: int
    height: int
    edited: int | None
    codec: bytes = b""
    sample_delta: int | None = None
    data_end: int | None = None
    #: Whether its ``tkhd`` matrix leaves the picture as it is (no turn, no mirror, no scale).
    upright: bool = False
    #: The edit list's entries, (length in the movie's timescale, media time; -1: an empty edit).
    edits: tuple[tuple[int, int], ...] = ()
    #: The boxes inside its first sample entry by type (a video's ``avcC``, ``pasp``, ``colr``).
    entry_boxes: dict[bytes, bytes] = field(default_factory=dict)
    #: Its first sample's composition offset in the media's timescale (``ctts``; 0 without one): how
    #: late the first picture is shown, the B-frames' delay an encoder's edit list skips.
    first_offset: int = 0
    #: Whether a sample's size (``stsz``) is 0: ffmpeg reads no packet for such a sample.
    empty_sample: bool = False


@dataclass(frozen=True, slots=True)
class Movie:
    """The tracks of an MP4 file, the movie's timescale, the file's size in bytes, and whether the movie's
    ``mvhd`` matrix leaves the picture as it is."""

    timescale: int
    tracks: tuple[Track, ...]
    file_size: int = 0
    upright: bool = False

    def first(self, handler: bytes) -> Track | None:
        """The first track of ``handler``, None without one."""
        return next((track for track in self.tracks if track.handler == handler), None)


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """The boxes in ``data[start:end]``: (type, payload start, payload end); a box that does not fit
    raises ValueError."""
    end = len(data) if end is None else end
    found, at = [], start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            raise ValueError(f"box {kind!r} does not fit")
        found.append((kind, at + header, at + size))
        at += size
    return found


def _children(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """The first box of each type inside a container box's payload."""
    children: dict[bytes, tuple[int, int]] = {}
    for kind, begin, stop in _boxes(data, start, end):
        children.setdefault(kind, (begin, stop))
    return children


def _track(data: bytes, start: int, end: int) -> Track:
    trak = _children(data, start, end)
    mdia = _children(data, *trak[b"mdia"])
    at, _ = mdia[b"mdhd"]
    if data[at] == 1:
        timescale, duration = struct.unpack_from(">IQ", data, at + 20)
    else:
        timescale, duration = struct.unpack_from(">II", data, at + 12)
    handler = data[mdia[b"hdlr"][0] + 8 : mdia[b"hdlr"][0] + 12]
    stbl = _children(data, *_children(data, *mdia[b"minf"])[b"stbl"])
    samples = None
    if b"stsz" in stbl:
        (samples,) = struct.unpack_from(">I", data, stbl[b"stsz"][0] + 8)
    elif b"stz2" in stbl:
        (samples,) = struct.unpack_from(">I", data, stbl[b"stz2"][0] + 8)
    at, _ = stbl[b"stts"]
    (entries,) = struct.unpack_from(">I", data, at + 4)
    pairs = struct.unpack_from(f">{2 * entries}I", data, at + 8)
    sample_time = sum(count * delta for count, delta in zip(pairs[::2], pairs[1::2], strict=True))
    deltas = {delta for count, delta in zip(pairs[::2], pairs[1::2], strict=True) if count}
    codec = data[stbl[b"stsd"][0] + 12 : stbl[b"stsd"][0] + 16] if b"stsd" in stbl else b""
    width = height = 0
    if handler == b"vide":
        at, _ = stbl[b"stsd"]
        # The first sample entry: size, format, 6 reserved, data reference, 16 of pre-defined, then size.
        width, height = struct.unpack_from(">HH", data, at + 8 + 32)
    edited, edits = None, []
    if b"edts" in trak and b"elst" in (edts := _children(data, *trak[b"edts"])):
        at, _ = edts[b"elst"]
        wide = data[at] == 1
        (count,) = struct.unpack_from(">I", data, at + 4)
        edited, entry = 0, at + 8
        for _ in range(count):
            length, media_time = struct.unpack_from(">Qq" if wide else ">Ii", data, entry)
            entry += 20 if wide else 12
            edited += length if media_time != -1 else 0
            edits.append((length, media_time))
    one_delta = deltas.pop() if len(deltas) == 1 else None
    sizes = _sizes(data, stbl)
    data_end = _data_end(data, stbl, samples, sizes)
    upright = b"tkhd" in trak and _upright(data, trak[b"tkhd"][0], 40, 52)
    entry_boxes = _entry_boxes(data, *stbl[b"stsd"]) if handler == b"vide" and b"stsd" in stbl else {}
    return Track(
        handler,
        timescale,
        duration,
        samples,
        sample_time,
        width,
        height,
        edited,
        codec,
        one_delta,
        data_end,
        upright,
        tuple(edits),
        entry_boxes,
        _first_offset(data, stbl),
        sizes is not None and 0 in sizes,
    )


def _first_offset(data: bytes, stbl: dict[bytes, tuple[int, int]]) -> int:
    """The first sample's composition offset (``ctts``: runs of samples and their offset, which ffmpeg
    reads as signed in either version), 0 without one."""
    if b"ctts" not in stbl:
        return 0
    at = stbl[b"ctts"][0]
    (entries,) = struct.unpack_from(">I", data, at + 4)
    for k in range(entries):
        count, offset = struct.unpack_from(">Ii", data, at + 8 + 8 * k)
        if count:
            return int(offset)
    return 0


#: The matrix of a picture shown as it is: (a b u, c d v, x y w) in 16.16 and 2.30 fixed point.
_IDENTITY = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _upright(data: bytes, at: int, version_0: int, version_1: int) -> bool:
    """Whether the matrix of the ``tkhd`` or ``mvhd`` box at ``at`` (at ``version_0`` bytes into its
    payload, ``version_1`` in a version 1 box) is the identity."""
    offset = at + (version_1 if data[at] == 1 else version_0)
    return struct.unpack_from(">9i", data, offset) == _IDENTITY


#: Bytes of a visual sample entry before its own boxes (ISO/IEC 14496-12 VisualSampleEntry).
_VISUAL_ENTRY = 86


def _entry_boxes(data: bytes, start: int, end: int) -> dict[bytes, bytes]:
    """The boxes inside the first (visual) sample entry of an ``stsd`` box, by type."""
    entry = start + 8  # version, flags, entry count
    (size,) = struct.unpack_from(">I", data, entry)
    return {kind: data[begin:stop] for kind, begin, stop in _boxes(data, entry + _VISUAL_ENTRY, entry + size)}


def _sizes(data: bytes, stbl: dict[bytes, tuple[int, int]]) -> tuple[int, ...] | None:
    """Each sample's size in bytes (``stsz``), None without the box."""
    if b"stsz" not in stbl:
        return None
    at = stbl[b"stsz"][0]
    uniform, count = struct.unpack_from(">II", data, at + 4)
    return (uniform,) * count if uniform else struct.unpack_from(f">{count}I", data, at + 12)


def _data_end(
    data: bytes, stbl: dict[bytes, tuple[int, int]], samples: int | None, sizes: tuple[int, ...] | None
) -> int | None:
    """The file offset where the track's last byte of sample data ends: each chunk's offset (``stco`` or
    ``co64``) plus the ``sizes`` (``stsz``) of the samples ``stsc`` puts in it. None when the tables are
    not there or do not hold ``samples`` samples between them."""
    offsets_box = stbl.get(b"stco") or stbl.get(b"co64")
    if samples is None or offsets_box is None or b"stsc" not in stbl or sizes is None:
        return None
    at = offsets_box[0]
    (chunks,) = struct.unpack_from(">I", data, at + 4)
    offsets = struct.unpack_from(f">{chunks}{'I' if b'stco' in stbl else 'Q'}", data, at + 8)
    count = len(sizes)
    at = stbl[b"stsc"][0]
    (entries,) = struct.unpack_from(">I", data, at + 4)
    runs = [struct.unpack_from(">III", data, at + 8 + 12 * k)[:2] for k in range(entries)]
    end, sample = 0, 0
    for k, (first, per_chunk) in enumerate(runs):
        last = runs[k + 1][0] - 1 if k + 1 < len(runs) else chunks
        for chunk in range(first, last + 1):
            if not 1 <= chunk <= chunks:
                return None
            taken = sizes[sample : sample + per_chunk]
            sample += per_chunk
            end = max(end, offsets[chunk - 1] + sum(taken))
    return end if sample == samples == count else None


def _moov(stream: BinaryIO, size: int) -> bytes | None:
    """The payload of the file's ``moov`` box (read alone: the media data is not read), None without one."""
    at = 0
    while at + 8 <= size:
        stream.seek(at)
        header = stream.read(16)
        if len(header) < 8:
            return None
        length, kind = struct.unpack_from(">I4s", header)
        skip = 8
        if length == 1 and len(header) == 16:
            (length,) = struct.unpack_from(">Q", header, 8)
            skip = 16
        elif length == 0:
            length = size - at
        if length < skip:
            return None
        if kind == b"moov":
            if length > _LONGEST_MOOV:
                return None
            stream.seek(at + skip)
            payload = stream.read(length - skip)
            return payload if len(payload) == length - skip else None
        at += length
    return None


def read_movie(path: Path) -> Movie | None:
    """The tracks of the MP4 or MOV file at ``path``, None when it is not one this reader knows for sure
    (no ``moov``, fragmented, a box that does not fit)."""
    try:
        with path.open("rb") as stream:
            size = path.stat().st_size
            moov = _moov(stream, size)
    except OSError:
        return None
    if moov is None:
        return None
    try:
        children = _boxes(moov)
        kinds = {kind for kind, _, _ in children}
        if b"mvex" in kinds or b"mvhd" not in kinds:  # fragmented: the samples are in moof boxes
            return None
        _, at, _ = next(box for box in children if box[0] == b"mvhd")
        (timescale,) = struct.unpack_from(">I", moov, at + (20 if moov[at] == 1 else 12))
        upright = _upright(moov, at, 36, 48)
        tracks = tuple(_track(moov, begin, stop) for kind, begin, stop in children if kind == b"trak")
    except (KeyError, ValueError, IndexError, struct.error):
        return None
    return Movie(timescale, tracks, size, upright)


@dataclass(frozen=True, slots=True)
class AvcPicture:
    """What an H.264 sequence parameter set says of the picture: its chroma format (1: 4:2:0), bit
    depths, coded size after cropping, sample aspect (0:0 when unsaid), whether its samples are full
    range, and whether every picture is a frame (no fields)."""

    chroma_format: int
    luma_bits: int
    chroma_bits: int
    width: int
    height: int
    sample_aspect: tuple[int, int]
    full_range: bool
    frames_only: bool


#: Profiles whose SPS says its chroma format and bit depths (the others are 4:2:0 in 8 bits).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
#: Sample aspects of ``aspect_ratio_idc`` 1..16 (H.264 table E-1); 255 says its own.
_ASPECTS = (
    (1, 1), (12, 11), (10, 11), (16, 11), (40, 33), (24, 11), (20, 11), (32, 11),
    (80, 33), (18, 11), (15, 11), (64, 33), (160, 99), (4, 3), (3, 2), (2, 1),
)  # fmt: skip


class _Bits:
    """An RBSP read bit by bit: fixed-width fields and Exp-Golomb codes (H.264 clause 9.1)."""

    def __init__(self, nal: bytes) -> None:
        # The emulation prevention bytes (0x000003) go: the RBSP is the NAL unit without them.
        self._data = nal.replace(b"\x00\x00\x03", b"\x00\x00")
        self._at = 0

    def bits(self, count: int) -> int:
        """The next ``count`` bits as an unsigned number; past the end is ``IndexError``."""
        value = 0
        for _ in range(count):
            byte = self._data[self._at >> 3]
            value = (value << 1) | ((byte >> (7 - (self._at & 7))) & 1)
            self._at += 1
        return value

    def ue(self) -> int:
        """An unsigned Exp-Golomb code."""
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("an Exp-Golomb code of more than 32 bits")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        """A signed Exp-Golomb code."""
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


def avc_picture(config: bytes) -> AvcPicture | None:
    """The picture the one SPS of an ``avcC`` box (its payload) describes; None for several SPSs, a
    scaling matrix (not read here) or a damaged one."""
    try:
        if len(config) < 8 or config[0] != 1 or config[5] & 0x1F != 1:
            return None
        (length,) = struct.unpack_from(">H", config, 6)
        sps = config[8 : 8 + length]
        if len(sps) != length or sps[0] & 0x1F != 7:
            return None
        return _sps(_Bits(sps[1:]))
    except (IndexError, ValueError, struct.error):
        return None


def _sps(bits: _Bits) -> AvcPicture | None:
    """H.264 clause 7.3.2.1.1, as far as the VUI's video signal type."""
    profile = bits.bits(8)
    bits.bits(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma, luma_bits, chroma_bits = 1, 8, 8
    if profile in _HIGH_PROFILES:
        chroma = bits.ue()
        if chroma == 3:
            bits.bits(1)  # separate_colour_plane_flag
        luma_bits, chroma_bits = 8 + bits.ue(), 8 + bits.ue()
        bits.bits(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.bits(1):  # seq_scaling_matrix_present_flag
            return None
    bits.ue()  # log2_max_frame_num_minus4
    order = bits.ue()
    if order == 0:
        bits.ue()
    elif order == 1:
        bits.bits(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bits(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs, height_units = bits.ue() + 1, bits.ue() + 1
    frames_only = bits.bits(1) == 1
    if not frames_only:
        bits.bits(1)  # mb_adaptive_frame_field_flag
    bits.bits(1)  # direct_8x8_inference_flag
    crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.bits(1) else (0, 0, 0, 0)
    unit_x = 2 if chroma in (1, 2) else 1
    unit_y = (2 if chroma == 1 else 1) * (1 if frames_only else 2)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (1 if frames_only else 2) * height_units * 16 - unit_y * (crop[2] + crop[3])
    aspect, full_range = (0, 0), False
    if bits.bits(1):  # vui_parameters_present_flag
        if bits.bits(1):  # aspect_ratio_info_present_flag
            idc = bits.bits(8)
            if idc == 255:
                aspect = (bits.bits(16), bits.bits(16))
            elif 1 <= idc <= len(_ASPECTS):
                aspect = _ASPECTS[idc - 1]
        if bits.bits(1):  # overscan_info_present_flag
            bits.bits(1)
        if bits.bits(1):  # video_signal_type_present_flag
            bits.bits(3)  # video_format
            full_range = bits.bits(1) == 1
    return AvcPicture(chroma, luma_bits, chroma_bits, width, height, aspect, full_range, frames_only)
