"""va/tracking.py: a run recorded as it happens (events, manifest, registry), without Snakemake."""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Media
from tests.test_stages import render_held_still
from va import runner, tracking
from va.clean import record_success
from va.errors import ExitCode, VaError
from va.events import read_events
from va.job import load_job
from va.tracking import (
    existing_run_id,
    new_run_id,
    record_run_finished,
    record_run_started,
    rule_step,
    run_finished,
)
from va.workdir import Workdir


@pytest.fixture(autouse=True)
def root_logging() -> Iterator[None]:
    """rule_step points the root logger at the rule's log file, as a rule script wants; put it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


def kinds(run: Workdir) -> list[str]:
    return [event["kind"] for event in read_events(run.events)]


def test_run_ids_are_stamped_and_unique() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50 and all(
        run_id.startswith("run-") and run_id.endswith("Z-" + run_id[-6:]) for run_id in ids
    )


def test_a_run_is_recorded_from_start_to_end(files: Media, state_dir: Path) -> None:
    run, job = Workdir(files.root / "w"), load_job(files.job())
    assert existing_run_id(run) is None and not run_finished(run)
    run_id = record_run_started(run, job)
    assert existing_run_id(run) == run_id and not run_finished(run)
    manifest = json.loads(run.manifest.read_text())
    assert manifest["run_id"] == run_id and manifest["run_status"] == "running"
    registry = json.loads((state_dir / "runs.json").read_text())["runs"]
    assert registry[run_id]["workdir"] == str(run.root) and registry[run_id]["run_status"] == "running"

    with rule_step("prepare_audio", run.root / "logs" / "prepare.log", workdir=run) as report:
        report("padding", frames=3)
    record_run_finished(run)
    assert run_finished(run)
    assert kinds(run) == ["run_started", "rule_started", "log", "rule_finished", "run_finished"]
    assert "padding" in (run.root / "logs" / "prepare.log").read_text()
    assert json.loads(run.manifest.read_text())["run_status"] == "succeeded"
    assert json.loads((state_dir / "runs.json").read_text())["runs"][run_id]["exit_code"] == 0

    # A resumed run keeps its id; its end is recorded again.
    assert record_run_started(run, job) == run_id and not run_finished(run)


def test_a_failed_rule_is_recorded_with_its_code_and_exits_with_it(files: Media) -> None:
    run, job = Workdir(files.root / "w"), load_job(files.job())
    record_run_started(run, job)
    with pytest.raises(SystemExit) as exited, rule_step("encode", run.root / "logs" / "e.log", workdir=run):
        raise VaError(ExitCode.ENCODE_FAILED, "Unknown encoder libx264")
    assert exited.value.code == ExitCode.ENCODE_FAILED
    record_run_finished(run, from_rules=True)
    manifest = json.loads(run.manifest.read_text())
    assert manifest["run_status"] == "failed"
    assert manifest["exit_status"] == {
        "code": 60,
        "name": "ENCODE_FAILED",
        "message": "Unknown encoder libx264",
    }


def test_a_full_disk_in_a_rule_is_the_workdir_named_not_an_internal_error(files: Media) -> None:
    run = Workdir(files.root / "w")
    record_run_started(run, load_job(files.job()))
    full = run.root / "prepare" / "loudness.json"
    with pytest.raises(SystemExit) as exited, rule_step("prepare_audio", run.root / "l.log", workdir=run):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(full))
    assert exited.value.code == ExitCode.WORKDIR_UNUSABLE
    failed = read_events(run.events)[-1]
    assert failed["kind"] == "rule_failed"
    assert failed["error"] == {
        "code": 32,
        "name": "WORKDIR_UNUSABLE",
        "message": f"prepare_audio: No space left on device: {full}",
    }


def test_a_bug_in_a_rule_is_an_internal_error_with_the_rule_named(files: Media) -> None:
    run = Workdir(files.root / "w")
    record_run_started(run, load_job(files.job()))
    with pytest.raises(KeyError), rule_step("comfyui_batch", run.root / "l.log", target="0002", workdir=run):
        raise KeyError("plan")
    failed = read_events(run.events)[-1]
    assert failed["kind"] == "rule_failed" and failed["target"] == "0002"
    assert (
        failed["error"]["code"] == 70 and "comfyui_batch 0002: internal error" in failed["error"]["message"]
    )


@pytest.mark.parametrize(
    ("unfinished", "status", "code"), [("interrupted", "interrupted", 130), ("failed", "failed", 70)]
)
def test_a_graph_stopped_without_a_failed_rule(files: Media, unfinished: str, status: str, code: int) -> None:
    run = Workdir(files.root / "w")
    record_run_started(run, load_job(files.job()))
    record_run_finished(run, from_rules=True, unfinished=unfinished)
    manifest = json.loads(run.manifest.read_text())
    assert manifest["run_status"] == status and manifest["exit_status"]["code"] == code


def published_final(files: Media) -> tuple[Workdir, Path]:
    """A run whose final is published (the rule bodies called in this process, no Snakemake)."""
    job_path = files.job()
    run = Workdir(files.root / "w")
    record_run_started(run, load_job(job_path))
    render_held_still(job_path, run.root)
    return run, job_path


def test_a_digest_that_cannot_be_written_after_the_final_is_a_warning_not_a_failure(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills just after the final is published: the encode rule's records append their events,
    but the manifest's digest (a cache of the event log, made again from it) cannot be written. The rule
    does not fail, the run is recorded as succeeded, and ``va`` ends 0 with a warning naming the digest,
    also when Snakemake itself ended with an error then (never 70 with "final video written")."""
    run, job_path = published_final(files)

    def full(workdir: Workdir, digest: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(workdir.manifest_digest))

    monkeypatch.setattr(tracking, "store_digest", full)
    with rule_step("encode", run.root / "logs" / "final.mp4.log", workdir=run):
        pass  # the final is published: scripts/encode.py's body
    record_success(run, "keep")
    assert kinds(run)[-2:] == ["rule_finished", "run_finished"]
    manifest = json.loads(run.manifest.read_text())
    assert manifest["run_status"] == "succeeded" and manifest["phases"]["encode"]["status"] == "done"
    for returncode in (0, 1):
        result = runner._result(run, load_job(job_path), returncode, None)
        assert result.code == ExitCode.OK and result.final.exists()
        assert any(str(run.manifest_digest) in warning for warning in result.warnings), result.warnings
    assert "snakemake ended with an error after final.mp4 was published" in result.warnings[-1]


def test_a_disk_full_from_the_final_on_keeps_the_final_and_records_the_run_end(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills the moment the encode rule publishes the final, in the rule's own order (its body,
    its ``rule_finished`` record, then ``record_success``), and ``manifest.json`` cannot be written from
    then on: the rule does not fail (Snakemake would delete the final), its end and the run's are in the
    event log; ``va`` ends 32 naming ``manifest.json`` while the disk is full, the final kept, and 0 with
    a warning once the disk has room again."""
    run, job_path = published_final(files)
    real = tracking.write_json_atomic
    disk = {"full": False}

    def full(path: Path, data: object, **options: bool) -> None:
        if path == run.manifest and disk["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data, **options)

    monkeypatch.setattr(tracking, "write_json_atomic", full)
    log = run.root / "logs" / "final.mp4.log"
    with rule_step("encode", log, workdir=run):  # scripts/encode.py's order
        disk["full"] = True  # the final is published, then the disk fills
    record_success(run, "keep")
    assert run.final("final.mp4").exists()
    assert kinds(run)[-2:] == ["rule_finished", "run_finished"]
    assert json.loads(run.manifest.read_text())["run_status"] == "running"  # as of the rule's start
    assert f"No space left on device: {run.manifest}; manifest.json is written again" in log.read_text()
    with pytest.raises(VaError) as caught:
        runner._result(run, load_job(job_path), 0, None)
    assert caught.value.code == ExitCode.WORKDIR_UNUSABLE
    assert caught.value.message == f"No space left on device: {run.manifest}; the final is kept: final.mp4"
    assert run.final("final.mp4").exists()
    disk["full"] = False  # room again: everything is whole
    result = runner._result(run, load_job(job_path), 0, None)
    assert result.code == ExitCode.OK and result.final.exists()
    assert result.warnings == (
        f"{run.manifest} was behind events.jsonl (a record could not write it, see "
        "the rules' logs); written again",
    )
    assert json.loads(run.manifest.read_text())["run_status"] == "succeeded"
    assert runner._result(run, load_job(job_path), 0, None).warnings == ()  # whole now: no warning


def test_an_event_that_cannot_be_appended_fails_the_rule_with_32_and_one_line(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event log itself cannot take the rule's end: the rule fails (the record is the log), with the
    documented code and one line in its log, no traceback."""
    run, _ = published_final(files)
    real = tracking.append_event

    def full(path: Path, *args: object, **fields: object) -> object:
        if fields.get("kind") == "rule_finished":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args, **fields)

    monkeypatch.setattr(tracking, "append_event", full)
    log = run.root / "logs" / "final.mp4.log"
    with pytest.raises(SystemExit) as exited, rule_step("encode", log, workdir=run):
        pass
    assert exited.value.code == ExitCode.WORKDIR_UNUSABLE
    text = log.read_text()
    assert f"encode: No space left on device: {run.events}" in text and "Traceback" not in text
