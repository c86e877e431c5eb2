"""Timing files (``timeline``, ``timeline_file``): segments of the voice track, and the captions they carry.

A segment is ``{start, end}`` in seconds of the voice track (0 is its first sample; the pre buffer shifts it
in the video) with an optional ``prompt``, ``negative``, ``strength`` and ``caption``. They come inline in the
job, or from a JSON/YAML file of the same list, or from an SRT/WebVTT file whose cues become segments with a
caption. Captions are written as ``captions.srt`` and ``captions.vtt`` beside the final video, their times
on the video's frame boundaries, and muxed into it as a subtitle track or drawn into the picture.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from va.errors import ExitCode, VaError, not_a_file
from va.schema import describe_error, schema_path

if TYPE_CHECKING:
    from va.job import Job
    from va.rule_settings import CaptionsSettings

log = logging.getLogger(__name__)

SUBTITLE_SUFFIXES = {".srt": "srt", ".vtt": "vtt"}
DATA_SUFFIXES = frozenset({".json", ".yaml", ".yml"})


@dataclass(frozen=True)
class Segment:
    """One segment of the voice track; ``line`` is where its cue starts in an SRT/WebVTT file."""

    start: float
    end: float
    prompt: str | None = None
    negative: str | None = None
    strength: float | None = None
    caption: str | None = None
    line: int | None = None

    def name(self, index: int) -> str:
        """How an error names this segment: its index, its times, and its file line if it has one."""
        where = f", line {self.line}" if self.line else ""
        return f"segment {index} ({self.start:g}-{self.end:g} s{where})"


def _segment_schema() -> dict[str, Any]:
    """The job schema's ``timeline`` (its limit of segments too), for a timeline file's list."""
    document = json.loads(schema_path("job").read_text(encoding="utf-8"))
    return {**document["properties"]["timeline"], "$defs": document["$defs"]}


def _from_data(items: Any, source: str) -> tuple[Segment, ...]:
    # Imported here, as pysubs2 below: only the planner reads a timeline file; the captions rule, which
    # imports this module too, never needs the checks (about 60 ms of start-up with YAML's reader).
    import jsonschema  # noqa: PLC0415

    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(_segment_schema()).iter_errors(items)
    )
    if error is not None:
        message = describe_error(error) if error.absolute_path else f"the list: {describe_error(error)}"
        raise VaError(ExitCode.VALIDATION_FAILED, f"{source}: {message}")
    return tuple(Segment(**item) for item in items)


def _cue_lines(path: Path) -> list[int]:
    """The line number of each cue's timing line (``00:00:01,000 --> ...``), in file order."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    return [number for number, line in enumerate(text.splitlines(), start=1) if "-->" in line]


def _from_subtitles(path: Path) -> tuple[Segment, ...]:
    # Imported here, as in write_captions: every rule script imports this module through the plan, and
    # only a job with a subtitle file or captions needs the parser (about 30 ms of start-up).
    import pysubs2  # noqa: PLC0415

    try:
        cues = pysubs2.load(str(path), encoding="utf-8", format_=SUBTITLE_SUFFIXES[path.suffix.lower()])
    except (pysubs2.Pysubs2Error, UnicodeDecodeError, ValueError) as exc:
        raise VaError(
            ExitCode.UNSUPPORTED_FORMAT, f"timeline_file: not a readable subtitle file: {path}: {exc}"
        ) from exc
    lines = _cue_lines(path)
    return tuple(
        Segment(
            start=cue.start / 1000,
            end=cue.end / 1000,
            caption=cue.plaintext,
            line=lines[i] if i < len(lines) else None,
        )
        for i, cue in enumerate(cues)
    )


def load_segments(job: Job) -> tuple[Segment, ...]:
    """The job's segments, inline or from ``timeline_file``; none when it has neither."""
    if job.timeline is not None and job.timeline_file is not None:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{job.path}: timeline and timeline_file: give one of them")
    if job.timeline is not None:
        return job.timeline
    if job.timeline_file is None:
        return ()
    path = job.timeline_file
    if not path.is_file():
        raise not_a_file("timeline_file", path)
    suffix = path.suffix.lower()
    if suffix in SUBTITLE_SUFFIXES:
        return _from_subtitles(path)
    if suffix not in DATA_SUFFIXES:
        raise VaError(ExitCode.UNSUPPORTED_FORMAT, f"timeline_file: use .json, .yaml, .srt or .vtt: {path}")
    import yaml  # noqa: PLC0415 - see _from_data

    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML reads JSON too
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise VaError(ExitCode.VALIDATION_FAILED, f"timeline_file: not valid JSON or YAML: {path}") from exc
    return _from_data(items, f"timeline_file {path}")


def check_segments(segments: tuple[Segment, ...], voice_seconds: float, post_seconds: float) -> None:
    """Segments are in order, do not overlap, start before they end and end inside the padded audio."""
    limit = voice_seconds + post_seconds
    for index, segment in enumerate(segments):
        if segment.start >= segment.end:
            raise VaError(
                ExitCode.VALIDATION_FAILED, f"timeline: {segment.name(index)}: start is not before end"
            )
        if segment.end > limit + 1e-6:
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f"timeline: {segment.name(index)}: ends after the padded audio "
                f"({voice_seconds:.3f} s of voice + {post_seconds:g} s after it)",
            )
        if index and segment.start < segments[index - 1].end - 1e-9:
            before = segments[index - 1]
            problem = "starts before" if segment.start < before.start else "overlaps"
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f"timeline: {segment.name(index)} {problem} {before.name(index - 1)}",
            )


def check_timeline(job: Job, voice_seconds: float) -> None:
    """``va validate``'s check of the job's segments against its voice track's length (as its header
    says it, ``voice_seconds``)."""
    segments = load_segments(job)
    if segments:
        check_segments(segments, voice_seconds, job.buffer.post_seconds)


def frame_at(seconds: float, fps: int) -> int:
    """The frame boundary nearest to ``seconds``, a tie going to the later frame (the 1e-9 because
    0.5 s * 25 can come out as 12.4999...)."""
    return math.floor(seconds * fps + 0.5 + 1e-9)


def captions_mode(job: Job, segments: tuple[Segment, ...]) -> str:
    """``none``, ``soft`` or ``burn``: ``auto`` is ``soft`` when a segment has a caption."""
    mode = job.output.captions
    if mode == "auto":
        return "soft" if any(segment.caption for segment in segments) else "none"
    return mode


def write_captions(segments: tuple[Segment, ...], pre_seconds: float, fps: int, srt: Path, vtt: Path) -> int:
    """The captions as SRT and WebVTT, in the video's time (shifted by the pre buffer) and on its frame
    boundaries, so a caption appears and goes with a frame. Returns how many captions were written."""
    import pysubs2  # noqa: PLC0415

    subtitles = pysubs2.SSAFile()
    for segment in segments:
        if not segment.caption:
            continue
        start, end = (frame_at(t + pre_seconds, fps) * 1000 / fps for t in (segment.start, segment.end))
        subtitles.append(
            pysubs2.SSAEvent(start=round(start), end=round(end), text=segment.caption.replace("\n", "\\N"))
        )
    srt.parent.mkdir(parents=True, exist_ok=True)
    subtitles.save(str(srt), format_="srt")
    subtitles.save(str(vtt), format_="vtt")
    return len(subtitles)


def render_captions(settings: CaptionsSettings, srt: Path, vtt: Path) -> None:
    """The captions rule: the job's captions in the run's time, as ``srt`` and ``vtt``."""
    segments = tuple(Segment(c.start, c.end, caption=c.text) for c in settings.captions)
    count = write_captions(segments, settings.pre_seconds, settings.fps, srt, vtt)
    log.info(
        "%s caption(s), shifted by the %s s pre buffer, on frame boundaries at %s fps",
        count,
        settings.pre_seconds,
        settings.fps,
    )


def inline_timeline(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """The job document (to live at ``path``) with its ``timeline_file`` read into ``timeline``: VIDAX
    reads a user's file once, when it accepts the job, never again while the job waits or runs."""
    if "timeline_file" not in document:
        return document
    from va.job import job_from_document  # noqa: PLC0415 - the job module imports this one

    segments = load_segments(job_from_document(document, path))
    fields = ("start", "end", "prompt", "negative", "strength", "caption")
    items = [{name: getattr(s, name) for name in fields if getattr(s, name) is not None} for s in segments]
    return {**{k: v for k, v in document.items() if k != "timeline_file"}, "timeline": items}


def cut_batches(
    frames: int, size: int, fps: int, pre_seconds: float, segments: tuple[Segment, ...]
) -> list[tuple[int, int, int | None]]:
    """Batches of at most ``size`` generated frames that never span two segments: ``(first, frames,
    segment index or None)``. Segment edges fall on the frame nearest to them in the video's time."""
    edges = {0, frames}
    for segment in segments:
        for seconds in (segment.start, segment.end):
            edges.add(min(frames, max(0, frame_at(seconds + pre_seconds, fps))))
    ordered = sorted(edges)
    cuts = []
    for low, high in itertools.pairwise(ordered):
        middle = (low + high) / 2 / fps - pre_seconds
        owner = next((i for i, s in enumerate(segments) if s.start <= middle < s.end), None)
        cuts += [(first, min(size, high - first), owner) for first in range(low, high, size)]
    return cuts


class SegmentOverrides(TypedDict, total=False):
    """What a segment sets for the batches inside it (each only when the segment sets it)."""

    prompt: str
    negative: str
    strength: float


def segment_overrides(segment: Segment) -> SegmentOverrides:
    """What a segment sets for the batches inside it: its prompt, negative prompt and strength."""
    overrides = SegmentOverrides()
    if segment.prompt is not None:
        overrides["prompt"] = segment.prompt
    if segment.negative is not None:
        overrides["negative"] = segment.negative
    if segment.strength is not None:
        overrides["strength"] = segment.strength
    return overrides
