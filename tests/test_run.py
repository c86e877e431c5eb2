"""Whole runs: what only the graph shows (the manifest a run leaves, plain Snakemake on the Snakefile, one
workdir run, reconciled, edited, cleaned and resumed).
The output contract of each kind of input is checked in-process in tests/test_stages.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, CliRunner, FinishedRun, Media
from tests.test_clean import KEPT, REMAKEABLE, files_in
from tests.test_cli import assert_one_line_error
from tests.test_stages import check_contract
from va.errors import ExitCode
from va.events import read_events

#: Whole runs: tests/conftest.py runs the tests of this file before the in-process ones.
pytestmark = pytest.mark.whole_run


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
    # The plan va made before the graph, which loaded it instead of planning again.
    plan = json.loads((finished_run.workdir / "prepare" / "plan.json").read_text())
    assert plan["audio_input_duration_seconds"] == pytest.approx(2.0, abs=1e-3)
    assert (plan["geometry"]["source_width"], plan["geometry"]["source_height"]) == (320, 240)
    assert plan["inputs"] == manifest["inputs"]


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


def test_one_workdir_through_its_life(files: Media, va_cli: CliRunner) -> None:
    """One workdir through its life, each step on what the one before left. A run; killed after its final
    was published (reconciled); its final deleted (a new attempt needs --resume); the job edited (fps
    25 -> 30, post buffer 0 -> 3 s, cleanup.after_success: intermediates) and resumed: the final has the
    new rate and length, made by the rules the edit affects (the manifest says which, and which fields of
    the plan changed; tests/test_plan.py checks each rule's slice of the plan), then its intermediates
    are removed; its final deleted once more, --resume makes everything again."""
    job, workdir = files.job(), files.root / "w"
    first = va_cli("run", job, "--workdir", workdir, "-q")
    assert first.code == 0, first.err
    assert first.out.strip() == str(workdir / "final.mp4")  # --quiet: only the final's path

    # Killed between the final's rename and the record of its end: the final is checked, then recorded.
    events = workdir / "logs" / "events.jsonl"
    lines = events.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["kind"] == "run_finished"
    events.write_text("".join(lines[:-1]))
    status = json.loads(va_cli("status", workdir, "--json").out)
    assert status["run_status"] == "succeeded"
    assert json.loads(events.read_text().splitlines()[-1])["kind"] == "run_finished"
    complete = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert complete.code == ExitCode.OK, complete.err
    assert complete.out.strip() == str(workdir / "final.mp4")

    (workdir / "final.mp4").unlink()
    refused = va_cli("run", job, "--workdir", workdir)
    assert refused.code == ExitCode.OUTPUT_EXISTS
    assert_one_line_error(refused.err, "--resume")

    document = json.loads(job.read_text())
    document["determinism"]["fps"] = 30
    document["buffer"] = {"pre_seconds": 0.0, "post_seconds": 3.0}
    document["cleanup"] = {"after_success": "intermediates"}
    job.write_text(json.dumps(document))
    resumed = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert resumed.code == 0, resumed.err
    check_contract(workdir / "final.mp4", 150, 30)  # (2 + 3) s at 30 fps
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["attempts"] == 2 and manifest["run_status"] == "succeeded"
    assert (manifest["target_frames"], manifest["fps"]) == (150, 30)
    assert manifest["last_attempt"]["rules_run"] == ["encode", "hold_start_frame", "prepare_audio"]
    assert {"fps", "target_frames", "buffer", "document.determinism"} <= set(
        manifest["last_attempt"]["plan_changes"]
    )
    second = max(i for i, e in enumerate(read_events(events)) if e["kind"] == "run_started")
    ran = sorted({e["rule"] for e in read_events(events)[second:] if e["kind"] == "rule_started"})
    assert ran == ["encode", "hold_start_frame", "prepare_audio"]
    # cleanup.after_success: what can be made again is gone once the run succeeded (tests/test_clean.py).
    left = files_in(workdir)
    assert left >= KEPT and not left & REMAKEABLE
    assert manifest["cleanup"]["trigger"] == "cleanup.after_success"

    (workdir / "final.mp4").unlink()
    again = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert again.code == 0, again.err
    check_contract(workdir / "final.mp4", 150, 30)
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["run_status"] == "succeeded" and manifest["attempts"] == 3
