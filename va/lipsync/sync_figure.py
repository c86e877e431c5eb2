"""The report's figure of the sync check: the mouth's opening drawn over the voice's loudness, frame by frame,
with the verdict above them (``report/sync.png``, rule report_sync)."""

from __future__ import annotations

from pathlib import Path

from va.atomic import partial_file
from va.lipsync.sync import LOUDNESS_RANGE_DB, SyncData, SyncTrack, summary
from va.media import FIGURE_BACKGROUND, WAVEFORM_COLOUR, WAVEFORM_SIZE

MOUTH_COLOUR = "#f59e0b"
TEXT_COLOUR = "#e5e7eb"
#: Pixels above the curves for the legend and the verdict.
HEADER = 22


def _scaled(values: list[float | None], low: float, high: float) -> list[float | None]:
    """``values`` between 0 (``low``) and 1 (``high``), a missing one kept missing."""
    span = (high - low) or 1.0
    return [None if v is None else min(1.0, max(0.0, (v - low) / span)) for v in values]


def _curve(values: list[float | None], width: int, height: int) -> list[list[tuple[float, float]]]:
    """The polylines of ``values`` (0 to 1) across ``width`` pixels, broken where a value is missing."""
    step = width / max(1, len(values) - 1)
    lines: list[list[tuple[float, float]]] = [[]]
    for index, value in enumerate(values):
        if value is None:
            lines.append([])
            continue
        lines[-1].append((index * step, HEADER + (1.0 - value) * (height - HEADER - 4)))
    return [line for line in lines if len(line) > 1]


def draw_track(track: SyncTrack, record: SyncData, target: Path) -> None:
    """Write a PNG (``WAVEFORM_SIZE``) of ``track``: the loudness (blue) and the mouth's opening (amber),
    each scaled to its own range, one point a frame; the verdict of ``record`` (the stage's) on top."""
    from PIL import Image, ImageDraw  # noqa: PLC0415 - only the report draws

    width, height = WAVEFORM_SIZE
    image = Image.new("RGB", (width, height), "#" + FIGURE_BACKGROUND.removeprefix("0x"))
    draw = ImageDraw.Draw(image)
    loud = max(track.loudness, default=0.0)
    voice = _scaled(list(track.loudness), loud - LOUDNESS_RANGE_DB, loud)
    seen = [value for value in track.mouth if value is not None]
    mouth = _scaled(list(track.mouth), min(seen, default=0.0), max(seen, default=1.0))
    for colour, values in (("#" + WAVEFORM_COLOUR.removeprefix("0x"), voice), (MOUTH_COLOUR, mouth)):
        for line in _curve(values, width, height):
            draw.line(line, fill=colour, width=2)
    draw.text((6, 4), "loudness", fill="#" + WAVEFORM_COLOUR.removeprefix("0x"))
    draw.text((70, 4), "mouth opening", fill=MOUTH_COLOUR)
    seconds = len(track.loudness) / track.fps
    draw.text((180, 4), f"{summary(record)}; {seconds:.1f} s at {track.fps} fps", fill=TEXT_COLOUR)
    with partial_file(target) as partial:
        image.save(partial, format="PNG")
