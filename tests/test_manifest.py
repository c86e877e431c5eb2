"""The manifest is derived from the event log and the targets, without Snakemake."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from pydantic import TypeAdapter

from va.errors import ExitCode, VaError
from va.manifest import Manifest, build_manifest
from va.processes import ProcessId
from va.tracking import record, record_run_finished
from va.workdir import Workdir

GRAPH = {
    "final": "final.mp4",
    "rules": {
        "prepare": ["prepare_audio", "hold_start_frame"],
        "comfyui": [],
        "lipsync": [],
        "encode": ["encode"],
    },
    "skipped": {"comfyui": "no workflow", "lipsync": "off"},
}


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def start(
    workdir: Workdir, pid: int, pid_started: int | None = None, graph: dict[str, object] = GRAPH
) -> None:
    record(
        workdir,
        "run",
        "info",
        "started",
        kind="run_started",
        run_id="run-x",
        pid=pid,
        pid_started=pid_started,
        host=None,
        job="j",
        graph=graph,
    )


def rule(workdir: Workdir, name: str, kind: str, **extra: object) -> None:
    record(workdir, "prepare", "info", f"{name} {kind}", kind=kind, rule=name, phase="prepare", **extra)


def test_no_events_no_manifest(tmp_path: Path) -> None:
    assert build_manifest(Workdir(tmp_path)) is None


def test_a_live_run_is_running_and_a_dead_one_interrupted(tmp_path: Path) -> None:
    workdir = Workdir(tmp_path)
    start(workdir, pid=os.getpid())
    rule(workdir, "prepare_audio", "rule_started")
    live = build_manifest(workdir)
    assert live is not None
    assert live["run_status"] == "running" and live["exit_status"] is None
    assert live["phases"]["prepare"]["status"] == "running"

    start(workdir, pid=dead_pid())
    dead = build_manifest(workdir)
    assert dead is not None
    assert dead["run_status"] == "interrupted"
    assert dead["exit_status"]["code"] == ExitCode.INTERRUPTED
    assert dead["phases"]["prepare"]["status"] == "pending"
    assert dead["attempts"] == 2 and dead["run_id"] == "run-x"


def test_a_process_that_took_over_the_pid_does_not_keep_the_run_running(tmp_path: Path) -> None:
    # The recorded driver's pid is this test's, but its start time is another's: the driver is gone.
    this = ProcessId.of(os.getpid())
    assert this is not None
    workdir = Workdir(tmp_path)
    start(workdir, pid=this.pid, pid_started=this.start)
    manifest = build_manifest(workdir)
    assert manifest is not None and manifest["run_status"] == "running"
    start(workdir, pid=this.pid, pid_started=this.start - 1)
    manifest = build_manifest(workdir)
    assert manifest is not None and manifest["run_status"] == "interrupted"


def test_phase_done_needs_its_outputs(tmp_path: Path) -> None:
    workdir = Workdir(tmp_path)
    start(workdir, pid=dead_pid())
    for name in ("prepare_audio", "hold_start_frame"):
        rule(workdir, name, "rule_started")
        rule(workdir, name, "rule_finished")
    manifest = build_manifest(workdir)
    assert manifest is not None and manifest["phases"]["prepare"]["status"] == "pending"  # nothing on disk
    for path in (workdir.padded_audio, workdir.padded_aac, workdir.plan, workdir.still, workdir.still_loop):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    manifest = build_manifest(workdir)
    assert manifest is not None
    assert manifest["phases"]["prepare"]["status"] == "done"
    assert manifest["phases"]["prepare"]["outputs"] == [
        "prepare/padded.wav",
        "prepare/padded.m4a",
        "frames/still.png",
        "frames/still.mp4",
    ]
    assert manifest["phases"]["comfyui"] == {"status": "skipped", "reason": "no workflow"}


def test_a_failed_rule_fails_its_phase_and_the_run(tmp_path: Path) -> None:
    workdir = Workdir(tmp_path)
    start(workdir, pid=dead_pid())
    error = VaError(ExitCode.ENCODE_FAILED, "x264 said no")
    record(
        workdir,
        "encode",
        "error",
        "boom",
        kind="rule_failed",
        rule="encode",
        phase="encode",
        error=error.as_dict(),
    )
    record_run_finished(workdir, from_rules=True)
    manifest = build_manifest(workdir)
    assert manifest is not None
    assert manifest["run_status"] == "failed"
    assert manifest["exit_status"] == {"code": 60, "name": "ENCODE_FAILED", "message": "x264 said no"}
    assert manifest["phases"]["encode"]["status"] == "failed"
    assert manifest["phases"]["encode"]["error"]["name"] == "ENCODE_FAILED"


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    workdir = Workdir(tmp_path)
    start(workdir, pid=dead_pid())
    with open(workdir.events, "a", encoding="utf-8") as handle:
        handle.write('{"ts": "2026-01-01T00:00:00.000Z", "kind": "rule_sta')
    manifest = build_manifest(workdir)
    assert manifest is not None and manifest["run_status"] == "interrupted"


def test_the_digest_beside_the_log_gives_what_the_whole_log_gives(tmp_path: Path) -> None:
    """Each event is folded into logs/manifest.digest.json; a manifest made from it equals one made from
    the whole log, and a missing, broken or foreign digest is made again from the log."""
    workdir = Workdir(tmp_path)
    start(workdir, pid=dead_pid())
    rule(workdir, "prepare_audio", "rule_started")
    rule(workdir, "prepare_audio", "rule_finished")
    record(workdir, "run", "info", "cleaned", kind="cleanup", removed=["prepare/padded.wav"], bytes_freed=9)
    kept = build_manifest(workdir)
    assert kept is not None and kept["cleanup"]["files_removed"] == 1
    assert kept["last_attempt"]["rules_run"] == ["prepare_audio"]
    stored = json.loads(workdir.manifest_digest.read_text())
    assert stored["log_bytes"] == workdir.events.stat().st_size
    with open(workdir.events, "a", encoding="utf-8") as log:
        log.write('{"kind": "rule_started", "rule": "encode"')  # torn: a writer killed mid-line
    assert build_manifest(workdir) == kept
    for damage in ("missing", "not json", json.dumps({**stored, "log_inode": 1})):
        if damage == "missing":
            workdir.manifest_digest.unlink()
        else:
            workdir.manifest_digest.write_text(damage)
        assert build_manifest(workdir) == kept, damage


def generation_run(workdir: Workdir, rule_name: str, generation: dict[str, object]) -> None:
    """A run whose ComfyUI phase has ``rule_name`` and whose plan holds ``generation``."""
    workdir.plan.parent.mkdir(parents=True)
    workdir.plan.write_text(json.dumps({"comfyui": generation}))
    graph = {**GRAPH, "rules": {**GRAPH["rules"], "comfyui": [rule_name]}, "skipped": {"lipsync": "off"}}
    start(workdir, os.getpid(), graph=graph)
    record(workdir, "comfyui", "info", "step", kind="progress", batch="0001", value=3, max=20)


def test_the_comfyui_progress_in_batches_and_in_segments(tmp_path: Path) -> None:
    """One progress record, counted in batches or in segments (a segment counts the frames it keeps),
    every field of it declared by the manifest's records."""
    batches = Workdir(tmp_path / "batches")
    planned = [{"index": i, "name": f"000{i}", "first": 8 * i, "frames": 8, "seed": 40 + i} for i in range(3)]
    generation_run(batches, "comfyui_batch", {"fps": 8, "frames": 24, "batches": planned})
    batches.batch_result("0001").parent.mkdir(parents=True)
    batches.batch_result("0001").write_text("{}")
    in_batches = build_manifest(batches)
    assert in_batches is not None
    TypeAdapter(Manifest).validate_python(in_batches)
    phase = in_batches["phases"]["comfyui"]
    step = {"batch": "0001", "value": 3, "max": 20}
    assert phase["progress"] == {
        "batches_done": 1,
        "batches_total": 3,
        "frames_done": 8,
        "frames_total": 24,
        "last_step": step,
    }
    assert phase["batch_seeds"] == {"0000": 40, "0001": 41, "0002": 42} and phase["batch_segments"] is None

    segmented = Workdir(tmp_path / "segments")
    cut = {"frames": 33, "kept": 30, "seed": 7, "take": 0, "cut": "pause"}
    segments = [
        {"index": i, "name": f"000{i}", "start_seconds": 2.0 * i, "end_seconds": 2.0 * i + 2, **cut}
        for i in range(2)
    ]
    generation_run(segmented, "comfyui_segment", {"fps": 16, "frames": 60, "segments": segments})
    segmented.segment_record("0000").parent.mkdir(parents=True)
    segmented.segment_record("0000").write_text(
        json.dumps({"seed": 7, "take": 0, "prompt_id": "p", "attempts": 1})
    )
    segmented.segment_record("0001").write_text(
        json.dumps({"seed": 7, "take": 1, "prompt_id": "q", "attempts": 2})
    )
    manifest = build_manifest(segmented)
    assert manifest is not None
    phase = manifest["phases"]["comfyui"]
    assert phase["progress"] == {
        "segments_done": 1,
        "segments_total": 2,
        "frames_done": 30,
        "frames_total": 60,
        "last_step": step,
    }
    # The second segment's record is of another take (a retake under way): not this segment's.
    assert [(s["status"], s["prompt_id"]) for s in phase["segments"]] == [("done", "p"), ("pending", None)]
    TypeAdapter(Manifest).validate_python(manifest)


def test_a_batch_a_resume_kept_is_done_once_the_run_succeeded(tmp_path: Path) -> None:
    """A stop after batch 0001 wrote its record but before its end was logged: the resume keeps the
    batch (its record is there) and runs it no more, so its last event stays ``rule_started``. Once the
    run succeeded, every target there was made or kept whole: the phase is done, not pending. While the
    resume runs, or after it failed, the batch is not counted as done by its events."""
    workdir = Workdir(tmp_path)
    planned = [{"index": i, "name": f"000{i}", "first": 8 * i, "frames": 8, "seed": 40 + i} for i in range(2)]
    generation_run(workdir, "comfyui_batch", {"fps": 8, "frames": 16, "batches": planned})
    workdir.batch_result("0000").parent.mkdir(parents=True)
    for name in ("0000", "0001"):
        batch = {"rule": "comfyui_batch", "phase": "comfyui", "target": name}
        record(workdir, "comfyui", "info", f"{name} started", kind="rule_started", **batch)
        workdir.batch_result(name).write_text("{}")
        if name == "0000":
            record(workdir, "comfyui", "info", f"{name} finished", kind="rule_finished", **batch)
    record_run_finished(workdir, VaError(ExitCode.INTERRUPTED, "run interrupted by a signal"))
    graph = {
        **GRAPH,
        "rules": {**GRAPH["rules"], "comfyui": ["comfyui_batch"]},
        "skipped": {"lipsync": "off"},
    }
    start(workdir, dead_pid(), graph=graph)  # the resume: batch 0001 kept, nothing recorded of it
    manifest = build_manifest(workdir)
    assert manifest is not None and manifest["run_status"] == "interrupted"
    assert manifest["phases"]["comfyui"]["status"] == "pending"
    record_run_finished(workdir)
    manifest = build_manifest(workdir)
    assert manifest is not None and manifest["run_status"] == "succeeded"
    phase = manifest["phases"]["comfyui"]
    assert phase["status"] == "done" and phase["ended_at"] is not None
    assert phase["progress"]["batches_done"] == 2
