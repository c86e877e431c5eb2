"""Generation by segments: a long voice cut into the clips an audio-driven video model makes one prompt at a
time (InfiniteTalk, Wan S2V, HuMo), each of a frame count the model takes, continuing one another.

Pure arithmetic on frame numbers at the model's frame rate, as the lip-sync chunks are (va.lipsync.cuts):
the plan calls it with the pauses of the padded voice, so the seams go into pauses where one is near.

A segment's clip holds ``frames`` frames: first ``head_frames`` that repeat the previous segment's last
frames (the model's motion context: for the first segment, the start frame held), then its new frames.
The new frames of all segments follow one another from frame 0 of the video; the last segment may make
a few more than the video needs (the model's frame form cannot always end exactly on the target), and
those are dropped at the join, so the kept frames add up exactly to the target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from va.errors import ExitCode, VaError
from va.lipsync.cuts import Cut, Quantum, plan_cuts, quantum_of


@dataclass(frozen=True, slots=True)
class SegmentContract:
    """What a template that generates segments declares (``segments`` of its bindings file): the rate the
    model makes frames at, the most frames one prompt returns, the frame counts it takes (``frame_form``
    an+b and ``frame_multiple``), the audio's sample rate, how many frames of the previous segment it is
    given (``context_frames``) and how many frames at the start of each clip repeat them (``head_frames``)."""

    fps: int
    max_frames: int
    frame_form: str = "1n+0"
    frame_multiple: int = 1
    sample_rate: int = 16000
    context_frames: int = 0
    head_frames: int = 0

    def quantum(self, workflow_id: str) -> Quantum:
        """The frame counts the model takes; a form no count satisfies is a validation error."""
        settings = {"frame_form": self.frame_form, "frame_multiple": self.frame_multiple}
        return quantum_of(settings, f"workflow {workflow_id}: segments")


@dataclass(frozen=True, slots=True)
class SegmentCut:
    """Where one segment lies: its first new frame in the video, the frames the model returns (head
    included), and of its new frames how many the video keeps; ``cut``: how its end was chosen
    (``silence``, ``speech``: no pause near, ``end``)."""

    first: int
    frames: int
    kept: int
    cut: str


def longest_new(contract: SegmentContract, workflow_id: str) -> int:
    """The most new frames one segment can make: of the model's form, within ``max_frames`` with its head."""
    quantum, head = contract.quantum(workflow_id), contract.head_frames
    limit = next((new for new in range(contract.max_frames - head, 0, -1) if quantum.accepts(new + head)), 0)
    if limit < 1:
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            f"workflow {workflow_id}: segments of at most {contract.max_frames} frames of the form "
            f"{contract.frame_form} with {head} head frames hold no new frame",
        )
    return limit


def cut_segments(
    total: int,
    contract: SegmentContract,
    workflow_id: str,
    *,
    silent: list[tuple[int, int]],
    search: int,
    limit: int | None = None,
) -> list[SegmentCut]:
    """Cut ``total`` new frames into segments of the model's frame form, each within ``max_frames`` (and
    within ``limit`` new frames when given, e.g. a shorter ``segment_seconds``), their seams inside the
    silences (ranges of frame boundaries) nearest the longest segment, within ``search`` frames of it.
    The kept frames add up to ``total``; only the last segment may make more than it keeps."""
    quantum, head = contract.quantum(workflow_id), contract.head_frames
    longest = longest_new(contract, workflow_id)
    if limit is not None:
        fitting = [new for new in range(min(limit, longest), 0, -1) if quantum.accepts(new + head)]
        if not fitting:
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f"workflow {workflow_id}: segments of at most {limit} new frames hold no frame count of "
                f"the form {contract.frame_form} with {head} head frames",
            )
        longest = fitting[0]

    def fits(new: int) -> bool:
        return new >= 1 and quantum.accepts(new + head)

    cuts: list[Cut] = plan_cuts(total, limit=longest, search=search, silent=silent, fits=fits)
    segments = []
    for cut in cuts:
        new = next(count for count in range(cut.frames, longest + 1) if fits(count))
        segments.append(SegmentCut(cut.first, new + head, cut.frames, cut.end))
    return segments


@dataclass(frozen=True, slots=True)
class VoiceSegment:
    """One prompt of a generation by segments: its clip of ``frames`` frames at the model's rate (the
    first ``head_frames`` repeat the context and are dropped), whose new frames start at frame ``first``
    of the generated picture and of which the picture keeps ``kept``; its voice is the padded audio from
    ``audio_start_seconds`` (negative: silence first) for ``audio_seconds``. ``take``: how often it was
    retaken (``va retake``); ``prompt``, ``negative``, ``strength``: a timeline's or a retake's."""

    index: int
    name: str
    first: int
    frames: int
    head_frames: int
    kept: int
    start_seconds: float
    end_seconds: float
    audio_start_seconds: float
    audio_seconds: float
    seed: int
    cut: str
    take: int = 0
    prompt: str | None = None
    negative: str | None = None
    strength: float | None = None


@dataclass(frozen=True, slots=True)
class Retake:
    """What ``va retake`` asked of one segment: its ``take`` (1 for the first retake), and the seed and
    prompt it is made with (None: a fresh seed of the take; the prompt it had)."""

    take: int
    seed: int | None = None
    prompt: str | None = None


def segment_at(segments: tuple[VoiceSegment, ...], seconds: float) -> VoiceSegment | None:
    """The segment whose kept frames show the moment ``seconds`` of the video, None outside it."""
    return next((s for s in segments if s.start_seconds <= seconds < s.end_seconds), None)


def read_retakes(path: Path) -> dict[str, Retake]:
    """The retakes ``va retake`` recorded (``comfyui/retakes.json``: segment name -> take, seed, prompt);
    none when there is no such file."""
    if not path.is_file():
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    return {name: Retake(**fields) for name, fields in document.items()}
