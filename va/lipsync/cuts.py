"""Where a long voice track is cut into the chunks a lip-sync provider accepts, and the frame counts it takes.

Pure arithmetic on frame numbers at the provider's frame rate: the plan calls it with the silences of the
padded audio, so every cut lies on a frame boundary and, where one is near, inside a pause.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from va.errors import ExitCode, VaError

#: Quieter than this counts as a pause: speech sits 20-30 dB above it, room noise below it.
SILENCE_NOISE_DB = -35.0
#: The shortest pause a cut may go into: a breath between phrases.
SILENCE_MIN_SECONDS = 0.25
FRAME_FORM = re.compile(r"^(\d+)n\+(\d+)$")


@dataclass(frozen=True, slots=True)
class Quantum:
    """The frame counts a provider accepts: multiples of ``multiple`` and/or of the form ``a*n + b``."""

    multiple: int = 1
    form_step: int = 1
    form_offset: int = 0

    def accepts(self, frames: int) -> bool:
        """Whether the provider takes ``frames`` frames."""
        return frames % self.multiple == 0 and frames % self.form_step == self.form_offset % self.form_step

    def pad(self, frames: int) -> int:
        """The least accepted count of at least ``frames``."""
        for count in range(frames, frames + self.multiple * self.form_step + 1):
            if self.accepts(count):
                return count
        raise ValueError(f"no frame count satisfies {self}")  # excluded by quantum_of

    def largest(self, limit: int) -> int:
        """The largest accepted count of at most ``limit`` (0 when there is none)."""
        return next((count for count in range(limit, 0, -1) if self.accepts(count)), 0)


def quantum_of(settings: dict[str, object], owner: str) -> Quantum:
    """The quantum of a provider's ``input`` settings or a template's segment contract (``frame_multiple``,
    ``frame_form`` such as ``4n+1``); a pair no count satisfies (16 and 4n+1) is a validation error naming
    its ``owner`` (``provider X``, ``workflow W``)."""
    multiple = int(str(settings.get("frame_multiple") or 1))
    form = str(settings.get("frame_form") or "1n+0")
    matched = FRAME_FORM.match(form)
    if matched is None or int(matched.group(1)) < 1:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{owner}: frame_form {form!r} is not 'an+b'")
    quantum = Quantum(multiple, int(matched.group(1)), int(matched.group(2)))
    if not any(quantum.accepts(count) for count in range(1, multiple * quantum.form_step + 1)):
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            f"{owner}: no frame count is a multiple of {multiple} and of the form {form}",
        )
    return quantum


def shortest_chunk(limit: int, quantum: Quantum) -> int:
    """The fewest frames a chunk of at most ``limit`` frames is cut to: a quarter of them, and at least
    the least count of more than one frame the provider's ``quantum`` takes (16 in windows of 16, 5 of
    the form 4n+1)."""
    # A quarter, not a half: a pause a third into the chunk is a better seam than speech at the limit.
    return min(limit, max(math.ceil(limit / 4), quantum.pad(2)))


@dataclass(frozen=True, slots=True)
class Cut:
    """One chunk: its first frame, its frame count, and how its end was chosen (``silence``: inside a
    pause; ``speech``: no pause within the search window; ``end``: the end of the audio)."""

    first: int
    frames: int
    end: str


def silent_frames(silences: list[tuple[float, float]], fps: int) -> list[tuple[int, int]]:
    """The frame boundaries inside each silence (given in seconds), as inclusive ranges."""
    inside = ((math.ceil(start * fps - 1e-6), math.floor(end * fps + 1e-6)) for start, end in silences)
    return [(low, high) for low, high in inside if low <= high]


def plan_cuts(
    total: int,
    *,
    limit: int,
    search: int,
    silent: list[tuple[int, int]],
    fits: Callable[[int], bool] | None = None,
    shortest: int = 1,
) -> list[Cut]:
    """Cut ``total`` frames into chunks of at most ``limit`` frames. Each cut goes into the silence
    (ranges of frame boundaries) nearest ``limit`` frames after the chunk's start, within ``search``
    frames before it; at that boundary itself when no silence is that near. No chunk, the last one
    included, is shorter than ``shortest`` frames (at most ``limit``) unless the frames left hold no two
    such chunks: then the last two share them. ``fits``: which lengths a chunk that is not the last may
    have (``limit`` must be one); any, when not given."""
    if limit < 1:
        raise ValueError("a chunk holds at least one frame")
    cuts, first = [], 0
    while total - first > limit:
        # A search reaching back to the chunk's start would cut it in its leading pause: chunks of a
        # frame or two, each a model start and a re-encode. The rest after the cut keeps as much.
        least = min(shortest, limit, (total - first) // 2)
        target = min(first + limit, total - least)
        low = max(first + max(least, 1), target - search)
        best: tuple[int, int] | None = None  # (distance from the target, cut)
        for start, end in silent:
            lo, hi = max(start, low), min(end, target)
            places = [p for p in range(lo, hi + 1) if fits(p - first)] if fits else [lo, hi] * (lo <= hi)
            if not places:
                continue
            # The middle of the part of the pause within reach: as far from the speech on either side
            # as the limit allows.
            middle = (lo + hi) // 2 if fits is None else min(places, key=lambda p: (abs(2 * p - lo - hi), p))
            candidate = (target - max(places), middle)
            if best is None or candidate < best:
                best = candidate
        cut = target if best is None else best[1]
        cuts.append(Cut(first, cut - first, "speech" if best is None else "silence"))
        first = cut
    cuts.append(Cut(first, total - first, "end"))
    return cuts
