"""``manifest.json``: derived from the event log, the plan and which targets exist, never edited by hand."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from va.atomic import read_json
from va.errors import ExitCode
from va.events import read_events
from va.graph import PHASES, RULE_PHASE, rule_outputs
from va.workdir import Workdir

MANIFEST_VERSION = 1
TERMINAL = frozenset({"succeeded", "failed", "interrupted"})

INTERRUPTED_MESSAGE = "the run stopped before it finished; continue it with: va run JOB --workdir W --resume"


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def process_alive(pid: int | None, host: str | None) -> bool:
    """Whether the process that drove a run still exists (always assumed on another host)."""
    if not pid:
        return False
    if host and host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process whose parent has not reaped it yet still answers ``kill(pid, 0)``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _rule_state(events: list[dict[str, Any]], outputs_exist: bool, live: bool) -> dict[str, Any]:
    started = next((e for e in reversed(events) if e["kind"] == "rule_started"), None)
    last = events[-1] if events else None
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
    starts = [t for t in (_epoch(s["started_at"]) for s in mine) if t is not None]
    ends = [t for t in (_epoch(s["ended_at"]) for s in mine) if t is not None]
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


def _comfyui_details(
    workdir: Workdir, events: list[dict[str, Any]], plan: dict[str, Any], removed: set[str]
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
    attempts = [
        {
            key: e.get(key)
            for key in ("batch", "attempt", "seed", "prompt_id", "outcome", "error")
            if e.get(key)
        }
        for e in events
        if e.get("kind") == "comfyui_attempt"
    ]
    versions = [e["comfyui_version"] for e in events if e.get("comfyui_version")]
    last_step = next((e for e in reversed(events) if e.get("kind") == "progress"), None)
    return {
        "progress": {
            "batches_done": len(finished),
            "batches_total": len(batches),
            "frames_done": sum(b["frames"] for b in finished),
            "frames_total": generation.get("frames"),
            "last_step": {k: last_step.get(k) for k in ("batch", "value", "max")} if last_step else None,
        },
        "generation_fps": generation.get("fps"),
        "batch_seeds": {b["name"]: b["seed"] for b in batches},
        "batch_segments": {b["name"]: b["segment"] for b in batches if "segment" in b} or None,
        "attempts": attempts,
        "prompt_ids": sorted({a["prompt_id"] for a in attempts if a.get("prompt_id")}),
        "comfyui_version": versions[-1] if versions else None,
        "graphs": sorted(
            str(p.relative_to(workdir.root)) for p in (workdir.root / "comfyui" / "graphs").glob("*.json")
        ),
    }


def _cleanup(attempt: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cleanups of the latest attempt (``va clean``, ``cleanup.after_success``), summed up."""
    cleanups = [e for e in attempt if e.get("kind") == "cleanup"]
    if not cleanups:
        return None
    return {
        "at": cleanups[-1]["ts"],
        "trigger": cleanups[-1].get("trigger"),
        "files_removed": sum(len(e.get("removed", [])) for e in cleanups),
        "bytes_freed": sum(int(e.get("bytes_freed", 0)) for e in cleanups),
    }


def build_manifest(workdir: Workdir) -> dict[str, Any] | None:
    """The manifest of the run in ``workdir``, or None when no run was ever started there."""
    events = read_events(workdir.events)
    starts = [i for i, e in enumerate(events) if e.get("kind") == "run_started"]
    if not starts:
        return None
    first, last = events[starts[0]], events[starts[-1]]
    attempt = events[starts[-1] :]
    finished = next((e for e in reversed(attempt) if e.get("kind") == "run_finished"), None)
    live = finished is None and process_alive(last.get("pid"), last.get("host"))
    if finished:
        run_status, exit_status = finished["run_status"], finished["exit_status"]
    elif live:
        run_status, exit_status = "running", None
    else:
        run_status = "interrupted"
        code = ExitCode.INTERRUPTED
        exit_status = {"code": int(code), "name": code.name, "message": INTERRUPTED_MESSAGE}

    # A cleanup removed outputs of finished rules on purpose: they count as made, not as pending.
    removed = {path for e in attempt if e.get("kind") == "cleanup" for path in e.get("removed", [])}
    graph = last["graph"]
    plan = read_json(workdir.plan) if workdir.plan.exists() else {}
    batches = [b["name"] for b in (plan.get("comfyui") or {}).get("batches", [])]
    by_key: dict[Key, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("rule") in RULE_PHASE and str(event.get("kind", "")).startswith("rule_"):
            by_key.setdefault((event["rule"], event.get("target")), []).append(event)
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
            targets = sorted(seen | set(batches)) if rule == "comfyui_batch" else []
            keys += [(rule, target) for target in targets] if targets else [(rule, None)]
        outputs = {key: rule_outputs(workdir, graph["final"], *key) for key in keys}
        states = {
            key: _rule_state(
                by_key.get(key, []),
                all(p in removed or (workdir.root / p).exists() for p in outputs[key]),
                live,
            )
            for key in keys
        }
        phases[phase] = _phase(keys, states, outputs, workdir.root)
    if phases["comfyui"]["status"] != "skipped":
        phases["comfyui"].update(_comfyui_details(workdir, events, plan, removed))

    if phases["lipsync"]["status"] != "skipped" and workdir.lipsync_result.exists():
        result = read_json(workdir.lipsync_result)
        phases["lipsync"].update(
            provider=result.get("provider"), passthrough=result.get("passthrough", False)
        )
        if result.get("passthrough"):
            phases["lipsync"]["note"] = (
                "lip-sync failed; the un-synced video was used (lipsync.allow_passthrough): "
                + str((result.get("error") or {}).get("message", ""))
            )
    final = workdir.final(graph["final"])
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": first["run_id"],
        "run_status": run_status,
        "exit_status": exit_status,
        "workdir": str(workdir.root),
        "job": last["job"],
        "created_at": first["ts"],
        "updated_at": events[-1]["ts"],
        "attempts": len(starts),
        "last_attempt": {
            "plan_changes": last.get("plan_changes", []),
            "rules_run": sorted(
                {str(e["rule"]) for e in attempt if e.get("kind") == "rule_started" and e.get("rule")}
            ),
        },
        "phases": phases,
        "seeds": plan.get("seeds"),
        "audio_input_duration_seconds": plan.get("audio_input_duration_seconds"),
        "audio_duration_seconds": plan.get("audio_duration_seconds"),
        "buffer": plan.get("buffer", last.get("buffer")),
        "visual_target_duration_seconds": plan.get("visual_target_duration_seconds"),
        "fps": plan.get("fps", last.get("fps")),
        "target_frames": plan.get("target_frames"),
        "inputs": plan.get("inputs", last.get("inputs")),
        "effective_params": plan.get("effective_params"),
        "tools": plan.get("tools"),
        "cleanup": _cleanup(attempt),
        "final": {
            "path": graph["final"],
            "exists": final.exists(),
            "bytes": final.stat().st_size if final.exists() else None,
        },
    }
