"""``manifest.json``: derived from the event log, the plan and which targets exist, never edited by hand.

The log is folded into a digest one event at a time (``EventDigest``), so keeping the manifest up to
date costs the same at the ten-thousandth event as at the first.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from va.atomic import read_json, write_json_atomic
from va.errors import ExitCode
from va.graph import PHASES, RULE_PHASE, rule_outputs
from va.plan import document_fingerprint
from va.processes import ProcessId
from va.workdir import Workdir

MANIFEST_VERSION = 1
TERMINAL = frozenset({"succeeded", "failed", "interrupted"})

INTERRUPTED_MESSAGE = "the run stopped before it finished; continue it with: va run JOB --workdir W --resume"


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


def _rule_state(entry: dict[str, Any] | None, outputs_exist: bool, live: bool) -> dict[str, Any]:
    started = entry.get("started") if entry else None
    last = entry.get("last") if entry else None
    state: dict[str, Any] = {
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
        state.update(status="failed", ended_at=last["ts"], error=last.get("error"))
    else:
        state["status"] = "running" if live else "pending"
    return state


Key = tuple[str, str | None]


def _phase(
    keys: list[Key], states: dict[Key, dict[str, Any]], outputs: dict[Key, list[str]], root: Any
) -> dict[str, Any]:
    mine = [states[key] for key in keys]
    statuses = {state["status"] for state in mine}
    for status in ("failed", "running"):
        if status in statuses:
            break
    else:
        status = "done" if statuses == {"done"} else "pending"
    starts = [t for t in (epoch(s["started_at"]) for s in mine) if t is not None]
    ends = [t for t in (epoch(s["ended_at"]) for s in mine) if t is not None]
    phase: dict[str, Any] = {
        "status": status,
        "started_at": min((s["started_at"] for s in mine if s["started_at"]), default=None),
        "ended_at": max((s["ended_at"] for s in mine if s["ended_at"]), default=None)
        if status in ("done", "failed")
        else None,
        "seconds": round(max(ends) - min(starts), 3) if status == "done" and starts and ends else None,
        "outputs": [path for key in keys for path in outputs[key] if (root / path).exists()],
    }
    errors = [s["error"] for s in mine if s.get("error")]
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
    first_start: dict[str, Any] | None = None
    last_start: dict[str, Any] | None = None
    #: The ``run_finished`` of the latest attempt.
    finished: dict[str, Any] | None = None
    updated_at: str | None = None
    #: ``rule`` or ``rule/target`` -> rule, target, its last ``rule_started`` and its last rule event.
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Rules started in the latest attempt.
    attempt_rules: list[str] = field(default_factory=list)
    comfyui_attempts: list[dict[str, Any]] = field(default_factory=list)
    comfyui_version: str | None = None
    last_step: dict[str, Any] | None = None
    #: The ComfyUI servers the stage started itself (url, seconds to answer, host, version).
    server_starts: list[dict[str, Any]] = field(default_factory=list)
    #: The cleanups of the latest attempt: what they removed, and their sum.
    removed: list[str] = field(default_factory=list)
    cleanup: dict[str, Any] | None = None

    def fold(self, event: dict[str, Any]) -> None:
        """Take one more event of the log into account."""
        kind = event.get("kind")
        self.updated_at = event.get("ts", self.updated_at)
        if kind == "run_started":
            self.starts += 1
            self.first_start = self.first_start or event
            self.last_start, self.finished, self.attempt_rules = event, None, []
            self.removed, self.cleanup = [], None
        elif kind == "run_finished":
            self.finished = event
        elif kind == "cleanup":
            self._fold_cleanup(event)
        rule = event.get("rule")
        if rule in RULE_PHASE and str(kind).startswith("rule_"):
            key = f"{rule}/{event['target']}" if event.get("target") else str(rule)
            entry = self.rules.setdefault(key, {"rule": rule, "target": event.get("target")})
            kept = {name: event[name] for name in RULE_EVENT_FIELDS if event.get(name) is not None}
            entry["last"] = kept
            if kind == "rule_started":
                entry["started"] = kept
                entry["attempt"] = self.starts
                if rule not in self.attempt_rules:
                    self.attempt_rules.append(str(rule))
        if kind == "comfyui_attempt":
            self.comfyui_attempts.append({name: event[name] for name in ATTEMPT_FIELDS if event.get(name)})
        if event.get("comfyui_version"):
            self.comfyui_version = str(event["comfyui_version"])
        if kind == "comfyui_server_started":
            self.server_starts.append(
                {name: event.get(name) for name in ("url", "seconds", "host", "comfyui_version")}
            )
        if kind == "progress":
            self.last_step = {name: event.get(name) for name in ("batch", "value", "max")}

    def _fold_cleanup(self, event: dict[str, Any]) -> None:
        """A cleanup (``va clean``, ``cleanup.after_success``): what it removed, and the sum of them."""
        removed = [str(path) for path in event.get("removed", [])]
        self.removed += [path for path in removed if path not in self.removed]
        before = self.cleanup or {"files_removed": 0, "bytes_freed": 0}
        self.cleanup = {
            "at": event.get("ts"),
            "trigger": event.get("trigger"),
            "files_removed": before["files_removed"] + len(removed),
            "bytes_freed": before["bytes_freed"] + int(event.get("bytes_freed", 0)),
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
    write_json_atomic(workdir.manifest_digest, dataclasses.asdict(digest), durable=False)


def _comfyui_details(
    workdir: Workdir, digest: EventDigest, plan: dict[str, Any], removed: set[str]
) -> dict[str, Any]:
    """Progress in batches and frames, every attempt (seed, prompt id, outcome), the server's version."""
    generation = plan.get("comfyui") or {}
    batches = generation.get("batches", [])
    finished = [
        b
        for b in batches
        if workdir.batch_result(b["name"]).exists()
        or str(workdir.batch_result(b["name"]).relative_to(workdir.root)) in removed
    ]
    attempts = digest.comfyui_attempts
    if generation.get("segments"):
        return _segment_details(workdir, generation, attempts, digest)
    return {
        "progress": {
            "batches_done": len(finished),
            "batches_total": len(batches),
            "frames_done": sum(b["frames"] for b in finished),
            "frames_total": generation.get("frames"),
            "last_step": digest.last_step,
        },
        "generation_fps": generation.get("fps"),
        "batch_seeds": {b["name"]: b["seed"] for b in batches},
        "batch_segments": {b["name"]: b["segment"] for b in batches if "segment" in b} or None,
        **_submissions(workdir, attempts, digest),
    }


def _submissions(workdir: Workdir, attempts: list[dict[str, Any]], digest: EventDigest) -> dict[str, Any]:
    """Every attempt of the stage, its prompt ids, the server's version and every rendered graph."""
    return {
        "attempts": attempts,
        "prompt_ids": sorted({a["prompt_id"] for a in attempts if a.get("prompt_id")}),
        "comfyui_version": digest.comfyui_version,
        **_servers_of(attempts),
        "server_starts": digest.server_starts or None,
        "graphs": sorted(
            str(p.relative_to(workdir.root)) for p in (workdir.root / "comfyui" / "graphs").glob("*.json")
        ),
    }


def _planned_segments(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The segments of a plan's JSON data (a template that generates segments); none otherwise."""
    segments: list[dict[str, Any]] = (plan.get("comfyui") or {}).get("segments") or []
    return segments


def _segment_details(
    workdir: Workdir, generation: dict[str, Any], attempts: list[dict[str, Any]], digest: EventDigest
) -> dict[str, Any]:
    """A generation by segments: its progress, and each segment (index, time range, frames, seed, take,
    and once made the prompt id and attempts of the clip it has)."""
    segments = []
    for segment in generation["segments"]:
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
    done = [s for s in segments if s["status"] == "done"]
    return {
        "progress": {
            "segments_done": len(done),
            "segments_total": len(segments),
            "frames_done": sum(s["kept"] for s in done),
            "frames_total": generation.get("frames"),
            "last_step": digest.last_step,
        },
        "generation_fps": generation.get("fps"),
        "contract": generation.get("contract"),
        "segments": segments,
        **_submissions(workdir, attempts, digest),
    }


def _servers_of(attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """Which server made each batch or segment (its last succeeded attempt) and the version each server
    reported: ``comfyui_versions`` with more than one value is a pool of mixed versions."""
    made = {
        a.get("batch") or a["segment"]: a
        for a in attempts
        if a.get("outcome") == "succeeded" and a.get("server")
    }
    batch_servers = {
        name: {"url": a["server"], "comfyui_version": a.get("comfyui_version")}
        for name, a in sorted(made.items())
    }
    versions = {a["url"]: a["comfyui_version"] for a in batch_servers.values()}
    return {"batch_servers": batch_servers or None, "comfyui_versions": versions or None}


def _loudness(workdir: Workdir, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The voice's normalization: the planned target, and once prepare_audio ran, how it went and what
    was measured before and after; None when the job keeps the voice's loudness."""
    target = plan.get("loudness")
    if not target:
        return None
    record = workdir.loudness_record
    done = read_json(record) if record.exists() else {}
    current = all(done.get(name) == value for name, value in target.items())
    return {**target, **done} if current else dict(target)


def _planned_chunks(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The lip-sync chunks of a plan's JSON data; none when the audio is not cut."""
    chunks: list[dict[str, Any]] = (plan.get("lipsync") or {}).get("chunks") or []
    return chunks if len(chunks) > 1 else []


def _chunk_details(
    chunks: list[dict[str, Any]], digest: EventDigest, workdir: Workdir, removed: set[str], live: bool
) -> list[dict[str, Any]]:
    """Each chunk of a cut audio: its span (seconds, frames at the provider's rate), whether its video is
    made, the run attempt that made it and how long that took."""
    details = []
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
                "status": _rule_state(entry, made, live)["status"],
                "attempt": entry.get("attempt") if made and finished else None,
                "seconds": last.get("seconds") if made and finished else None,
            }
        )
    return details


def _sync_details(record: dict[str, Any], workdir: Workdir, basename: str) -> dict[str, Any]:
    """The lip-sync stage's sync record, and the video an out-of-sync run kept instead of publishing."""
    kept = workdir.kept_final(basename)
    return {**record, "kept": kept.name} if kept.exists() else record


def build_manifest(workdir: Workdir, digest: EventDigest | None = None) -> dict[str, Any] | None:
    """The manifest of the run in ``workdir`` (from ``digest``, else from the log's current digest), or
    None when no run was ever started there."""
    digest = digest or current_digest(workdir)
    first, last = digest.first_start, digest.last_start
    if first is None or last is None:
        return None
    finished = digest.finished
    live = finished is None and process_alive(last.get("pid"), last.get("host"), last.get("pid_started"))
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
    plan = read_json(workdir.plan) if workdir.plan.exists() else {}
    batches = [b["name"] for b in (plan.get("comfyui") or {}).get("batches", [])]
    chunks = _planned_chunks(plan)
    by_key: dict[Key, dict[str, Any]] = {(e["rule"], e.get("target")): e for e in digest.rules.values()}
    phases: dict[str, Any] = {}
    for phase in PHASES:
        if phase not in graph["rules"]:  # a run recorded before this version had no such phase
            continue
        if phase in graph["skipped"]:
            phases[phase] = {"status": "skipped", "reason": graph["skipped"][phase]}
            continue
        keys: list[Key] = []
        for rule in graph["rules"][phase]:
            seen = {str(t) for r, t in by_key if r == rule and t}
            if rule == "lipsync_chunk":  # a job of each chunk, none when the audio is not cut
                keys += [(rule, str(chunk["name"])) for chunk in chunks]
                continue
            targets = sorted(seen | set(batches)) if rule == "comfyui_batch" else []
            if rule == "comfyui_segment":  # a job of each segment
                targets = [str(segment["name"]) for segment in _planned_segments(plan)]
            keys += [(rule, target) for target in targets] if targets else [(rule, None)]
        outputs = {key: rule_outputs(workdir, graph["final"], *key) for key in keys}
        states = {
            key: _rule_state(
                by_key.get(key),
                all(p in removed or (workdir.root / p).exists() for p in outputs[key]),
                live,
            )
            for key in keys
        }
        phases[phase] = _phase(keys, states, outputs, workdir.root)
    if phases["comfyui"]["status"] != "skipped":
        phases["comfyui"].update(_comfyui_details(workdir, digest, plan, removed))

    if chunks and phases["lipsync"]["status"] != "skipped":
        phases["lipsync"]["chunks"] = _chunk_details(chunks, digest, workdir, removed, live)
    if phases["lipsync"]["status"] != "skipped" and workdir.lipsync_result.exists():
        result = read_json(workdir.lipsync_result)
        phases["lipsync"].update(
            provider=result.get("provider"), passthrough=result.get("passthrough", False)
        )
        if result.get("face"):  # a provider that needs a face: where it was found
            phases["lipsync"]["face"] = result["face"]
        if result.get("sync"):  # the sync check's verdict (docs/LIPSYNC_INTERFACE.md#the-sync-check)
            phases["lipsync"]["sync"] = _sync_details(result["sync"], workdir, graph["final"])
        if result.get("passthrough"):
            phases["lipsync"]["note"] = (
                "lip-sync failed; the un-synced video was used (lipsync.allow_passthrough): "
                + str((result.get("error") or {}).get("message", ""))
            )
    elif workdir.lipsync_result.exists():  # a template that lip-syncs in the model: its picture's check
        result = read_json(workdir.lipsync_result)
        if result.get("in_model") and result.get("sync"):
            sync_record = _sync_details(result["sync"], workdir, graph["final"])
            phases["lipsync"].update(in_model=result["in_model"], sync=sync_record)
    final = workdir.final(graph["final"])
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": first["run_id"],
        "run_status": run_status,
        "exit_status": exit_status,
        "workdir": str(workdir.root),
        "job": last["job"],
        "plan_fingerprint": document_fingerprint(plan) if plan else None,
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
        "loudness": _loudness(workdir, plan),
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
