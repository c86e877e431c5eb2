"""The parts of a plan a stage reads, and the plan file's JSON spelling: the types every rule's settings
(va/rule_settings.py) are made of. They live apart from the planner (va/plan.py) so that a rule's process,
which only parses its settings, loads none of the planning and none of the job's schema checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from va import media
from va.face import FaceSearch
from va.jsondata import as_data
from va.lipsync.sync import UNCHECKED, SyncSettings
from va.segments import SegmentContract, VoiceSegment

#: What a template's binding receives: a value of a ComfyUI node's input (va.comfyui.protocol's
#: ``ParameterValue``, spelled here because the plan knows nothing of the ComfyUI stage).
BindingValue = str | int | float | bool | None

#: Batch seeds wrap around at 2**64, the range of ComfyUI's seed inputs.
SEED_LIMIT = 2**64
#: Distance between the seeds of two attempts of one batch under ``seed_policy: per_retry``.
RETRY_SEED_STRIDE = 1_000_003


def batch_seed(seed: int, index: int, attempt: int = 0, per_retry: bool = False) -> int:
    """Seed of a batch: the run's seed plus the batch index (plus a stride per retry under ``per_retry``).
    Here, not in the planner, because the ComfyUI stage seeds each attempt with it."""
    return (seed + index + (attempt * RETRY_SEED_STRIDE if per_retry else 0)) % SEED_LIMIT


@dataclass(frozen=True, slots=True)
class Buffer:
    """``buffer``: seconds of silence before and after the voice."""

    pre_seconds: float
    post_seconds: float


@dataclass(frozen=True, slots=True)
class InputFile:
    """An input of the run and the SHA-256 of its content."""

    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Seeds:
    """The seed policy and the run's seed (batch seeds derive from it)."""

    policy: str
    value: int


@dataclass(frozen=True, slots=True)
class Geometry:
    """The output picture: its even size, and how the start frame (of the source size, as displayed)
    becomes the held still on the background (``filter``: the ffmpeg scale/crop chain, to the still's
    size). The still has the output's size, except for a generated picture without ``output.width/height``:
    the output then has ComfyUI's planned size, and the start (what ComfyUI is given) keeps its own."""

    width: int
    height: int
    fit: str
    background: str
    source_width: int
    source_height: int
    filter: str
    still_width: int
    still_height: int

    @property
    def canvas(self) -> media.Canvas:
        """The output picture, as every stage's video is brought to it and checked for."""
        return media.Canvas(self.width, self.height, self.fit, self.background)

    @property
    def still_size(self) -> tuple[int, int]:
        """The held still's ``(width, height)``."""
        return self.still_width, self.still_height


@dataclass(frozen=True, slots=True)
class Encoding:
    """The x264 settings of every encoded picture."""

    crf: int
    preset: str


@dataclass(frozen=True, slots=True)
class Batch:
    """One ComfyUI prompt: which frames (0-based ``first``, ``frames`` of them) with which seed."""

    index: int
    name: str
    first: int
    frames: int
    seed: int
    #: With a timeline: the segment the batch lies in (None: in none), and what that segment sets.
    segment: int | None = None
    prompt: str | None = None
    negative: str | None = None
    strength: float | None = None


@dataclass(frozen=True, slots=True)
class ComfyWait:
    """How patiently the ComfyUI stage waits for its servers (which servers: the rule's pool,
    va.comfyui.pool): the job's retries and waits."""

    retries: int
    unavailable_seconds: float
    poll_interval_ms: int
    stall_seconds: float
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class Sampling:
    """What every batch's template receives, resolved: a batch of a timeline segment may carry its own
    prompt, negative prompt and strength (``Batch``), which take the place of these."""

    prompt: str
    negative: str
    cfg: float
    #: ``comfyui.params.ckpt_name``, else vidax.json's ``comfyui.ckpt_name`` when the run was planned.
    checkpoint: str
    width: int
    height: int
    steps: int
    sampler: str
    scheduler: str
    denoise: float | None
    motion_strength: float


@dataclass(frozen=True, slots=True)
class Generation:
    """The ComfyUI stage: frames generated at ``fps`` in batches, with the job's ComfyUI settings."""

    fps: int
    frames: int
    batch_size: int
    batches: tuple[Batch, ...]
    workflow_ids: tuple[str, ...]
    #: Whether the batches were cut at a timeline's segments.
    segmented: bool = False
    #: A template that generates segments (docs/COMFYUI_INTERFACE.md, Segments): the model's contract and
    #: the segments, in place of batches; ``chained``: each needs the one before it; ``template``: a digest
    #: of the template's graph and bindings, so an edited template remakes the segments.
    contract: SegmentContract | None = None
    segments: tuple[VoiceSegment, ...] = ()
    chained: bool = False
    template: str = ""
    lipsync_in_model: bool = False
    #: The sync check of the picture of a template that lip-syncs in the model (``lipsync.sync_check``,
    #: resolved for it); it runs when no lip-sync stage follows.
    sync: SyncSettings = UNCHECKED
    #: ``comfyui.crossfade_frames`` of a generation by segments: frames blended at each seam (0: none).
    crossfade_frames: int = 0

    def segment(self, name: str) -> VoiceSegment:
        """The segment called ``name``."""
        return next(segment for segment in self.segments if segment.name == name)

    sampling: Sampling | None = None
    wait: ComfyWait | None = None
    #: ``seed_policy: per_retry``: each retry of a batch takes a seed of its own.
    per_retry: bool = False
    #: The run's seed, from which each batch's (and each retry's) derives.
    seed: int = 0

    def values(self, batch: Batch | VoiceSegment, seed: int) -> dict[str, BindingValue]:
        """What the template's bindings receive for ``batch`` (or a segment) submitted with ``seed``."""
        sampling = self.sampling
        assert sampling is not None, "a planned generation carries its sampling"
        return {
            "prompt": batch.prompt or sampling.prompt,
            "negative": batch.negative or sampling.negative,
            "width": sampling.width,
            "height": sampling.height,
            "frames": batch.frames,
            "fps": self.fps,
            "seed": seed,
            "steps": sampling.steps,
            "cfg": sampling.cfg,
            "sampler": sampling.sampler,
            "scheduler": sampling.scheduler,
            "ckpt_name": sampling.checkpoint,
            "denoise": sampling.denoise,
            # a batch of a timeline segment carries the segment's strength, which may be 0
            "motion_strength": sampling.motion_strength if batch.strength is None else batch.strength,
        }


@dataclass(frozen=True, slots=True)
class Chunk:
    """One run of the lip-sync provider: ``frames`` frames from frame ``first`` (0-based, at the provider's
    rate), the padded audio from ``start_seconds`` to ``end_seconds``. The tool gets ``input_frames``
    frames and ``input_seconds`` of audio (padded up to its frame quantum); its output is trimmed back.
    ``cut``: how the chunk's end was chosen (``silence``, ``speech``: no pause near, ``end``)."""

    index: int
    name: str
    first: int
    frames: int
    start_seconds: float
    end_seconds: float
    input_frames: int
    input_seconds: float
    cut: str


@dataclass(frozen=True, slots=True)
class Lipsync:
    """The lip-sync stage: the provider and its resolved settings (secret values as digests), the frame
    rate and frame count of its output, and the chunks it runs on (one, unless the audio is cut)."""

    provider: str
    type: str
    settings: dict[str, Any]
    allow_passthrough: bool
    fps: int
    frames: int
    chunks: tuple[Chunk, ...]
    #: A provider that needs a face (``needs_face``): what the check of the start saw, in the output
    #: picture's pixels. None: the provider needs none.
    face: FaceSearch | None = None
    #: The sync check after the provider (``lipsync.sync_check``), resolved for it.
    sync: SyncSettings = UNCHECKED

    @property
    def chunked(self) -> bool:
        """Whether the audio is cut: each chunk is then a job of its own, joined to the stage's output."""
        return len(self.chunks) > 1


class Visual(StrEnum):
    """Where the picture comes from. The values are what the plan and the manifest record."""

    #: The start frame held for every frame (the stream-copied loop).
    HELD_STILL = "held_start_frame"
    #: The held still with a camera move (``motion.strength`` > 0).
    CAMERA_MOVE = "camera_move"
    #: ComfyUI's frames or clips, in batches of ``comfyui.batch_size``.
    COMFYUI_BATCHES = "comfyui"
    #: ComfyUI's clips of a template that generates segments (each with its voice), joined.
    COMFYUI_SEGMENTS = "comfyui_segments"

    @property
    def generated(self) -> bool:
        """Whether ComfyUI makes the picture."""
        return self in (Visual.COMFYUI_BATCHES, Visual.COMFYUI_SEGMENTS)


@dataclass(frozen=True, slots=True)
class Stages:
    """Which stages run: the one place the rules, ``describe``, the manifest and the encode ask."""

    visual: Visual
    #: ``stabilize.enable`` for a generated picture (a held still has nothing to steady).
    stabilize: bool
    #: The lip-sync provider that runs, None: the stage does not run.
    lipsync: str | None
    #: ``none``, ``soft`` (a subtitle track) or ``burn`` (drawn into the picture).
    captions: str

    @property
    def visual_video(self) -> str | None:
        """The picture's video before lip-sync, relative to the job's folder: ComfyUI's (stabilized, when
        asked), or the held still with a camera move; None for a still held as is."""
        if self.stabilize:
            return "stabilize/output.mp4"
        if self.visual.generated:
            return "comfyui/output.mp4"
        return "motion/output.mp4" if self.visual is Visual.CAMERA_MOVE else None


@dataclass(frozen=True, slots=True)
class CameraMove:
    """One move of the camera over the still: which, and how strong (0..1)."""

    camera: str
    strength: float


@dataclass(frozen=True, slots=True)
class Caption:
    """One caption, in seconds of the voice track."""

    start: float
    end: float
    text: str


PROVENANCE_FIELDS = ("job_sha256", "effective_params", "tools")


def canonical_json(value: Any) -> str:
    """One spelling of a JSON value (sorted keys, no spaces): what is hashed and compared."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def generation_document(generation: Generation) -> dict[str, Any]:
    """The ComfyUI stage's plan as JSON data. A batch has only the segment fields that are set (and
    ``segment`` only when the batches were cut at a timeline's segments)."""
    document: dict[str, Any] = as_data(generation)
    for batch in document["batches"]:
        for key in ("prompt", "negative", "strength"):
            if batch[key] is None:
                del batch[key]
        if not generation.segmented:
            del batch["segment"]
    return document


def document_fingerprint(document: dict[str, Any]) -> str:
    """``plan_fingerprint`` of a plan's JSON data (``prepare/plan.json`` as read)."""
    kept = {key: value for key, value in document.items() if key not in (*PROVENANCE_FIELDS, "job")}
    return hashlib.sha256(canonical_json(kept).encode()).hexdigest()[:16]
