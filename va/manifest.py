"""``manifest.json``: derived from the event log, the plan and which targets exist, never edited by hand.

The log is folded into a digest one event at a time (``EventDigest``), so keeping the manifest up to
date costs the same at the ten-thousandth event as at the first.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NotRequired, cast

from typing_extensions import TypedDict  # pydantic reads only this one's on Python 3.11

from va.atomic import read_json, write_text_atomic
from va.errors import ExitCode
from va.face import FaceSearchData
from va.graph import PHASES, RULE_PHASE, rule_outputs
from va.lipsync.result import LipsyncResult
from va.lipsync.sync import SyncData
from va.plan_parts import document_fingerprint
from va.processes import ProcessId
from va.records import JsonObject, forbid_extra
from va.workdir import Workdir

MANIFEST_VERSION = 1
TERMINAL = frozenset({"succeeded", "failed", "interrupted"})
RunStatus = Literal["running", "succeeded", "failed", "interrupted"]

INTERRUPTED_MESSAGE = "the run stopped before it finished; continue it with: va run JOB --workdir W --resume"

# The manifest's records. They are TypedDicts, not classes: the manifest is JSON whose optional parts
# are absent, not null (a skipped phase has only ``status`` and ``reason``), it is made again at every
# event, and readers index it like the JSON they read. Pydantic validates the same declarations where
# VIDAX returns a manifest (``extra="forbid"``: a field the run writes and no record declares is an
# error in the tests, not a silent drop), and they are what its OpenAPI document says.


@forbid_extra
class ExitStatus(TypedDict):
    """How a run ended (or why a rule failed): the exit code, its name and one line."""

    code: int | None
    name: NotRequired[str | None]
    message: str | None


@forbid_extra
class Seeds(TypedDict):
    """The seed policy and the seed used."""

    policy: str
    value: int


@forbid_extra
class BufferSeconds(TypedDict):
    """Seconds of silence before and after the voice."""

    pre_seconds: float
    post_seconds: float


@forbid_extra
class InputRecord(TypedDict):
    """An input file and its SHA-256."""

    path: str
    sha256: str


@forbid_extra
class Step(TypedDict):
    """The sampler's step of a batch (a ``progress`` event): ``value`` of ``max``."""

    batch: str | None
    value: int | None
    max: int | None


@forbid_extra
class GenerationProgress(TypedDict):
    """The ComfyUI stage's progress: in batches, or in segments for a template that generates them."""

    batches_done: NotRequired[int]
    batches_total: NotRequired[int]
    segments_done: NotRequired[int]
    segments_total: NotRequired[int]
    frames_done: int
    frames_total: int | None
    #: The sampler's latest step (the last ``progress`` event).
    last_step: NotRequired[Step | None]


@forbid_extra
class Attempt(TypedDict, total=False):
    """One ComfyUI attempt of a batch or segment (only the fields that are set)."""

    batch: str
    segment: str
    attempt: int
    seed: int
    prompt_id: str
    outcome: str
    error: str
    server: str
    comfyui_version: str


@forbid_extra
class BatchServer(TypedDict):
    """The server that made a batch or segment, and the version it reported."""

    url: str
    comfyui_version: str | None


@forbid_extra
class ServerStart(TypedDict):
    """A ComfyUI server the stage started itself: its url, seconds to answer, host and version."""

    url: str | None
    seconds: float | None
    host: str | None
    comfyui_version: str | None


@forbid_extra
class SegmentState(TypedDict):
    """A segment of a generation by segments, and once made the prompt id and attempts of its clip."""

    index: int
    name: str
    start: float
    end: float
    frames: int
    kept: int
    seed: int
    take: int
    cut: str
    prompt: str | None
    status: Literal["done", "pending"]
    prompt_id: str | None
    attempts: int | None


@forbid_extra
class ChunkState(TypedDict):
    """A lip-sync chunk of a cut audio: its span, whether it is made, by which attempt and how fast."""

    name: str
    start: float
    end: float
    frames: int
    cut: str
    status: str
    attempt: int | None
    seconds: float | None


@forbid_extra
class SegmentContract(TypedDict):
    """What a template that generates segments declares (va.segments.SegmentContract)."""

    fps: int
    max_frames: int
    frame_form: str
    frame_multiple: int
    sample_rate: int
    context_frames: int
    head_frames: int


@forbid_extra
class LoudnessFigures(TypedDict):
    """The voice's integrated loudness (LUFS), true peak (dBTP) and loudness range (LU)."""

    integrated_lufs: float
    true_peak_db: float
    range_lu: float


@forbid_extra
class Loudness(TypedDict):
    """The voice's normalization: the target, and once prepare_audio ran (``prepare/loudness.json``),
    how loudnorm went about it and the voice's figures before and after."""

    target_lufs: float
    true_peak_db: float
    normalization: NotRequired[str]
    before: NotRequired[LoudnessFigures]
    after: NotRequired[LoudnessFigures]


@forbid_extra
class Phase(TypedDict):
    """A phase of the run. A skipped phase has only ``status`` and ``reason``; the ComfyUI and lip-sync
    phases add what they did (docs/OUTPUT_CONTRACT.md)."""

    status: Literal["pending", "running", "done", "failed", "skipped"]
    reason: NotRequired[str]
    started_at: NotRequired[str | None]
    ended_at: NotRequired[str | None]
    seconds: NotRequired[float | None]
    outputs: NotRequired[list[str]]
    error: NotRequired[ExitStatus]
    slurm_job_ids: NotRequired[list[str]]
    # The ComfyUI phase.
    progress: NotRequired[GenerationProgress]
    generation_fps: NotRequired[int | None]
    batch_seeds: NotRequired[dict[str, int]]
    batch_segments: NotRequired[dict[str, int] | None]
    contract: NotRequired[SegmentContract | None]
    segments: NotRequired[list[SegmentState]]
    attempts: NotRequired[list[Attempt]]
    prompt_ids: NotRequired[list[str]]
    comfyui_version: NotRequired[str | None]
    batch_servers: NotRequired[dict[str, BatchServer] | None]
    comfyui_versions: NotRequired[dict[str, str | None] | None]
    server_starts: NotRequired[list[ServerStart] | None]
    graphs: NotRequired[list[str]]
    # The lip-sync phase.
    chunks: NotRequired[list[ChunkState]]
    provider: NotRequired[str | None]
    passthrough: NotRequired[bool]
    #: Where the face was found (va.face.FaceSearch), for a provider that needs one.
    face: NotRequired[FaceSearchData]
    #: The sync check's verdict (docs/LIPSYNC_INTERFACE.md#the-sync-check), and the video an out-of-sync
    #: run kept instead of publishing.
    sync: NotRequired[SyncData]
    note: NotRequired[str]
    #: A skipped lip-sync phase whose picture's model moved the lips: the template, and ``sync`` its check.
    in_model: NotRequired[str]


@forbid_extra
class LastAttempt(TypedDict):
    """What the latest attempt changed in the plan and which rules it ran."""

    plan_changes: list[str]
    rules_run: list[str]


@forbid_extra
class Cleanup(TypedDict):
    """The cleanups of the latest attempt: when, what started them, and what they removed."""

    at: str | None
    trigger: str | None
    files_removed: int
    bytes_freed: int


@forbid_extra
class ManifestFinal(TypedDict):
    """The final video: its path in the workdir, whether it exists, its size."""

    path: str
    exists: bool
    bytes: int | None


@forbid_extra
class Manifest(TypedDict):
    """The run's ``manifest.json`` (docs/OUTPUT_CONTRACT.md), as the run writes it and VIDAX returns it."""

    manifest_version: int
    run_id: str
    run_status: RunStatus
    exit_status: ExitStatus | None
    workdir: str
    job: str
    #: What the plan of the latest attempt makes (va.plan.plan_fingerprint); None before it is written.
    plan_fingerprint: str | None
    created_at: str
    updated_at: str | None
    attempts: int
    last_attempt: LastAttempt
    phases: dict[str, Phase]
    seeds: Seeds | None
    audio_input_duration_seconds: float | None
    audio_duration_seconds: float | None
    buffer: BufferSeconds | None
    #: The voice's loudness normalization (target; measured before and after), None when not asked.
    loudness: Loudness | None
    visual_target_duration_seconds: float | None
    fps: float | None
    target_frames: int | None
    inputs: dict[str, InputRecord] | None
    #: A summary of the job's settings (va.plan.Plan.effective_params).
    effective_params: JsonObject | None
    tools: dict[str, str] | None
    cleanup: Cleanup | None
    final: ManifestFinal


def epoch(ts: str | None) -> float | None:
    """Seconds since the epoch of an event's UTC timestamp (None for none)."""
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def process_alive(pid: int | None, host: str | None, started: int | None = None) -> bool:
    """Whether the process that drove a run still exists (always assumed on another host). With its
    start time (``pid_started``) a process that took over the pid is not mistaken for it."""
    if not pid:
        return False
    if host and host != socket.gethostname():
        return True
    if started is not None:
        return ProcessId(pid, started).alive()
    return ProcessId.of(pid) is not None


# What the digest keeps of the event log.


class RuleEvent(TypedDict, total=False):
    """What the digest keeps of a rule event (``seconds``: a finished rule's own time, its work)."""

    kind: str
    ts: str
    slurm_job_id: str | int
    error: ExitStatus
    seconds: float


class RuleEntry(TypedDict, total=False):
    """A rule (or one target of it): its last ``rule_started``, its last event, the attempt it ran in."""

    rule: str
    target: str | None
    started: RuleEvent
    last: RuleEvent
    attempt: int


class RunGraph(TypedDict):
    """The graph of an attempt (``va.graph.describe``): the final's name, each phase's rules and the
    phases skipped with why."""

    final: str
    rules: dict[str, list[str]]
    skipped: dict[str, str]


class RunStart(TypedDict, total=False):
    """The ``run_started`` event of an attempt (va.tracking.record_run_started)."""

    ts: str
    run_id: str
    pid: int
    pid_started: int | None
    host: str
    job: str
    graph: RunGraph
    inputs: dict[str, InputRecord]
    buffer: BufferSeconds
    fps: float
    plan_changes: list[str]


class RunEnd(TypedDict, total=False):
    """The ``run_finished`` event of an attempt."""

    ts: str
    run_status: RunStatus
    exit_status: ExitStatus


class RuleState(TypedDict):
    """Where one rule (or one target of it) stands."""

    status: Literal["pending", "running", "done", "failed"]
    started_at: str | None
    ended_at: str | None
    slurm_job_id: str | int | None
    error: NotRequired[ExitStatus | None]


def _rule_state(
    entry: RuleEntry | None, outputs_exist: bool, live: bool, succeeded: bool = False
) -> RuleState:
    """A rule's state from its last event and whether its outputs exist; ``succeeded``: the run's latest
    attempt succeeded, so every output there was made or kept whole by it (a rule stopped after it wrote
    its outputs, whose target a resume kept without running it again, is done)."""
    started = entry.get("started") if entry else None
    last = entry.get("last") if entry else None
    state: RuleState = {
        "status": "pending",
        "started_at": started["ts"] if started else None,
        "ended_at": None,
        "slurm_job_id": started.get("slurm_job_id") if started else None,
    }
    if last is None:
        state["status"] = "done" if outputs_exist else "pending"
    elif last["kind"] == "rule_finished":
        state["status"] = "done" if outputs_exist else "pending"
        state["ended_at"] = last["ts"]
    elif last["kind"] == "rule_failed":
        state.update({"status": "failed", "ended_at": last["ts"], "error": last.get("error")})
    elif succeeded and outputs_exist:
        state["status"] = "done"
    else:
        state["status"] = "running" if live else "pending"
    return state


Key = tuple[str, str | None]


def _phase(keys: list[Key], states: dict[Key, RuleState], outputs: dict[Key, list[str]], root: Path) -> Phase:
    mine = [states[key] for key in keys]
    statuses = {state["status"] for state in mine}
    status: Literal["pending", "running", "done", "failed"]
    if "failed" in statuses:
        status = "failed"
    elif "running" in statuses:
        status = "running"
    else:
        status = "done" if statuses == {"done"} else "pending"
    starts = [t for t in (epoch(s["started_at"]) for s in mine) if t is not None]
    ends = [t for t in (epoch(s["ended_at"]) for s in mine) if t is not None]
    phase: Phase = {
        "status": status,
        "started_at": min((s["started_at"] for s in mine if s["started_at"]), default=None),
        "ended_at": max((s["ended_at"] for s in mine if s["ended_at"]), default=None)
        if status in ("done", "failed")
        else None,
        "seconds": round(max(ends) - min(starts), 3) if status == "done" and starts and ends else None,
        "outputs": [path for key in keys for path in outputs[key] if (root / path).exists()],
    }
    errors = [error for s in mine if (error := s.get("error"))]
    if errors:
        phase["error"] = errors[0]
    cluster_jobs = sorted({str(s["slurm_job_id"]) for s in mine if s.get("slurm_job_id")})
    if cluster_jobs:
        phase["slurm_job_ids"] = cluster_jobs
    return phase


#: What the manifest keeps of a rule event (``seconds``: a finished rule's own time, its work).
RULE_EVENT_FIELDS = ("kind", "ts", "slurm_job_id", "error", "seconds")
#: What it keeps of a ComfyUI attempt (the fields that are set).
ATTEMPT_FIELDS = (
    "batch",
    "segment",
    "attempt",
    "seed",
    "prompt_id",
    "outcome",
    "error",
    "server",
    "comfyui_version",
)


@dataclass
class EventDigest:
    """What the manifest needs of the event log, folded in one event at a time, so keeping the manifest
    up to date costs the same however many events came before. Stored beside the log
    (``logs/manifest.digest.json``) with how much of the log it holds; a missing or stale digest is made
    again from the log."""

    log_inode: int = 0
    log_bytes: int = 0
    starts: int = 0
    first_start: RunStart | None = None
    last_start: RunStart | None = None
    #: The ``run_finished`` of the latest attempt.
    finished: RunEnd | None = None
    updated_at: str | None = None
    #: ``rule`` or ``rule/target`` -> rule, target, its last ``rule_started`` and its last rule event.
    rules: dict[str, RuleEntry] = field(default_factory=dict)
    #: Rules started in the latest attempt.
    attempt_rules: list[str] = field(default_factory=list)
    comfyui_attempts: list[Attempt] = field(default_factory=list)
    comfyui_version: str | None = None
    last_step: Step | None = None
    #: The ComfyUI servers the stage started itself (url, seconds to answer, host, version).
    server_starts: list[ServerStart] = field(default_factory=list)
    #: The cleanups of the latest attempt: what they removed, and their sum.
    removed: list[str] = field(default_factory=list)
    cleanup: Cleanup | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the latest attempt recorded that it succeeded."""
        return self.finished is not None and self.finished.get("run_status") == "succeeded"

    def fold(self, event: dict[str, Any]) -> None:
        """Take one more event of the log (JSON as written, its shape by its ``kind``) into account."""
        kind = event.get("kind")
        self.updated_at = event.get("ts", self.updated_at)
        if kind == "run_started":
            self.starts += 1
            start = cast(RunStart, event)
            self.first_start = self.first_start or start
            self.last_start, self.finished, self.attempt_rules = start, None, []
            self.removed, self.cleanup = [], None
        elif kind == "run_finished":
            self.finished = cast(RunEnd, event)
        elif kind == "cleanup":
            self._fold_cleanup(
                event.get("ts"),
                event.get("trigger"),
                event.get("removed", []),
                int(event.get("bytes_freed", 0)),
            )
        rule = event.get("rule")
        if rule in RULE_PHASE and str(kind).startswith("rule_"):
            key = f"{rule}/{event['target']}" if event.get("target") else str(rule)
            entry = self.rules.setdefault(key, {"rule": rule, "target": event.get("target")})
            kept = cast(
                RuleEvent, {name: event[name] for name in RULE_EVENT_FIELDS if event.get(name) is not None}
            )
            entry["last"] = kept
            if kind == "rule_started":
                entry["started"] = kept
                entry["attempt"] = self.starts
                if rule not in self.attempt_rules:
                    self.attempt_rules.append(str(rule))
        if kind == "comfyui_attempt":
            self.comfyui_attempts.append(
                cast(Attempt, {name: event[name] for name in ATTEMPT_FIELDS if event.get(name)})
            )
        if event.get("comfyui_version"):
            self.comfyui_version = str(event["comfyui_version"])
        if kind == "comfyui_server_started":
            self.server_starts.append(
                {
                    "url": event.get("url"),
                    "seconds": event.get("seconds"),
                    "host": event.get("host"),
                    "comfyui_version": event.get("comfyui_version"),
                }
            )
        if kind == "progress":
            self.last_step = {
                "batch": event.get("batch"),
                "value": event.get("value"),
                "max": event.get("max"),
            }

    def _fold_cleanup(self, at: str | None, trigger: str | None, paths: list[object], freed: int) -> None:
        """A cleanup (``va clean``, ``cleanup.after_success``): what it removed, and the sum of them."""
        removed = [str(path) for path in paths]
        self.removed += [path for path in removed if path not in self.removed]
        before = self.cleanup or {"at": None, "trigger": None, "files_removed": 0, "bytes_freed": 0}
        self.cleanup = {
            "at": at,
            "trigger": trigger,
            "files_removed": before["files_removed"] + len(removed),
            "bytes_freed": before["bytes_freed"] + freed,
        }


def _stored_digest(path: Path) -> EventDigest:
    try:
        return EventDigest(**read_json(path))
    except (OSError, ValueError, TypeError):
        return EventDigest()


def current_digest(workdir: Workdir) -> EventDigest:
    """The digest of the whole event log: the stored one, with the events appended since folded in (all
    of them when none is stored, or it was made of another log)."""
    try:
        stat = workdir.events.stat()
    except FileNotFoundError:
        return EventDigest()
    digest = _stored_digest(workdir.manifest_digest)
    if digest.log_inode != stat.st_ino or digest.log_bytes > stat.st_size:
        digest = EventDigest(log_inode=stat.st_ino)
    with open(workdir.events, "rb") as handle:
        handle.seek(digest.log_bytes)
        for line in handle:
            if not line.endswith(b"\n"):
                break  # a torn last line (a killed writer) is read again next time
            digest.log_bytes += len(line)
            try:
                event = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):  # not an event (va.events.read_events)
                continue
            if isinstance(event, dict):
                digest.fold(event)
    return digest


def store_digest(workdir: Workdir, digest: EventDigest) -> None:
    """Keep ``digest`` for the next event (written atomically; the caller holds the state lock). Not
    fsynced: the event log it sums up is not either, and a digest lost or behind the log is made again
    from it (each event recorded paid for two fsyncs, this one for nothing)."""
    # Compact and as it is (its fields are plain JSON already): no copy, and json's C encoder, where an
    # indented copy took 0.7 ms an event, ten times as long.
    write_text_atomic(workdir.manifest_digest, json.dumps(vars(digest)) + "\n", durable=False)


# What the manifest reads of ``prepare/plan.json`` (va.plan.plan_document): the JSON as written, read
# raw because the manifest is made again at every event and needs only these parts of it.


class PlannedBatch(TypedDict):
    """A ComfyUI batch of the plan."""

    name: str
    frames: int
    seed: int
    segment: NotRequired[int]


class PlannedSegment(TypedDict):
    """A segment of a generation by segments."""

    index: int
    name: str
    start_seconds: float
    end_seconds: float
    frames: int
    kept: int
    seed: int
    take: int
    cut: str
    prompt: NotRequired[str | None]


class PlannedGeneration(TypedDict, total=False):
    """The plan's ComfyUI stage."""

    fps: int
    frames: int
    batches: list[PlannedBatch]
    segments: list[PlannedSegment]
    contract: SegmentContract | None


class PlannedChunk(TypedDict):
    """A lip-sync chunk of the plan."""

    name: str
    start_seconds: float
    end_seconds: float
    frames: int
    cut: str


class PlannedLipsync(TypedDict, total=False):
    """The plan's lip-sync stage."""

    chunks: list[PlannedChunk]


class PlanDocument(TypedDict, total=False):
    """The parts of ``prepare/plan.json`` the manifest shows."""

    comfyui: PlannedGeneration | None
    lipsync: PlannedLipsync | None
    seeds: Seeds
    audio_input_duration_seconds: float
    audio_duration_seconds: float
    buffer: BufferSeconds
    loudness: Loudness | None
    visual_target_duration_seconds: float
    fps: float
    target_frames: int
    inputs: dict[str, InputRecord]
    effective_params: JsonObject
    tools: dict[str, str]


def _comfyui_details(
    phase: Phase, workdir: Workdir, digest: EventDigest, generation: PlannedGeneration, removed: set[str]
) -> None:
    """Add to the ComfyUI ``phase`` its progress in batches (or segments) and frames, its batches' seeds
    (or its segments), every attempt (seed, prompt id, outcome) and the servers' versions."""
    segments = _segment_states(workdir, generation)
    batches = generation.get("batches", [])
    progress: GenerationProgress = {
        "frames_done": 0,
        "frames_total": generation.get("frames"),
        "last_step": digest.last_step,
    }
    if segments:
        done = [s for s in segments if s["status"] == "done"]
        progress.update({"segments_done": len(done), "segments_total": len(segments)})
        progress["frames_done"] = sum(s["kept"] for s in done)
    else:
        finished = [
            b
            for b in batches
            if workdir.batch_result(b["name"]).exists()
            or str(workdir.batch_result(b["name"]).relative_to(workdir.root)) in removed
        ]
        progress.update({"batches_done": len(finished), "batches_total": len(batches)})
        progress["frames_done"] = sum(b["frames"] for b in finished)
    phase.update({"progress": progress, "generation_fps": generation.get("fps")})
    if segments:
        phase.update({"contract": generation.get("contract"), "segments": segments})
    else:
        phase["batch_seeds"] = {b["name"]: b["seed"] for b in batches}
        phase["batch_segments"] = {b["name"]: b["segment"] for b in batches if "segment" in b} or None
    attempts = digest.comfyui_attempts
    batch_servers = _servers_of(attempts)
    versions = {server["url"]: server["comfyui_version"] for server in batch_servers.values()}
    phase.update(
        {
            "attempts": attempts,
            "prompt_ids": sorted({a["prompt_id"] for a in attempts if a.get("prompt_id")}),
            "comfyui_version": digest.comfyui_version,
            # ``comfyui_versions`` with more than one value is a pool of mixed versions.
            "batch_servers": batch_servers or None,
            "comfyui_versions": versions or None,
            "server_starts": digest.server_starts or None,
            "graphs": sorted(
                str(p.relative_to(workdir.root)) for p in (workdir.root / "comfyui" / "graphs").glob("*.json")
            ),
        }
    )


def _segment_states(workdir: Workdir, generation: PlannedGeneration) -> list[SegmentState]:
    """Each segment of a generation by segments (index, time range, frames, seed, take, and once made
    the prompt id and attempts of the clip it has); none for a generation in batches."""
    segments: list[SegmentState] = []
    for segment in generation.get("segments") or []:
        record = workdir.segment_record(segment["name"])
        made = read_json(record) if record.exists() else {}
        # A record of an earlier take (a retake under way) is not this segment's.
        current = made if (made.get("seed"), made.get("take")) == (segment["seed"], segment["take"]) else {}
        segments.append(
            {
                "index": segment["index"],
                "name": segment["name"],
                "start": segment["start_seconds"],
                "end": segment["end_seconds"],
                "frames": segment["frames"],
                "kept": segment["kept"],
                "seed": segment["seed"],
                "take": segment["take"],
                "cut": segment["cut"],
                "prompt": segment.get("prompt"),
                "status": "done" if current else "pending",
                "prompt_id": current.get("prompt_id"),
                "attempts": current.get("attempts"),
            }
        )
    return segments


def _servers_of(attempts: list[Attempt]) -> dict[str, BatchServer]:
    """Which server made each batch or segment (its last succeeded attempt), and the version it reported."""
    made = {
        a.get("batch") or a.get("segment", ""): a
        for a in attempts
        if a.get("outcome") == "succeeded" and a.get("server")
    }
    return {
        name: {"url": a.get("server", ""), "comfyui_version": a.get("comfyui_version")}
        for name, a in sorted(made.items())
    }


def _loudness(workdir: Workdir, target: Loudness | None) -> Loudness | None:
    """The voice's normalization: the planned target, and once prepare_audio ran, how it went and what
    was measured before and after; None when the job keeps the voice's loudness."""
    if not target:
        return None
    record = workdir.loudness_record
    done: Loudness | None = read_json(record) if record.exists() else None
    # A record of another target (the job's was changed since) is not this plan's.
    current = done is not None and all(done.get(name) == value for name, value in target.items())
    return {**target, **done} if done is not None and current else target


def _planned_chunks(plan: PlanDocument) -> list[PlannedChunk]:
    """The lip-sync chunks of the plan; none when the audio is not cut."""
    chunks = (plan.get("lipsync") or {}).get("chunks") or []
    return chunks if len(chunks) > 1 else []


def _chunk_details(
    chunks: list[PlannedChunk], digest: EventDigest, workdir: Workdir, removed: set[str], live: bool
) -> list[ChunkState]:
    """Each chunk of a cut audio: its span (seconds, frames at the provider's rate), whether its video is
    made, the run attempt that made it and how long that took."""
    details: list[ChunkState] = []
    for chunk in chunks:
        entry = digest.rules.get(f"lipsync_chunk/{chunk['name']}") or {}
        last = entry.get("last") or {}
        path = str(workdir.lipsync_chunk(chunk["name"]).relative_to(workdir.root))
        made = path in removed or (workdir.root / path).exists()
        finished = last.get("kind") == "rule_finished"
        details.append(
            {
                "name": chunk["name"],
                "start": chunk["start_seconds"],
                "end": chunk["end_seconds"],
                "frames": chunk["frames"],
                "cut": chunk["cut"],
                "status": _rule_state(entry, made, live, digest.succeeded)["status"],
                "attempt": entry.get("attempt") if made and finished else None,
                "seconds": last.get("seconds") if made and finished else None,
            }
        )
    return details


def _lipsync_details(details: Phase, workdir: Workdir, result: LipsyncResult, basename: str) -> None:
    """Add to the lip-sync phase its provider, whether it passed the video through, where it found the
    face, its sync record and the video an out-of-sync run kept instead of publishing."""
    details.update({"provider": result.get("provider"), "passthrough": result.get("passthrough", False)})
    if result.get("face"):  # a provider that needs a face: where it was found
        details["face"] = result["face"]
    if sync := result.get("sync"):  # the sync check's verdict (docs/LIPSYNC_INTERFACE.md#the-sync-check)
        kept = workdir.kept_final(basename)
        details["sync"] = {**sync, "kept": kept.name} if _kept_by_run(workdir, kept) else sync
    if result.get("passthrough"):
        error = result.get("error")
        message = (error["message"] if error else None) or ""
        details["note"] = (
            f"lip-sync failed; the un-synced video was used (lipsync.allow_passthrough): {message}"
        )


def _kept_by_run(workdir: Workdir, kept: Path) -> bool:
    """Whether ``kept`` is there and the run recorded keeping a video of that name (a user's file of the
    name, which the encode refuses to replace, is not the run's)."""
    return bool(workdir.kept_digests().get(kept.name)) and kept.exists()


def build_manifest(workdir: Workdir, digest: EventDigest | None = None) -> Manifest | None:
    """The manifest of the run in ``workdir`` (from ``digest``, else from the log's current digest), or
    None when no run was ever started there."""
    digest = digest or current_digest(workdir)
    first, last = digest.first_start, digest.last_start
    if first is None or last is None:
        return None
    finished = digest.finished
    succeeded = digest.succeeded
    live = finished is None and process_alive(last.get("pid"), last.get("host"), last.get("pid_started"))
    exit_status: ExitStatus | None
    run_status: RunStatus
    if finished:
        run_status, exit_status = finished["run_status"], finished["exit_status"]
    elif live:
        run_status, exit_status = "running", None
    else:
        run_status = "interrupted"
        code = ExitCode.INTERRUPTED
        exit_status = {"code": int(code), "name": code.name, "message": INTERRUPTED_MESSAGE}

    # A cleanup removed outputs of finished rules on purpose: they count as made, not as pending.
    removed = set(digest.removed)
    graph = last["graph"]
    document = read_json(workdir.plan) if workdir.plan.exists() else None
    plan: PlanDocument = document or PlanDocument()
    generation = plan.get("comfyui") or {}
    batches = [b["name"] for b in generation.get("batches", [])]
    chunks = _planned_chunks(plan)
    by_key: dict[Key, RuleEntry] = {(e.get("rule", ""), e.get("target")): e for e in digest.rules.values()}
    phases: dict[str, Phase] = {}
    for name in PHASES:
        if name not in graph["rules"]:  # a run recorded before this version had no such phase
            continue
        if name in graph["skipped"]:
            phases[name] = {"status": "skipped", "reason": graph["skipped"][name]}
            continue
        keys: list[Key] = []
        for rule in graph["rules"][name]:
            seen = {str(t) for r, t in by_key if r == rule and t}
            if rule == "lipsync_chunk":  # a job of each chunk, none when the audio is not cut
                keys += [(rule, str(chunk["name"])) for chunk in chunks]
                continue
            targets = sorted(seen | set(batches)) if rule == "comfyui_batch" else []
            if rule == "comfyui_segment":  # a job of each segment
                targets = [str(segment["name"]) for segment in generation.get("segments") or []]
            keys += [(rule, target) for target in targets] if targets else [(rule, None)]
        outputs = {key: rule_outputs(workdir, graph["final"], *key) for key in keys}
        states = {
            key: _rule_state(
                by_key.get(key),
                all(p in removed or (workdir.root / p).exists() for p in outputs[key]),
                live,
                succeeded,
            )
            for key in keys
        }
        phases[name] = _phase(keys, states, outputs, workdir.root)
    if phases["comfyui"]["status"] != "skipped":
        _comfyui_details(phases["comfyui"], workdir, digest, generation, removed)
    if chunks and phases["lipsync"]["status"] != "skipped":
        phases["lipsync"]["chunks"] = _chunk_details(chunks, digest, workdir, removed, live)
    if phases["lipsync"]["status"] != "skipped" and workdir.lipsync_result.exists():
        _lipsync_details(phases["lipsync"], workdir, read_json(workdir.lipsync_result), graph["final"])
    elif workdir.lipsync_result.exists():  # a template that lip-syncs in the model: its picture's check
        result: LipsyncResult = read_json(workdir.lipsync_result)
        if (in_model := result.get("in_model")) and (record := result.get("sync")):
            kept = workdir.kept_final(graph["final"])
            phases["lipsync"].update({"in_model": in_model, "sync": record})
            if _kept_by_run(workdir, kept):
                phases["lipsync"]["sync"] = {**record, "kept": kept.name}
    final = workdir.final(graph["final"])
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": first["run_id"],
        "run_status": run_status,
        "exit_status": exit_status,
        "workdir": str(workdir.root),
        "job": last["job"],
        "plan_fingerprint": document_fingerprint(document) if document else None,
        "created_at": first["ts"],
        "updated_at": digest.updated_at,
        "attempts": digest.starts,
        "last_attempt": {
            "plan_changes": last.get("plan_changes", []),
            "rules_run": sorted(digest.attempt_rules),
        },
        "phases": phases,
        "seeds": plan.get("seeds"),
        "audio_input_duration_seconds": plan.get("audio_input_duration_seconds"),
        "audio_duration_seconds": plan.get("audio_duration_seconds"),
        "buffer": plan.get("buffer", last.get("buffer")),
        "loudness": _loudness(workdir, plan.get("loudness")),
        "visual_target_duration_seconds": plan.get("visual_target_duration_seconds"),
        "fps": plan.get("fps", last.get("fps")),
        "target_frames": plan.get("target_frames"),
        "inputs": plan.get("inputs", last.get("inputs")),
        "effective_params": plan.get("effective_params"),
        "tools": plan.get("tools"),
        "cleanup": digest.cleanup,
        "final": {
            "path": graph["final"],
            "exists": final.exists(),
            "bytes": final.stat().st_size if final.exists() else None,
        },
    }
