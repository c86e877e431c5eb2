"""Each rule's settings: the typed slice of the plan one stage reads, and all it reads.

The Snakefile gives a rule its settings as ``params.settings`` (``settings_json``), so Snakemake's params
trigger reruns the rule when, and only when, what its output depends on changed; the rule's script parses
them (``parse_settings``) and calls one function of the package with them. No stage opens the job file or
``prepare/plan.json``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from va import media
from va.jsondata import as_data, from_data
from va.lipsync.sync import ChunkWindow, SyncSettings
from va.plan_parts import (
    Buffer,
    CameraMove,
    Caption,
    Chunk,
    Encoding,
    Generation,
    Geometry,
    InputFile,
    Lipsync,
    Visual,
    canonical_json,
    generation_document,
)
from va.segments import VoiceSegment

if TYPE_CHECKING:  # the planner cuts these settings; a rule that parses them does not load it
    from va.plan import Plan


@dataclass(frozen=True, slots=True)
class Picture:
    """The video a stage encodes: ``frames`` frames at ``fps``, of ``geometry``'s size, with ``encoding``."""

    fps: int
    frames: int
    geometry: Geometry
    encoding: Encoding

    def encode(
        self,
        source: list[str],
        target: Path,
        *,
        source_size: tuple[int, int],
        retime: float | None = None,
        picture_filter: str = "",
        select: str = "",
        blend: media.SeamBlend | None = None,
    ) -> None:
        """Encode ``source`` (ffmpeg input arguments, frames of ``source_size``) as this picture, without
        audio: its frames, rate and canvas, with its encoding (``media.encode_picture`` for the rest)."""
        media.encode_picture(
            source,
            None,
            target,
            fps=self.fps,
            frames=self.frames,
            crf=self.encoding.crf,
            preset=self.encoding.preset,
            canvas=self.geometry.canvas,
            source_size=source_size,
            retime=retime,
            picture_filter=picture_filter,
            select=select,
            blend=blend,
        )


@dataclass(frozen=True, slots=True)
class AudioSettings:
    """``prepare_audio``: the voice padded by ``buffer`` (normalized to ``loudness`` when set) must last
    ``padded_seconds``. No frame rate: the padded audio is the same at any. ``probe``: the voice as the
    plan probed it (None: probed by the stage)."""

    voice: InputFile
    buffer: Buffer
    loudness: media.LoudnessTarget | None
    voice_seconds: float
    padded_seconds: float
    probe: media.AudioInfo | None = None


@dataclass(frozen=True, slots=True)
class StillSettings:
    """``hold_start_frame``: the start rendered as the still, and two seconds of it encoded. ``probe``:
    the start as the plan probed it (None: probed by the stage)."""

    start: InputFile
    geometry: Geometry
    fps: int
    encoding: Encoding
    probe: media.VisualInfo | None = None


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    """``comfyui_batch``: every batch of the generation; ``start``: its content names the upload."""

    start: InputFile
    generation: Generation


@dataclass(frozen=True, slots=True)
class SegmentSettings:
    """``comfyui_segment``: one segment of a generation by segments, which ``generation`` holds alone (a
    change of another segment reruns nothing here); ``start``: its content names the upload."""

    start: InputFile
    generation: Generation

    @property
    def segment(self) -> VoiceSegment:
        """The segment this rule makes."""
        return self.generation.segments[0]


@dataclass(frozen=True, slots=True)
class AssembleSettings:
    """``assemble_visual``: the batches' ``generated_frames`` at ``generated_fps`` become ``picture``;
    for a generation by segments, the ``segments`` whose clips are joined (their kept frames), with a
    crossfade of ``crossfade_frames`` at each seam (0: none)."""

    generated_fps: int
    generated_frames: int
    picture: Picture
    segments: tuple[VoiceSegment, ...] = ()
    crossfade_frames: int = 0


@dataclass(frozen=True, slots=True)
class CameraSettings:
    """``camera_motion``: the held still with ``move``, as ``picture``."""

    start: InputFile
    move: CameraMove
    picture: Picture


@dataclass(frozen=True, slots=True)
class StabilizeSettings:
    """``stabilize``: ComfyUI's picture steadied by ``method``, as ``picture``."""

    method: str
    generated_fps: int
    picture: Picture


@dataclass(frozen=True, slots=True)
class LipsyncSettings:
    """``lipsync`` and ``lipsync_chunk``: the provider's stage, the output's picture, the run's seed and
    the padded audio's length; ``chunk``: the one run of a ``lipsync_chunk`` (None: the stage's own)."""

    stage: Lipsync
    picture: Picture
    seed: int
    padded_seconds: float
    chunk: Chunk | None = None


@dataclass(frozen=True, slots=True)
class CaptionsSettings:
    """``captions``: the job's captions, shifted by ``pre_seconds``, on frame boundaries at ``fps``."""

    captions: tuple[Caption, ...]
    pre_seconds: float
    fps: int


@dataclass(frozen=True, slots=True)
class EncodeSettings:
    """``encode``: the final video as ``picture``; ``visual`` and ``lipsync`` say which picture comes in,
    ``captions`` whether they are a track or drawn in; ``cleanup``: what a succeeded run keeps."""

    picture: Picture
    visual: Visual
    lipsync: str | None
    captions: str
    cleanup: str
    #: What a video the lip-sync check found out of sync does (``lipsync.sync_check.on_fail``).
    sync_on_fail: str = "fail"
    #: The sync check of a picture whose model moved the lips, made before the encode (None: none).
    model_sync: ModelSync | None = None


@dataclass(frozen=True, slots=True)
class ModelSync:
    """The sync check of ComfyUI's picture when its template lip-syncs in the model and no lip-sync stage
    follows: the settings, the template, and the segments' stretches of the picture (output frames), each
    judged on its own."""

    settings: SyncSettings
    template: str
    fps: int
    segments: tuple[ChunkWindow, ...]


def picture_of(plan: Plan) -> Picture:
    """The output picture of ``plan``."""
    return Picture(plan.fps, plan.target_frames, plan.geometry, plan.encoding)


def audio_settings(plan: Plan) -> AudioSettings:
    """The settings of ``prepare_audio``."""
    return AudioSettings(
        voice=plan.inputs["audio"],
        buffer=plan.buffer,
        loudness=plan.loudness,
        voice_seconds=plan.audio_input_duration_seconds,
        padded_seconds=plan.audio_duration_seconds,
        probe=plan.voice_probe,
    )


def still_settings(plan: Plan) -> StillSettings:
    """The settings of ``hold_start_frame``."""
    return StillSettings(plan.inputs["start"], plan.geometry, plan.fps, plan.encoding, plan.start_probe)


def generation_settings(plan: Plan) -> GenerationSettings | None:
    """The settings of ``comfyui_batch``; None without a ComfyUI stage."""
    return None if plan.comfyui is None else GenerationSettings(plan.inputs["start"], plan.comfyui)


def segment_settings(plan: Plan, segment: str) -> SegmentSettings:
    """The settings of ``comfyui_segment`` for ``segment``: the generation with that segment alone."""
    generation = plan.comfyui
    assert generation is not None, "a segment belongs to a ComfyUI stage"
    # The crossfade is the join's: a segment's clip does not depend on it.
    alone = dataclasses.replace(generation, segments=(generation.segment(segment),), crossfade_frames=0)
    return SegmentSettings(plan.inputs["start"], alone)


def assemble_settings(plan: Plan) -> AssembleSettings | None:
    """The settings of ``assemble_visual``; None without a ComfyUI stage."""
    if plan.comfyui is None:
        return None
    generation = plan.comfyui
    return AssembleSettings(
        generation.fps,
        generation.frames,
        picture_of(plan),
        generation.segments,
        generation.crossfade_frames,
    )


def camera_settings(plan: Plan) -> CameraSettings:
    """The settings of ``camera_motion``."""
    return CameraSettings(plan.inputs["start"], plan.camera, picture_of(plan))


def stabilize_settings(plan: Plan) -> StabilizeSettings | None:
    """The settings of ``stabilize``; None without a ComfyUI stage."""
    if plan.comfyui is None:
        return None
    return StabilizeSettings(plan.stabilize_method, plan.comfyui.fps, picture_of(plan))


def lipsync_settings(plan: Plan, chunk: str | None = None) -> LipsyncSettings | None:
    """The settings of ``lipsync`` (``chunk`` None) or of ``lipsync_chunk``; None without the stage."""
    if plan.lipsync is None:
        return None
    return LipsyncSettings(
        stage=plan.lipsync,
        picture=picture_of(plan),
        seed=plan.seeds.value,
        padded_seconds=plan.audio_duration_seconds,
        chunk=None if chunk is None else plan.chunk(chunk),
    )


def captions_settings(plan: Plan) -> CaptionsSettings:
    """The settings of ``captions``."""
    return CaptionsSettings(plan.captions, plan.buffer.pre_seconds, plan.fps)


def encode_settings(plan: Plan) -> EncodeSettings:
    """The settings of ``encode``."""
    stages = plan.stages
    model = model_sync(plan)
    on_fail = plan.lipsync.sync.on_fail if plan.lipsync is not None else "fail"
    return EncodeSettings(
        picture_of(plan),
        stages.visual,
        stages.lipsync,
        stages.captions,
        plan.cleanup,
        sync_on_fail=model.settings.on_fail if model is not None else on_fail,
        model_sync=model,
    )


def model_sync(plan: Plan) -> ModelSync | None:
    """The sync check of a picture whose template lip-syncs in the model, when no lip-sync stage follows
    and the check is on: each segment's new frames, as frames of the output picture."""
    generation = plan.comfyui
    if generation is None or plan.lipsync is not None or not generation.sync.enabled:
        return None
    ratio = plan.fps / generation.fps
    segments = []
    for segment in generation.segments:
        first, end = round(segment.first * ratio), round((segment.first + segment.kept) * ratio)
        segments.append(ChunkWindow(segment.name, first, min(end, plan.target_frames) - first))
    template = generation.workflow_ids[0]
    return ModelSync(generation.sync, template, plan.fps, tuple(s for s in segments if s.frames > 0))


#: Rule -> the function that cuts its settings from a plan.
RULE_SETTINGS: dict[str, Callable[[Plan], object]] = {
    "prepare_audio": audio_settings,
    "hold_start_frame": still_settings,
    "comfyui_batch": generation_settings,
    "assemble_visual": assemble_settings,
    "camera_motion": camera_settings,
    "stabilize": stabilize_settings,
    "lipsync": lipsync_settings,
    "lipsync_chunk": lipsync_settings,
    "captions": captions_settings,
    "encode": encode_settings,
}


def rule_settings(plan: Plan, rule: str, part: str | None = None) -> object:
    """The settings of ``rule`` in a run of ``plan`` (of one ``part``: the chunk of ``lipsync_chunk``, the
    segment of ``comfyui_segment``)."""
    if rule == "comfyui_segment":
        assert part is not None, "comfyui_segment makes one segment"
        return segment_settings(plan, part)
    if part is not None:
        return lipsync_settings(plan, part)
    return RULE_SETTINGS[rule](plan)


def settings_json(settings: object) -> str:
    """Settings as one canonical JSON string: a rule's ``params.settings``."""
    data = as_data(settings)
    if isinstance(settings, GenerationSettings | SegmentSettings):
        data["generation"] = generation_document(settings.generation)
    return canonical_json(data)


S = TypeVar("S")


def parse_settings(kind: type[S], text: str) -> S:
    """A rule's settings from its ``params.settings`` (``settings_json``)."""
    parsed: S = from_data(kind, json.loads(text))
    return parsed
