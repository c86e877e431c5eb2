"""Whole runs: what only the graph shows (the manifest a run leaves, plain Snakemake on the Snakefile).
The output contract of each kind of input is checked in-process in tests/test_stages.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.conftest import REPO, CliRunner, FinishedRun, Media
from tests.test_stages import check_contract
from va.events import read_events


def test_manifest_records_the_run(finished_run: FinishedRun) -> None:
    manifest = finished_run.manifest
    assert manifest["run_status"] == "succeeded"
    assert manifest["exit_status"] == {"code": 0, "name": "OK", "message": "final video written"}
    assert {name: phase["status"] for name, phase in manifest["phases"].items()} == {
        "prepare": "done",
        "comfyui": "skipped",
        "motion": "skipped",
        "stabilize": "skipped",
        "lipsync": "skipped",
        "encode": "done",
    }
    assert "workflow_ids" in manifest["phases"]["comfyui"]["reason"]
    assert manifest["phases"]["encode"]["outputs"] == ["final.mp4"]
    assert manifest["seeds"] == {"policy": "fixed", "value": 7}
    assert manifest["effective_params"]["seed"] == 7
    assert manifest["target_frames"] == 50
    assert len(manifest["inputs"]["audio"]["sha256"]) == 64
    assert set(manifest["tools"]) >= {"va", "snakemake", "ffmpeg"}
    registry = json.loads((finished_run.state_root / "state" / "runs.json").read_text())
    assert registry["runs"][manifest["run_id"]]["run_status"] == "succeeded"
    check_contract(finished_run.workdir / "final.mp4", 50, 25)


def test_snakemake_directly_gives_the_same_result(finished_run: FinishedRun, va_cli: CliRunner) -> None:
    by_va, job = finished_run.manifest, finished_run.job
    direct = finished_run.workdir.parent / f"direct-{os.getpid()}"
    argv = [sys.executable, "-m", "snakemake", "--cores", "2", "--directory", str(direct)]
    done = subprocess.run(
        [*argv, "--config", f"job={job}"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    by_snakemake = json.loads((direct / "manifest.json").read_text())
    assert set(by_snakemake) == set(by_va)
    same = ("run_status", "exit_status", "target_frames", "seeds", "inputs", "visual_target_duration_seconds")
    for key in same:
        assert by_snakemake[key] == by_va[key], key
    assert {k: p["status"] for k, p in by_snakemake["phases"].items()} == {
        k: p["status"] for k, p in by_va["phases"].items()
    }
    check_contract(direct / "final.mp4", by_va["target_frames"], 25)
    assert va_cli("status", by_snakemake["run_id"]).code == 0

    # A finished video is never rebuilt over, even when an input is newer than it.
    before = (direct / "final.mp4").read_bytes()
    events = (direct / "logs" / "events.jsonl").read_text()
    voice = job.parent / "voice.wav"
    touched = voice.stat()
    later = time.time() + 5
    os.utime(voice, (later, later))
    try:
        again = subprocess.run(
            [*argv, "--config", f"job={job}"], cwd=REPO, capture_output=True, text=True, check=False
        )
    finally:  # the shared run's input as it was
        os.utime(voice, ns=(touched.st_atime_ns, touched.st_mtime_ns))
    assert again.returncode == 0, again.stderr[-2000:]
    assert (direct / "final.mp4").read_bytes() == before
    assert (direct / "logs" / "events.jsonl").read_text() == events


def test_an_edited_job_is_honoured_on_resume(files: Media, va_cli: CliRunner) -> None:
    """Run to the end, delete the final, change fps 25 -> 30 and the post buffer 0 -> 3 s, --resume:
    the final has the new rate and length, made by the rules the edit affects (the manifest says which,
    and which fields of the plan changed; tests/test_plan.py checks each rule's slice of the plan)."""
    job, workdir = files.job(), files.root / "w"
    assert va_cli("run", job, "--workdir", workdir, "-q").code == 0
    (workdir / "final.mp4").unlink()
    document = json.loads(job.read_text())
    document["determinism"]["fps"] = 30
    document["buffer"] = {"pre_seconds": 0.0, "post_seconds": 3.0}
    job.write_text(json.dumps(document))
    resumed = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert resumed.code == 0, resumed.err
    check_contract(workdir / "final.mp4", 150, 30)  # (2 + 3) s at 30 fps
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert (manifest["target_frames"], manifest["fps"]) == (150, 30)
    assert manifest["last_attempt"]["rules_run"] == ["encode", "hold_start_frame", "prepare_audio"]
    assert {"fps", "target_frames", "buffer", "document.determinism"} <= set(
        manifest["last_attempt"]["plan_changes"]
    )
    events = read_events(workdir / "logs" / "events.jsonl")
    second = max(i for i, e in enumerate(events) if e["kind"] == "run_started")
    ran = sorted({e["rule"] for e in events[second:] if e["kind"] == "rule_started"})
    assert ran == ["encode", "hold_start_frame", "prepare_audio"]
