"""The record of what ``va`` checked before it started Snakemake, read by the graph so that each input is
probed (and each start searched for a face) once a run, not once by ``va`` and again by the graph.

``va run`` and ``va batch`` write it (``record_checks``) into the workdir (the batch's OUT folder) from
what their checks found; the Snakefile reads it once when it loads (``seed_checks``) into the caches of
the checks (va/memo.py), so the planner finds them there. Every result stays keyed by the identity of
its file: one changed since it was checked is checked anew. Only successful checks are recorded (a
failure is made again, and the graph says it as it always did). A record of another va version, of
another ffmpeg or ffprobe, or one that cannot be read is ignored: everything is checked anew.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import va
from va import media
from va.atomic import read_json, write_json_atomic
from va.errors import VaError
from va.face import FaceBox, FaceSearch
from va.job import CHECKED_AUDIO, CHECKED_VISUAL, CheckedAudio, Job
from va.memo import FileIdentity, identity_of
from va.plan import FACE_SEARCHES, FaceQuestion

#: What the record says it is; another value is a file of something else.
KIND = "va input checks"
FACE_BOX_SIDES = ("x", "y", "width", "height")
COLOUR_FIELDS = tuple(field.name for field in dataclasses.fields(media.ColourTags))
#: The packages that may provide cv2, the pinned one first: a face search depends on its cascade.
OPENCV_DISTRIBUTIONS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless")


def record_checks(path: Path, jobs: Iterable[Job]) -> None:
    """Write what this process found of the inputs of ``jobs`` to ``path``, atomically (not synced: a
    lost record only costs the graph the checks)."""
    audio: set[FileIdentity] = set()
    starts: set[FileIdentity] = set()
    for job in jobs:
        for files, file in ((audio, job.audio), (starts, job.start)):
            with contextlib.suppress(OSError):  # gone since it was checked: the graph will say so
                files.add(identity_of(file))
    faces = [(question, found) for question, found in FACE_SEARCHES.items() if question.start in starts]
    document = {
        "kind": KIND,
        "va": va.__version__,
        "tools": _tool_identities(),
        "audio": [
            {"file": key.as_dict(), "header_seconds": checked.header_seconds,
             "decoded_seconds": checked.decoded_seconds}
            for key, checked in CHECKED_AUDIO.items() if key in audio
        ],
        "visual": [
            {"file": key.as_dict(), "codec": info.codec, "width": info.width, "height": info.height,
             "pix_fmt": info.pix_fmt, "has_alpha": info.has_alpha, "orientation": info.orientation,
             "pixel_aspect": list(info.pixel_aspect), "colour": dataclasses.asdict(info.colour),
             "interlaced": info.interlaced}
            for key, info in CHECKED_VISUAL.items() if key in starts
        ],
        "opencv": _opencv_version() if faces else None,
        "faces": [_face_record(question, found) for question, found in faces],
        "versions": [{"tool": key.as_dict(), "version": line} for key, line in media.TOOL_VERSIONS.items()],
        "colour_names": [
            {"tool": key.as_dict(), "names": sorted(names)} for key, names in media.COLOUR_NAMES.items()
        ],
    }  # fmt: skip
    write_json_atomic(path, document, durable=False)


def seed_checks(path: Path) -> int:
    """Put the results of the record at ``path`` into the caches of the checks; returns how many. A
    missing, unreadable or foreign record (another va, ffmpeg or ffprobe) seeds nothing."""
    try:
        document = read_json(path)
        made_by = (document.get("kind"), document.get("va"), document.get("tools"))
        if made_by != (KIND, va.__version__, _tool_identities()):
            return 0
        seeds = _read_seeds(document)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0
    for memo, key, value in seeds:
        memo.keep(key, value)
    return len(seeds)


def _read_seeds(document: dict[str, Any]) -> list[tuple[Any, Any, Any]]:
    """Every result of a record as (cache, key, value); any malformed entry fails the whole record."""
    seeds: list[tuple[Any, Any, Any]] = []
    for entry in document["audio"]:
        checked = CheckedAudio(_seconds(entry["header_seconds"]), _seconds(entry["decoded_seconds"]))
        seeds.append((CHECKED_AUDIO, FileIdentity.from_dict(entry["file"]), checked))
    for entry in document["visual"]:
        key = FileIdentity.from_dict(entry["file"])
        info = media.VisualInfo(
            path=Path(key.path),
            codec=_typed(entry["codec"], str),
            width=_size(entry["width"]),
            height=_size(entry["height"]),
            pix_fmt=_typed(entry["pix_fmt"], str),
            has_alpha=_typed(entry["has_alpha"], bool),
            orientation=_typed(entry["orientation"], int),
            pixel_aspect=(_size(entry["pixel_aspect"][0]), _size(entry["pixel_aspect"][1])),
            colour=media.ColourTags(**{key: _typed(entry["colour"][key], str) for key in COLOUR_FIELDS}),
            interlaced=_typed(entry["interlaced"], bool),
        )
        seeds.append((CHECKED_VISUAL, key, info))
    if document["faces"] and document["opencv"] == _opencv_version():
        seeds += [(FACE_SEARCHES, *_face_of(entry)) for entry in document["faces"]]
    for entry in document["versions"]:
        version = _typed(entry["version"], str)
        seeds.append((media.TOOL_VERSIONS, FileIdentity.from_dict(entry["tool"]), version))
    for entry in document["colour_names"]:
        names = frozenset(_typed(name, str) for name in entry["names"])
        seeds.append((media.COLOUR_NAMES, FileIdentity.from_dict(entry["tool"]), names))
    return seeds


def _face_record(question: FaceQuestion, found: FaceSearch) -> dict[str, Any]:
    geometry = question.geometry
    return {
        "start": question.start.as_dict(),
        "is_video": question.is_video,
        "geometry": {"width": geometry.width, "height": geometry.height, "filter": geometry.filter},
        "background": question.background,
        "search": found.as_dict(),
    }


def _face_of(entry: dict[str, Any]) -> tuple[FaceQuestion, FaceSearch]:
    geometry, search, box = entry["geometry"], entry["search"], entry["search"]["box"]
    question = FaceQuestion(
        start=FileIdentity.from_dict(entry["start"]),
        is_video=_typed(entry["is_video"], bool),
        geometry=media.FrameGeometry(_size(geometry["width"]), _size(geometry["height"]),
                                     _typed(geometry["filter"], str)),
        background=_typed(entry["background"], str),
    )  # fmt: skip
    faceless = search["faceless_frame"]
    found = FaceSearch(
        file=_typed(search["file"], str),
        frames=tuple(_typed(frame, int) for frame in search["frames"]),
        box=None if box is None else FaceBox(*(_typed(box[side], int) for side in FACE_BOX_SIDES)),
        faceless_frame=None if faceless is None else _typed(faceless, int),
    )
    return question, found


def _typed(value: Any, kind: type) -> Any:
    """``value`` when it is a ``kind`` (a bool is no int here), else ``TypeError``."""
    if type(value) is not kind:
        raise TypeError(f"not a {kind.__name__}: {value!r}")
    return value


def _size(value: Any) -> int:
    if _typed(value, int) <= 0:
        raise ValueError(f"not a size: {value!r}")
    return int(value)


def _seconds(value: Any) -> float:
    seconds = float(value) if type(value) in (int, float) else math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def _tool_identities() -> dict[str, Any]:
    """The ffmpeg and ffprobe this process would run (the probes depend on them), None for one missing."""
    tools: dict[str, Any] = {}
    for name in ("ffmpeg", "ffprobe"):
        try:
            tools[name] = identity_of(media.executable(name)).as_dict()
        except (VaError, OSError):
            tools[name] = None
    return tools


def _opencv_version() -> str | None:
    """The installed OpenCV package and version, read from its metadata (importing cv2 takes a while)."""
    for name in OPENCV_DISTRIBUTIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            return f"{name} {metadata.version(name)}"
    return None
