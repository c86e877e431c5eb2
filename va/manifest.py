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
    state: dict[str, Any] = {"started_at": started["ts"] if started else None, "ended_at": None}
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


def _phase(
    rules: list[str], states: dict[str, dict[str, Any]], outputs: dict[str, list[str]], root: Any
) -> dict[str, Any]:
    mine = [states[rule] for rule in rules]
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
        "outputs": [path for rule in rules for path in outputs[rule] if (root / path).exists()],
    }
    errors = [s["error"] for s in mine if s.get("error")]
    if errors:
        phase["error"] = errors[0]
    return phase


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

    graph = last["graph"]
    outputs = rule_outputs(workdir, graph["final"])
    by_rule: dict[str, list[dict[str, Any]]] = {rule: [] for rule in RULE_PHASE}
    for event in events:
        if event.get("rule") in by_rule and str(event.get("kind", "")).startswith("rule_"):
            by_rule[event["rule"]].append(event)
    states = {
        rule: _rule_state(rule_events, all((workdir.root / p).exists() for p in outputs[rule]), live)
        for rule, rule_events in by_rule.items()
    }
    phases: dict[str, Any] = {}
    for phase in PHASES:
        if phase in graph["skipped"]:
            phases[phase] = {"status": "skipped", "reason": graph["skipped"][phase]}
        else:
            phases[phase] = _phase(graph["rules"][phase], states, outputs, workdir.root)

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
    plan = read_json(workdir.plan) if workdir.plan.exists() else {}
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
        "final": {
            "path": graph["final"],
            "exists": final.exists(),
            "bytes": final.stat().st_size if final.exists() else None,
        },
    }
