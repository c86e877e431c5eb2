"""The plan of a run: every value the stages use, resolved once from the job and its inputs.

``plan_job`` is the one planner: ``va validate`` prints what it resolves, the Snakefile computes it
while it builds the graph (each rule's ``params`` carry the slice of it that rule depends on, so an
edited job reruns exactly what the edit affects), and the planning rule writes it, unchanged, to
``prepare/plan.json``, which the rule scripts read (``load_plan``). The plan is typed (frozen
dataclasses); its JSON keeps the names the manifest shows.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import secrets
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import va
from va import media
from va.atomic import read_json, write_json_atomic, write_text_atomic
from va.config import load_config
from va.errors import ExitCode, VaError
from va.face import VIDEO_SAMPLES, FaceSearch, search_start
from va.job import (
    ComfySettings,
    Job,
    LipsyncSettings,
    Output,
    active_provider,
    audio_seconds,
    check_inputs,
    comfyui_active,
    start_info,
    voice_info,
)
from va.jsondata import as_data, from_data
from va.lipsync.cuts import (
    SILENCE_MIN_SECONDS,
    SILENCE_NOISE_DB,
    Cut,
    plan_cuts,
    quantum_of,
    shortest_chunk,
    silent_frames,
)
from va.lipsync.providers import Provider, get_provider
from va.lipsync.sync import resolve_model_settings, resolve_settings
from va.memo import FileIdentity, Memo, identity_of
from va.plan_parts import (
    PROVENANCE_FIELDS,
    SEED_LIMIT,
    Batch,
    Buffer,
    CameraMove,
    Caption,
    Chunk,
    ComfyWait,
    Encoding,
    Generation,
    Geometry,
    InputFile,
    Lipsync,
    Sampling,
    Seeds,
    Stages,
    Visual,
    batch_seed,
    canonical_json,
    document_fingerprint,
    generation_document,
)
from va.schema import SECRET_FIELD
from va.segments import Retake, VoiceSegment, cut_segments, longest_new, read_retakes
from va.timeline import (
    Segment,
    SegmentOverrides,
    captions_mode,
    cut_batches,
    load_segments,
    segment_overrides,
)
from va.workdir import Workdir

if TYPE_CHECKING:
    from va.comfyui.workflow import Workflow

INPUT_NOT_FOUND = "INPUT_NOT_FOUND"
#: Random seeds stay below 2**53 so that every JSON reader keeps them exact.
RANDOM_SEED_LIMIT = 2**53


#: Hashes of input files by their identity (va/memo.py): a batch's jobs often share a still or a voice,
#: and 1,000 plans hashed the same two files 1,000 times; a changed file is hashed anew.
HASHES: Memo[FileIdentity, str] = Memo()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks, once while the file keeps its identity;
    ``INPUT_NOT_FOUND`` when it does not exist."""
    if not path.is_file():
        return INPUT_NOT_FOUND
    try:
        return HASHES.made(identity_of(path), lambda: _sha256(path))
    except FileNotFoundError:  # gone meanwhile
        return INPUT_NOT_FOUND


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def choose_seed(job: Job, previous: Plan | None = None) -> int:
    """The job's seed under ``fixed`` (and under ``per_retry`` when one is given), else the previous
    plan's seed of the same policy (a resumed run keeps its seed), else a fresh random one."""
    policy, seed = job.determinism.seed_policy, job.determinism.seed
    if seed is not None and policy in ("fixed", "per_retry"):
        return seed
    if previous is not None and previous.seeds.policy == policy:
        return previous.seeds.value
    return secrets.randbelow(RANDOM_SEED_LIMIT)


def target_frames(duration_seconds: float, fps: int) -> int:
    """Frames of the output: ``round(duration * fps)``, at least one."""
    return max(1, round(duration_seconds * fps))


def batch_name(index: int) -> str:
    """The wildcard value and file stem of ComfyUI batch ``index`` (0-based)."""
    return f"{index:04d}"


@dataclass(frozen=True, slots=True)
class EffectiveParams:
    """The settings a run was made with, as the manifest shows them: the motion, the rate and seed, the
    job's output, ComfyUI and lip-sync sections, and where the picture comes from."""

    prompt: str
    negative_prompt: str
    guidance: float
    fps: int
    seed: int
    output: Output
    comfyui: ComfySettings
    lipsync: LipsyncSettings
    visual_source: str


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a run does, resolved: the JSON of ``prepare/plan.json``."""

    job: str
    job_sha256: str
    #: A digest of each section of the job as validated: which of them an edit changed.
    job_sections: dict[str, str]
    basename: str
    stages: Stages
    fps: int
    audio_input_duration_seconds: float
    audio_duration_seconds: float
    buffer: Buffer
    #: The voice's EBU R128 target (``audio.loudness``); None: its loudness is kept as it is.
    loudness: media.LoudnessTarget | None
    visual_target_duration_seconds: float
    target_frames: int
    seeds: Seeds
    geometry: Geometry
    encoding: Encoding
    comfyui: Generation | None
    #: The job's camera move (it moves the held still only when ``stages.visual`` says so).
    camera: CameraMove
    #: ``stabilize.method`` (it runs only when ``stages.stabilize`` says so).
    stabilize_method: str
    captions: tuple[Caption, ...]
    lipsync: Lipsync | None
    #: ``cleanup.after_success``: what a succeeded run keeps.
    cleanup: str
    inputs: dict[str, InputFile]
    effective_params: EffectiveParams
    tools: dict[str, str]
    #: What probing the inputs found when the run was planned: the rules that pad the voice and render
    #: the still read it here instead of probing them again (None: a plan of an earlier version).
    voice_probe: media.AudioInfo | None = None
    start_probe: media.VisualInfo | None = None

    @property
    def visual_source(self) -> str:
        """Where the picture comes from, as the manifest records it."""
        return self.stages.visual.value

    def batch(self, name: str) -> Batch:
        """The ComfyUI batch called ``name``."""
        batches = self.comfyui.batches if self.comfyui else ()
        return next(batch for batch in batches if batch.name == name)

    def chunk(self, name: str) -> Chunk:
        """The lip-sync chunk called ``name``."""
        chunks = self.lipsync.chunks if self.lipsync else ()
        return next(chunk for chunk in chunks if chunk.name == name)


def _workflow(workflow_id: str) -> Workflow:
    """A ComfyUI template: loaded only by planning, so that a rule's script, which imports this module for
    its settings' types, does not load the templates' module (and the pool's file locks) with it."""
    from va.comfyui.workflow import load_workflow  # noqa: PLC0415 - see the docstring

    return load_workflow(workflow_id)


def plan_stages(job: Job, segments: tuple[Segment, ...] | None = None) -> Stages:
    """Which stages a run of ``job`` has (``segments``: the job's timeline, read when not given)."""
    if comfyui_active(job):
        segmented = _workflow(job.comfyui.workflow_ids[0]).segments is not None
        visual = Visual.COMFYUI_SEGMENTS if segmented else Visual.COMFYUI_BATCHES
    elif job.motion.strength > 0:
        visual = Visual.CAMERA_MOVE
    else:
        visual = Visual.HELD_STILL
    return Stages(
        visual=visual,
        stabilize=visual.generated and job.stabilize.enable,
        lipsync=active_provider(job),
        captions=captions_mode(job, load_segments(job) if segments is None else segments),
    )


def plan_sampling(job: Job) -> Sampling:
    """What each batch's template receives, resolved from ``comfyui.params``, ``motion`` and, for the
    checkpoint the job does not name, vidax.json (read now: a changed default reruns the batches)."""
    params, motion = job.comfyui.params, job.motion
    return Sampling(
        prompt=params.prompt or motion.prompt,
        negative=params.negative or params.negative_prompt or motion.negative_prompt,
        cfg=motion.guidance if params.cfg is None else params.cfg,
        checkpoint=str(params.ckpt_name or load_config("vidax").data["comfyui"]["ckpt_name"]),
        width=params.width,
        height=params.height,
        steps=params.steps,
        sampler=params.sampler,
        scheduler=params.scheduler,
        denoise=params.denoise,
        motion_strength=motion.strength,
    )


def plan_wait(job: Job) -> ComfyWait:
    """How patiently the ComfyUI stage waits for its servers."""
    settings = job.comfyui
    return ComfyWait(
        retries=settings.retries,
        unavailable_seconds=float(settings.unavailable_seconds),
        poll_interval_ms=settings.poll_interval_ms,
        stall_seconds=float(settings.stall_seconds),
        timeout_seconds=float(settings.timeout_seconds),
    )


#: Distance between the seeds of two takes of one segment (``va retake`` without ``--seed``).
RETAKE_SEED_STRIDE = 2_000_003


def plan_segments(
    job: Job,
    workflow: Workflow,
    frames: int,
    seed: int,
    *,
    silences: list[tuple[float, float]],
    retakes: dict[str, Retake],
) -> tuple[VoiceSegment, ...]:
    """The segments of a template that generates them: ``frames`` new frames at the model's rate cut at
    the voice's pauses (a segment may be up to a third shorter than the longest to end in one), each
    with its seed (``seed`` plus its index; a retake's), its voice, and a timeline's prompt (that of the
    timeline segment holding the middle of its new frames) or a retake's."""
    contract = workflow.segments
    assert contract is not None, "plan_segments needs a template with a segment contract"
    fps, pre = contract.fps, job.buffer.pre_seconds
    search = longest_new(contract, workflow.id) // 3
    cuts = cut_segments(frames, contract, workflow.id, silent=silent_frames(silences, fps), search=search)
    timeline = load_segments(job)
    planned = []
    for index, cut in enumerate(cuts):
        name = batch_name(index)
        retake = retakes.get(name)
        middle = (cut.first + cut.kept / 2) / fps - pre
        owner = next((s for s in timeline if s.start <= middle < s.end), None)
        overrides = SegmentOverrides() if owner is None else segment_overrides(owner)
        if retake is not None and retake.prompt is not None:
            overrides["prompt"] = retake.prompt
        own_seed = batch_seed(seed, index)
        if retake is not None:
            own_seed = (
                retake.seed if retake.seed is not None else (own_seed + retake.take * RETAKE_SEED_STRIDE)
            )
        head = contract.head_frames
        planned.append(
            VoiceSegment(
                index=index,
                name=name,
                first=cut.first,
                frames=cut.frames,
                head_frames=head,
                kept=cut.kept,
                start_seconds=round(cut.first / fps, 6),
                end_seconds=round((cut.first + cut.kept) / fps, 6),
                audio_start_seconds=round((cut.first - head) / fps, 6),
                audio_seconds=round(cut.frames / fps, 6),
                seed=own_seed % SEED_LIMIT,
                cut=cut.cut,
                take=0 if retake is None else retake.take,
                **overrides,
            )
        )
    return tuple(planned)


def template_digest(workflow: Workflow) -> str:
    """A short digest of a template's graph, bindings and contract."""
    parts = [workflow.graph, workflow.bindings, as_data(workflow.segments), workflow.lipsync_in_model]
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]


def plan_generation(
    job: Job,
    visual_seconds: float,
    seed: int,
    *,
    silences: list[tuple[float, float]] | None = None,
    retakes: dict[str, Retake] | None = None,
) -> Generation:
    """How many frames ComfyUI generates, at which rate, in which batches with which seeds; for a
    template that generates segments, in which segments (their seams in ``silences``, the pauses of the
    padded voice in seconds, where one is near)."""
    settings = job.comfyui
    workflow = _workflow(settings.workflow_ids[0])
    if workflow.segments is not None:
        fps = workflow.segments.fps
        frames = max(1, math.ceil(visual_seconds * fps - 1e-9))
        planned = plan_segments(job, workflow, frames, seed, silences=silences or [], retakes=retakes or {})
        crossfade, head = settings.crossfade_frames, workflow.segments.head_frames
        if crossfade > head:
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f"comfyui.crossfade_frames: {crossfade} is more than the {head} head frames of workflow "
                f"{workflow.id} (a seam blends the previous segment's last frames with the next one's head)",
            )
        return Generation(
            fps,
            frames,
            0,
            (),
            settings.workflow_ids,
            contract=workflow.segments,
            segments=planned,
            chained=workflow.chained,
            template=template_digest(workflow),
            lipsync_in_model=workflow.lipsync_in_model,
            sync=resolve_model_settings(job.lipsync.sync_check, workflow.id, workflow.lipsync_in_model),
            crossfade_frames=crossfade,
            sampling=plan_sampling(job),
            wait=plan_wait(job),
            per_retry=job.determinism.seed_policy == "per_retry",
            seed=seed,
        )
    gen_fps = settings.params.fps or job.fps
    if gen_fps > job.fps:
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            f"comfyui.params.fps: {gen_fps} is above determinism.fps {job.fps} "
            "(frames can be held, not invented)",
        )
    frames = max(1, math.ceil(visual_seconds * gen_fps - 1e-9))
    size = settings.batch_size
    segments = load_segments(job)
    if segments:  # no batch spans two segments; each takes its segment's prompt and strength
        pre = job.buffer.pre_seconds
        cuts = cut_batches(frames, size, gen_fps, pre, segments)
        batches = tuple(
            Batch(
                index=i,
                name=batch_name(i),
                first=first,
                frames=count,
                seed=batch_seed(seed, i),
                segment=owner,
                **({} if owner is None else segment_overrides(segments[owner])),
            )
            for i, (first, count, owner) in enumerate(cuts)
        )
    else:
        batches = tuple(
            Batch(
                index=i,
                name=batch_name(i),
                first=i * size,
                frames=min(size, frames - i * size),
                seed=batch_seed(seed, i),
            )
            for i in range(math.ceil(frames / size))
        )
    return Generation(
        gen_fps,
        frames,
        size,
        batches,
        settings.workflow_ids,
        segmented=bool(segments),
        sampling=plan_sampling(job),
        wait=plan_wait(job),
        per_retry=job.determinism.seed_policy == "per_retry",
        seed=seed,
    )


def plan_comfyui(
    job: Job,
    stages: Stages,
    visual_seconds: float,
    seed: int,
    *,
    voice_seconds: float,
    retakes: dict[str, Retake] | None,
) -> Generation | None:
    """The ComfyUI stage of a run, None when it has none; a template that generates segments has them
    cut at the voice's pauses."""
    if not stages.visual.generated:
        return None
    segmented = stages.visual is Visual.COMFYUI_SEGMENTS
    silences = padded_silences(job, job.buffer, voice_seconds) if segmented else None
    return plan_generation(job, visual_seconds, seed, silences=silences, retakes=retakes)


@functools.cache
def tool_versions() -> dict[str, str]:
    """Versions of the tools that shape the output."""
    try:
        snakemake_version = metadata.version("snakemake")
    except metadata.PackageNotFoundError:
        snakemake_version = "not installed"
    return {
        "va": va.__version__,
        "python": sys.version.split()[0],
        "snakemake": snakemake_version,
        "ffmpeg": media.tool_version("ffmpeg"),
    }


def _conceal(node: Any, key: str = "") -> Any:
    """A settings tree with the values of secret fields (API keys, tokens) replaced by their digest:
    a changed key still changes the plan, but no key is written into the workdir."""
    if isinstance(node, dict):
        return {name: _conceal(value, str(name)) for name, value in node.items()}
    if isinstance(node, list):
        return [_conceal(item, key) for item in node]
    if key and SECRET_FIELD.search(key) and node is not None:
        return "sha256:" + hashlib.sha256(canonical_json(node).encode()).hexdigest()[:16]
    return node


#: The pauses of a voice track by its identity (va/memo.py): found once while the file stays the same.
SILENCES: Memo[FileIdentity, tuple[media.Silence, ...]] = Memo(limit=64)


def _voice_silences(path: Path) -> tuple[media.Silence, ...]:
    def detect() -> tuple[media.Silence, ...]:
        return media.detect_silences(path, noise_db=SILENCE_NOISE_DB, min_seconds=SILENCE_MIN_SECONDS)

    return SILENCES.made(identity_of(path), detect)


def padded_silences(job: Job, buffer: Buffer, voice_seconds: float) -> list[tuple[float, float]]:
    """The silences of the padded audio, in seconds: the buffers, and the voice track's own pauses.

    They are found on the voice track itself, shifted by the pre buffer, because the chunks are planned
    while the graph is built (like ComfyUI's batches), before prepare_audio pads it: the padded audio is
    that track between exact silence. Planning there makes every chunk a job of its own from the start,
    with its own output: a resumed run and plain snakemake make only the missing ones, a cluster runs
    them side by side, and plan.json lists them before any work. A planning rule would need a checkpoint,
    whose jobs Snakemake learns only after it ran (no dry run, no chunks in the plan when the run starts).
    Loudness normalisation changes a pause's level, not its place."""
    pre, end = buffer.pre_seconds, buffer.pre_seconds + voice_seconds
    found = _voice_silences(job.audio)
    pauses = [(pre + s.start_seconds, min(end, pre + s.end_seconds)) for s in found]
    return [(0.0, pre), *pauses, (end, end + buffer.post_seconds)]


def plan_chunks(
    job: Job, provider: Provider, *, fps: int, buffer: Buffer, voice_seconds: float
) -> tuple[Chunk, ...]:
    """The chunks the provider runs on: one, unless the padded audio is longer than the provider's
    ``input.max_seconds`` or the job's ``lipsync.chunk_seconds`` (then cut at silences, on frame
    boundaries, each no longer than that, padded to the provider's frame quantum included)."""
    seconds = buffer.pre_seconds + voice_seconds + buffer.post_seconds
    total = target_frames(seconds, fps)
    settings, provider_id = provider.settings["input"], provider.id
    quantum = quantum_of(settings, f"provider {provider_id}")
    asked = (settings.get("max_seconds"), job.lipsync.chunk_seconds)
    limits = [float(limit) for limit in asked if limit]
    cuts = [Cut(0, total, "end")]
    if limits:
        limit = quantum.largest(math.floor(min(limits) * fps + 1e-6))
        if limit < 1:
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f"lipsync: chunks of at most {min(limits):g} s hold no frame count provider {provider_id} "
                f"takes at {fps} fps",
            )
        if total > limit:
            search = round(job.lipsync.cut_search_seconds * fps)
            silent = silent_frames(padded_silences(job, buffer, voice_seconds), fps)
            shortest = shortest_chunk(limit, quantum)
            cuts = plan_cuts(total, limit=limit, search=search, silent=silent, shortest=shortest)
    chunks = []
    for index, cut in enumerate(cuts):
        start = cut.first / fps
        end = seconds if index == len(cuts) - 1 else (cut.first + cut.frames) / fps
        padded = quantum.pad(cut.frames)
        chunks.append(
            Chunk(
                index=index,
                name=batch_name(index),
                first=cut.first,
                frames=cut.frames,
                start_seconds=round(start, 6),
                end_seconds=round(end, 6),
                input_frames=padded,
                input_seconds=round(max(end - start, padded / fps), 6),
                cut=cut.end,
            )
        )
    return tuple(chunks)


def plan_lipsync(
    job: Job,
    buffer: Buffer,
    voice_seconds: float,
    geometry: Geometry | None = None,
    *,
    known_face: FaceSearch | None = None,
    earlier: Lipsync | None = None,
) -> Lipsync | None:
    """The lip-sync stage of ``job``, None when it does not run. A provider that needs a face has the
    start checked for one (``plan_face``), in the output picture of ``geometry`` (planned when not given),
    unless ``known_face`` is that check already. ``earlier``: the stage of an earlier plan of the same
    audio and buffers (``_same_audio``), whose chunks are kept when the provider cuts as it did."""
    provider_id = active_provider(job)
    if provider_id is None:
        return None
    provider = get_provider(provider_id)
    fps = int(provider.settings["input"].get("fps") or job.fps)
    seconds = buffer.pre_seconds + voice_seconds + buffer.post_seconds
    if earlier is not None and (earlier.fps, earlier.settings["input"]) == (fps, provider.settings["input"]):
        chunks = earlier.chunks
    else:
        chunks = plan_chunks(job, provider, fps=fps, buffer=buffer, voice_seconds=voice_seconds)
    return Lipsync(
        provider=provider_id,
        type=provider.type,
        # What the provider asks a cluster for is no setting of the result: editing it reruns nothing.
        settings=_conceal({key: value for key, value in provider.settings.items() if key != "resources"}),
        allow_passthrough=job.lipsync.allow_passthrough,
        fps=fps,
        frames=target_frames(seconds, fps),
        chunks=chunks,
        face=plan_face(job, provider, geometry, known=known_face),
        sync=resolve_settings(job.lipsync.sync_check, provider),
    )


def plan_face(
    job: Job, provider: Provider, geometry: Geometry | None = None, *, known: FaceSearch | None = None
) -> FaceSearch | None:
    """For a provider that needs a face (``needs_face``; None for one that does not): the check of the
    start, its first frame (and a start video's frames spread over it) fitted into the output picture as
    the held still is. No face is ``LIPSYNC_INPUT_REJECTED`` now, before anything runs, unless
    ``lipsync.allow_passthrough`` lets the stage pass the un-synced picture through. ``known``: the same
    check made before (an earlier plan's, of the same start in the same picture), taken as it is."""
    if not provider.settings["needs_face"]:
        return None
    found = known
    if found is None:
        geometry = geometry or plan_geometry(job)
        fitted = media.FrameGeometry(geometry.still_width, geometry.still_height, geometry.filter)
        found = search_start_once(start_info(job), job.start_is_video, fitted, geometry.background)
    if found.faceless_frame is not None and not job.lipsync.allow_passthrough:
        raise found.refusal(provider.id)
    return found


@dataclass(frozen=True, slots=True)
class FaceQuestion:
    """Everything a face search of a start depends on: the file, whether it is a video (then frames
    spread over it are looked at), and the picture its frames are fitted into."""

    start: FileIdentity
    is_video: bool
    geometry: media.FrameGeometry
    background: str


# The jobs of a batch often share a start: it is searched once (va/memo.py), and anew when it changed.
FACE_SEARCHES: Memo[FaceQuestion, FaceSearch] = Memo(limit=256)


def search_start_once(
    start: media.VisualInfo, is_video: bool, geometry: media.FrameGeometry, background: str
) -> FaceSearch:
    """The face search of ``start`` (the plan's probe of it) fitted into ``geometry``
    (va.face.search_start), made once while the file keeps its identity."""
    path = start.path

    def search() -> FaceSearch:
        frames = media.sample_frames(media.count_video_packets(path), VIDEO_SAMPLES) if is_video else [0]
        return search_start(start, frames, geometry, background)

    found = FACE_SEARCHES.made(FaceQuestion(identity_of(path), is_video, geometry, background), search)
    # A search made for another name of the same file (a link) names this job's.
    return found if found.file == str(path) else dataclasses.replace(found, file=str(path))


def plan_loudness(job: Job) -> media.LoudnessTarget | None:
    """The loudness the voice is normalized to, None when the job keeps it as it is (the default)."""
    loudness = job.voice.loudness
    return None if loudness is None else media.LoudnessTarget(loudness.target_lufs, loudness.true_peak_db)


def plan_geometry(job: Job) -> Geometry:
    """The output picture of ``job``: the requested size, else the visual source's own size made even
    (the start's for a held still, ComfyUI's planned frame size for a generated picture)."""
    output = job.output
    source = start_info(job)
    still = media.plan_geometry(
        source.width, source.height, output.width, output.height, output.fit, display=source.display_filter
    )
    width, height = still.width, still.height
    if comfyui_active(job) and output.width is None:
        width, height = media.even_size(job.comfyui.params.width, job.comfyui.params.height)
    return Geometry(
        width=width,
        height=height,
        fit=output.fit,
        background=output.background,
        source_width=source.width,
        source_height=source.height,
        filter=still.filter,
        still_width=still.width,
        still_height=still.height,
    )


def _known_face(previous: Plan | None, start: InputFile, geometry: Geometry) -> FaceSearch | None:
    """An earlier plan's face check, when it looked at the same start (path and content) in the same
    picture: every Snakemake process of a run plans again (a cluster job, a resume), and OpenCV need not
    load in each of them to find the same face."""
    if previous is None or previous.lipsync is None or previous.inputs.get("start") != start:
        return None
    return previous.lipsync.face if previous.geometry == geometry else None


def _same_audio(previous: Plan | None, job: Job, audio: InputFile, buffer: Buffer) -> Lipsync | None:
    """An earlier plan's lip-sync stage, when it cut the same voice (path and content) with the same
    buffers and the same ``lipsync`` section: its chunks are kept, so a resumed run or a cluster job, which
    plan again, finds the pauses of a long track without decoding it, and a resume after an upgrade that
    cuts otherwise still makes only the missing chunks."""
    if previous is None or previous.lipsync is None or previous.inputs.get("audio") != audio:
        return None
    same = previous.buffer == buffer and previous.job_sections.get("lipsync") == section_digest(
        job.data, "lipsync"
    )
    return previous.lipsync if same else None


def section_digest(document: dict[str, Any], section: str) -> str:
    """A short digest of one section of a job document (absent: of null)."""
    return hashlib.sha256(canonical_json(document.get(section)).encode()).hexdigest()[:16]


def plan_job(job: Job, previous: Plan | None = None, retakes: dict[str, Retake] | None = None) -> Plan:
    """Resolve every value of a run of ``job``: its inputs are probed (and hashed), nothing is written.

    ``previous``: the plan of an earlier attempt in the same workdir, whose random seed is kept;
    ``retakes``: what ``va retake`` asked of its segments (``comfyui/retakes.json``)."""
    check_inputs(job)
    buffer = job.buffer
    voice = audio_seconds(job)
    visual_seconds = buffer.pre_seconds + voice + buffer.post_seconds
    seed = choose_seed(job, previous)
    geometry = plan_geometry(job)
    start = InputFile(str(job.start), sha256_file(job.start))
    audio = InputFile(str(job.audio), sha256_file(job.audio))
    segments = load_segments(job)
    stages = plan_stages(job, segments)
    effective = EffectiveParams(
        prompt=job.motion.prompt,
        negative_prompt=job.motion.negative_prompt,
        guidance=job.motion.guidance,
        fps=job.fps,
        seed=seed,
        output=job.output,
        comfyui=job.comfyui,
        lipsync=job.lipsync,
        visual_source=stages.visual.value,
    )
    return Plan(
        job=str(job.path),
        job_sha256=hashlib.sha256(canonical_json(job.data).encode()).hexdigest(),
        job_sections={section: section_digest(job.data, section) for section in sorted(job.data)},
        basename=job.basename,
        stages=stages,
        fps=job.fps,
        audio_input_duration_seconds=round(voice, 6),
        audio_duration_seconds=round(visual_seconds, 6),
        buffer=buffer,
        loudness=plan_loudness(job),
        visual_target_duration_seconds=round(visual_seconds, 6),
        target_frames=target_frames(visual_seconds, job.fps),
        seeds=Seeds(job.determinism.seed_policy, seed),
        geometry=geometry,
        encoding=Encoding(job.output.crf, job.output.x264_preset),
        comfyui=plan_comfyui(job, stages, visual_seconds, seed, voice_seconds=voice, retakes=retakes),
        camera=CameraMove(job.motion.camera, job.motion.strength),
        stabilize_method=job.stabilize.method,
        captions=tuple(Caption(s.start, s.end, s.caption) for s in segments if s.caption),
        lipsync=plan_lipsync(
            job,
            buffer,
            voice,
            geometry,
            known_face=_known_face(previous, start, geometry),
            earlier=_same_audio(previous, job, audio, buffer),
        ),
        cleanup=job.cleanup.after_success,
        inputs={"audio": audio, "start": start},
        effective_params=effective,
        tools=tool_versions(),
        voice_probe=voice_info(job),
        start_probe=start_info(job),
    )


def check_workflows(job: Job) -> None:
    """Load every workflow the job names, so a missing template or a broken binding fails validation."""
    for workflow_id in job.comfyui.workflow_ids:
        _workflow(workflow_id)


def check_supported(job: Job) -> None:
    """Check what the job's stages need before anything runs: templates and bindings, the provider."""
    if job.comfyui.workflow_ids:
        plan_generation(job, 1.0, 0)  # the generation settings alone can be wrong (e.g. fps)
        check_workflows(job)
    provider = active_provider(job)
    if provider is not None:
        get_provider(provider)


def plan_run(job: Job, run: Workdir | None = None) -> Plan:
    """The one planning step of a run, its checks included: what this version needs (templates,
    provider), the inputs (probed, hashed), a needed face; every problem a ``VaError``. ``va validate``,
    ``va run``, ``va batch`` and a plain ``snakemake`` call it once a job. ``run``: the job's folder,
    whose earlier plan keeps its random seed (and face check and chunks), and whose retakes
    (``va retake``) are planned."""
    check_supported(job)
    if run is None:
        return plan_job(job)
    return plan_job(job, previous_plan(run.plan), read_retakes(run.retakes))


def plan_jobs(
    jobs: dict[str, Job], run_of: Callable[[str], Workdir], workers: int = 8
) -> tuple[dict[str, Plan], dict[str, VaError]]:
    """``plan_run`` of each job of a batch (``run_of``: a job's folder), in a pool of threads, since
    planning waits for ffprobe and ffmpeg: the plans, and the problem of each job that cannot run."""

    def plan(name: str) -> tuple[str, Plan | VaError]:
        try:
            return name, plan_run(jobs[name], run_of(name))
        except VaError as exc:
            return name, exc

    plans: dict[str, Plan] = {}
    problems: dict[str, VaError] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        for name, outcome in pool.map(plan, sorted(jobs)):
            if isinstance(outcome, VaError):
                problems[name] = outcome
            else:
                plans[name] = outcome
    return plans, problems


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as JSON data, the content of ``prepare/plan.json``."""
    document: dict[str, Any] = as_data(plan)
    if plan.comfyui is not None:
        document["comfyui"] = generation_document(plan.comfyui)
    return document


def plan_json(plan: Plan) -> str:
    """The plan as the JSON text of ``prepare/plan.json``."""
    return json.dumps(plan_document(plan), indent=2) + "\n"


def plan_from_document(document: dict[str, Any]) -> Plan:
    """A plan from its JSON data."""
    plan: Plan = from_data(Plan, document)
    return plan


def load_plan(path: Path) -> Plan:
    """Read ``prepare/plan.json``."""
    return plan_from_document(json.loads(Path(path).read_text(encoding="utf-8")))


def previous_plan(path: Path) -> Plan | None:
    """The plan an earlier attempt left at ``path``, None when there is none (or it is unreadable:
    it is then made anew)."""
    try:
        return load_plan(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


#: Fields of a plan that say how it was made, not what it makes: the job file's text (its hash), the
#: summary of its settings shown in the manifest, the tools' versions.
def changed_fields(before: Plan | None, after: Plan) -> list[str]:
    """The top-level fields in which two plans differ, and the sections of the job an edit changed
    (``document.<section>``)."""
    if before is None:
        return []
    old, new = plan_document(before), plan_document(after)
    changed = []
    for key in new:
        if key == "job_sections":
            sections = sorted(set(old.get(key) or {}) | set(new[key]))
            changed += [f"document.{s}" for s in sections if (old.get(key) or {}).get(s) != new[key].get(s)]
        elif key not in PROVENANCE_FIELDS and old.get(key) != new[key]:
            changed.append(key)
    return changed


def plan_fingerprint(plan: Plan) -> str:
    """What the plan makes, in 16 hex digits: the same for two plans exactly when ``changed_fields``
    finds no change but the job file's path (a job file moved with its batch still makes the same video)."""
    return document_fingerprint(plan_document(plan))


def write_plan(plan: Plan, target: Path) -> None:
    """Write ``plan`` as ``prepare/plan.json``."""
    write_text_atomic(target, plan_json(plan))


def changes_file(target: Path) -> Path:
    """Where the fields the last published plan changed are kept, beside the plan."""
    return target.with_name("plan_changes.json")


def publish_plan(plan: Plan, target: Path) -> list[str]:
    """Write the plan of a run before its graph starts, unless the same plan is there already; returns
    the fields that changed since the previous plan (none for a first plan), and keeps them beside it
    for the record of the run's start (``published_changes``)."""
    previous = previous_plan(target)
    changes = [] if previous == plan else changed_fields(previous, plan)
    if previous != plan:
        write_plan(plan, target)
    write_json_atomic(changes_file(target), {"changed": changes})
    return changes


def published_changes(target: Path) -> list[str]:
    """The fields the plan published at ``target`` changed (none when nothing says so)."""
    try:
        return [str(field) for field in read_json(changes_file(target))["changed"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
