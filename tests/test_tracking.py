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
