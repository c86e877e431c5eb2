"""The figures of an MP4 or MOV file read from its boxes, without starting ffprobe.

A generated clip is checked once a segment (``va.media.clip_figures``), and every video va encodes
before it is published (``va.media.encoded_figures``); on a busy machine an ffprobe start alone takes
longer than the rest of a segment's own time. What a clip's ``moov`` box says is enough: a video
track's sample count (one sample a frame, as ffprobe counts packets), its sample entry's size, its
rate, the length of an audio track, and where the samples' data ends (a file cut short is not taken).
A file this reader does not know for sure (fragmented, no ``moov``, no video sample entry, a damaged
box) gives None, and the caller asks ffprobe.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Movie:
    """The tracks of an MP4 file, the movie's timescale, and the file's size in bytes."""

    timescale: int
    tracks: tuple[Track, ...]
    file_size: int = 0

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
    edited = None
    if b"edts" in trak and b"elst" in (edts := _children(data, *trak[b"edts"])):
        at, _ = edts[b"elst"]
        wide = data[at] == 1
        (count,) = struct.unpack_from(">I", data, at + 4)
        edited, entry = 0, at + 8
        for _ in range(count):
            length, media_time = struct.unpack_from(">Qq" if wide else ">Ii", data, entry)
            entry += 20 if wide else 12
            edited += length if media_time != -1 else 0
    one_delta = deltas.pop() if len(deltas) == 1 else None
    data_end = _data_end(data, stbl, samples)
    return Track(
        handler, timescale, duration, samples, sample_time, width, height, edited, codec, one_delta, data_end
    )


def _data_end(data: bytes, stbl: dict[bytes, tuple[int, int]], samples: int | None) -> int | None:
    """The file offset where the track's last byte of sample data ends: each chunk's offset (``stco`` or
    ``co64``) plus the sizes (``stsz``) of the samples ``stsc`` puts in it. None when the tables are not
    there or do not hold ``samples`` samples between them."""
    offsets_box = stbl.get(b"stco") or stbl.get(b"co64")
    if samples is None or offsets_box is None or b"stsc" not in stbl or b"stsz" not in stbl:
        return None
    at = offsets_box[0]
    (chunks,) = struct.unpack_from(">I", data, at + 4)
    offsets = struct.unpack_from(f">{chunks}{'I' if b'stco' in stbl else 'Q'}", data, at + 8)
    at = stbl[b"stsz"][0]
    uniform, count = struct.unpack_from(">II", data, at + 4)
    sizes = (uniform,) * count if uniform else struct.unpack_from(f">{count}I", data, at + 12)
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
        tracks = tuple(_track(moov, begin, stop) for kind, begin, stop in children if kind == b"trak")
    except (KeyError, ValueError, IndexError, struct.error):
        return None
    return Movie(timescale, tracks, size)
