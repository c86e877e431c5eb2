"""``va clean`` and ``cleanup.after_success``: what a cleanup removes and keeps, what it refuses, how the
manifest and ``va status`` show it. A whole run with ``cleanup.after_success``, made again by
``--resume`` after it, is in tests/test_run.py (test_one_workdir_through_its_life)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import CliRunner, Media
from tests.test_stages import render_held_still
from va import registry, runner
from va.clean import record_success, remove_empty_outputs
from va.errors import ExitCode, VaError
from va.job import load_job
from va.tracking import record_run_finished, record_run_started, run_succeeded
from va.workdir import Workdir

KEPT = {"final.mp4", "manifest.json", "prepare/plan.json", "logs/events.jsonl"}
REMAKEABLE = {"prepare/padded.wav", "prepare/padded.m4a", "frames/still.png", "frames/still.mp4"}


def files_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".lock" not in p.name}


def succeeded_run(files: Media, root: Path) -> Workdir:
    """A run recorded as succeeded, its rule bodies called in this process (no Snakemake)."""
    job_path = files.job()
    run = Workdir(root)
    record_run_started(run, load_job(job_path))
    render_held_still(job_path, root)
    record_run_finished(run)
    return run


def test_clean_removes_what_can_be_made_again(files: Media, va_cli: CliRunner) -> None:
    run = succeeded_run(files, files.root / "w")
    (run.root / "notes.txt").write_text("mine", encoding="utf-8")  # a user's file is never touched
    sizes = {name: (run.root / name).stat().st_size for name in REMAKEABLE}

    dry = va_cli("clean", run.root, "--dry-run")
    assert dry.code == ExitCode.OK, dry.err
    assert {line.split()[-1] for line in dry.out.splitlines() if line.startswith("would remove")} == {
        str(run.root / name) for name in REMAKEABLE
    }
    assert f"({sum(sizes.values())} bytes)" in dry.out
    assert files_in(run.root) >= REMAKEABLE

    done = va_cli("clean", run.root)
    assert done.code == ExitCode.OK, done.err
    assert "freed" in done.out and f"({sum(sizes.values())} bytes)" in done.out
    left = files_in(run.root)
    assert KEPT | {"notes.txt"} <= left and not left & REMAKEABLE
    assert not (run.root / "frames").exists()

    manifest = json.loads(run.manifest.read_text())
    assert manifest["run_status"] == "succeeded"
    assert manifest["cleanup"]["trigger"] == "va clean"
    assert manifest["cleanup"]["files_removed"] == len(REMAKEABLE)
    assert manifest["cleanup"]["bytes_freed"] == sum(sizes.values())
    assert manifest["phases"]["prepare"]["status"] == manifest["phases"]["encode"]["status"] == "done"
    status = va_cli("status", run.root)
    assert "status    succeeded" in status.out
    assert "cleaned" in status.out and "4 file(s)" in status.out

    again = va_cli("clean", run.root, "--json")  # nothing left to remove: nothing recorded either
    assert json.loads(again.out)["bytes_freed"] == 0
    assert json.loads(run.manifest.read_text())["cleanup"] == manifest["cleanup"]


def test_clean_refuses_a_run_that_did_not_succeed(files: Media, va_cli: CliRunner) -> None:
    job_path = files.job()
    running = Workdir(files.root / "running")
    record_run_started(running, load_job(job_path))  # this process is alive: the run is running
    render_held_still(job_path, running.root)
    refused = va_cli("clean", running.root)
    assert refused.code == ExitCode.RUN_NOT_FINISHED
    assert refused.err.count("\n") == 1 and "running" in refused.err
    assert files_in(running.root) >= REMAKEABLE

    assert va_cli("clean", files.root / "nothing").code == ExitCode.INPUT_NOT_FOUND
    empty = files.root / "empty"
    empty.mkdir()
    assert va_cli("clean", empty).code == ExitCode.INPUT_NOT_FOUND
    given_a_file = va_cli("clean", job_path)
    assert given_a_file.code == ExitCode.INPUT_NOT_FOUND
    assert given_a_file.err == f"va: error: {job_path} is a file, not a run's workdir or a batch's folder\n"


def test_clean_a_batch_folder_cleans_its_succeeded_runs(files: Media, va_cli: CliRunner) -> None:
    out = files.root / "out"
    done = succeeded_run(files, out / "a")
    unfinished = Workdir(out / "b")
    record_run_started(unfinished, load_job(files.job()))
    render_held_still(files.job(), unfinished.root)

    result = va_cli("clean", out)
    assert result.code == ExitCode.RUN_NOT_FINISHED
    assert "not cleaned" in result.err and str(unfinished.root) in result.err
    assert not files_in(done.root) & REMAKEABLE
    assert files_in(unfinished.root) >= REMAKEABLE


def test_a_full_state_dir_after_the_final_is_published_keeps_the_final_and_is_exit_34(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encode rule records the run's end after it published the final; a state dir that is full then
    must not fail the rule (Snakemake deletes the outputs of a failed job, the final among them). ``va``
    says it when it registers the end itself: exit 34, the final kept."""
    job_path = files.job()
    run = Workdir(files.root / "w")
    record_run_started(run, load_job(job_path))
    render_held_still(job_path, run.root)
    final = run.final("final.mp4")
    shutil.copyfile(run.still_loop, final)

    def full(*_: object, **__: object) -> None:
        raise VaError(ExitCode.STATE_DIR_UNUSABLE, "state dir unusable: No space left on device")

    monkeypatch.setattr(registry, "register_runs", full)
    record_success(run, "keep")  # as scripts/encode.py calls it: it does not raise
    assert final.exists() and run_succeeded(run)
    with pytest.raises(VaError) as caught:
        runner._result(run, load_job(job_path), 0, None)
    assert caught.value.code == ExitCode.STATE_DIR_UNUSABLE
    assert final.exists()


def test_clean_removes_only_what_the_run_s_records_say_it_wrote(files: Media, va_cli: CliRunner) -> None:
    """A file of the user's in ``frames/`` and another run made inside the workdir stay: only the outputs
    the run's records name (and its own scratch) go."""
    run = succeeded_run(files, files.root / "w")
    (run.root / "frames" / "mine.png").write_bytes(b"a user's picture")
    other = succeeded_run(files, run.root / "frames" / "other-run")
    theirs = files_in(other.root)
    done = va_cli("clean", run.root)
    assert done.code == ExitCode.OK, done.err
    left = files_in(run.root)
    assert "frames/mine.png" in left
    assert {f"frames/other-run/{name}" for name in theirs} <= left
    assert not left & REMAKEABLE


def test_a_resume_remakes_an_empty_intermediate_a_power_cut_left(files: Media) -> None:
    """A zero-byte output of a rule (renamed into place, its data never on the disk) is removed before a
    resume, so the graph makes it again; the rest, and the final, stay as they are."""
    run = succeeded_run(files, files.root / "w")
    run.still_loop.write_bytes(b"")
    final = run.final("final.mp4")
    final.write_bytes(b"")
    assert remove_empty_outputs(run, "final.mp4") == ["frames/still.mp4"]
    assert not run.still_loop.exists() and final.exists() and run.padded_audio.stat().st_size > 0
    assert remove_empty_outputs(run, "final.mp4") == []
