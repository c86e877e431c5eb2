"""Batches: a folder of jobs as one graph; bad jobs reported by name, the others done; reruns do nothing;
the report of a batch with an unfinished job (tests/test_report.py)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    MARKER,
    REPO,
    VA,
    CliRunner,
    Media,
    calls_of,
    ffprobe_streams,
    kill_marked,
    slow_ffmpeg,
    wait_no_process_marked,
)
from tests.lipsync.fakes import command, providers_file
from tests.test_report import check_batch_report
from va import batch as batch_module
from va import media
from va.batch import Batch, load_batch, summarize
from va.errors import ExitCode
from va.events import read_events
from va.job import CHECKED_AUDIO, load_job
from va.manifest import epoch
from va.plan import plan_fingerprint, plan_job, plan_jobs
from va.runner import SNAKEFILE
from va.tracking import record_run_started
from va.workdir import Workdir

#: Whole runs: tests/conftest.py runs the tests of this file before the in-process ones.
pytestmark = pytest.mark.whole_run


def make_batch(files: Media, names: list[str]) -> Path:
    folder = files.root / "jobs"
    folder.mkdir()
    for name in names:
        document = json.loads(files.job().read_text())
        document["input"] = {"audio": str(files.root / "voice.wav"), "start": str(files.root / "start.png")}
        (folder / f"{name}.json").write_text(json.dumps(document))
    return folder


def summary(result: Any) -> dict[str, dict[str, Any]]:
    return {row["job"]: row for row in json.loads(result.out)["jobs"]}


def test_a_file_where_a_batch_folder_should_be_is_named_with_its_option(
    files: Media, va_cli: CliRunner
) -> None:
    folder = make_batch(files, ["intro"])
    job_file = va_cli("batch", folder / "intro.json", "--out", files.root / "out")
    assert job_file.code == ExitCode.INPUT_NOT_FOUND
    assert (
        job_file.err
        == f"va: error: {folder / 'intro.json'} is a file, not a batch folder (va run runs one job file)\n"
    )
    out_file = files.root / "out.txt"
    out_file.write_text("mine\n")
    out = va_cli("batch", folder, "--out", out_file)
    assert out.code == ExitCode.WORKDIR_UNUSABLE
    reason = "it is a file, not a folder (choose another --out)"
    assert out.err == f"va: error: batch output folder {out_file} unusable: {reason}\n"
    assert out_file.read_text() == "mine\n"


def test_a_batch_with_bad_jobs(files: Media, va_cli: CliRunner, state_dir: Path) -> None:
    """Bad jobs of both kinds: two that fail the checks (reported by name, never run) and one whose
    lip-sync tool fails; with --keep-going on one core the others still finish."""
    folder = make_batch(files, ["intro", "main", "outro", "lipfail"])
    (folder / "broken.json").write_text(json.dumps({"schema_version": 1, "input": {"audio": "x.wav"}}))
    (files.root / "notes.wav").write_text("not audio")
    document = json.loads((folder / "main.json").read_text())
    document["input"]["audio"] = str(files.root / "notes.wav")
    (folder / "silent.json").write_text(json.dumps(document))
    document = json.loads((folder / "lipfail.json").read_text())
    document["lipsync"] = {"enable": True, "provider": "fake"}
    (folder / "lipfail.json").write_text(json.dumps(document))
    env = providers_file(files.root, fake=command("face"))
    out = files.root / "out"
    result = va_cli("batch", folder, "--out", out, "--cores", "1", "--keep-going", "--json", env=env)
    assert result.code == ExitCode.BATCH_INCOMPLETE, result.err
    rows = summary(result)
    statuses = {name: row["status"] for name, row in rows.items()}
    assert statuses == {
        "broken": "invalid",
        "silent": "invalid",
        "lipfail": "failed",
        **dict.fromkeys(("intro", "main", "outro"), "succeeded"),
    }
    assert "'start' is a required property" in rows["broken"]["message"]
    assert "input.audio" in rows["silent"]["message"] and rows["silent"]["exit_code"] == 12
    assert "Face not detected" in rows["lipfail"]["message"]
    for name in ("intro", "main", "outro"):
        assert int(ffprobe_streams(out / name / "final.mp4")["video"]["nb_read_frames"]) == 50
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["run_status"] == "succeeded" and rows[name]["output"] == str(out / name / "final.mp4")
    registry = json.loads((state_dir / "runs.json").read_text())["runs"]
    assert sorted(Path(entry["workdir"]).name for entry in registry.values()) == [
        "intro",
        "lipfail",
        "main",
        "outro",
    ]
    assert "3 of 6 job(s) did not succeed" in result.err

    # The report of a batch shows its finished jobs; an unfinished one is left out, not run, not recorded.
    before = {name: (out / name / "final.mp4").stat().st_mtime_ns for name in ("intro", "main")}
    (out / "outro" / "final.mp4").unlink()
    check_batch_report(files, va_cli, out, finished=["intro", "main"], unfinished="outro")

    # A second call builds only what is missing: the finished videos are left as they are.
    second = va_cli("batch", folder, "--out", out, "--keep-going", "--json", env=env)
    assert second.code == ExitCode.BATCH_INCOMPLETE, second.err  # the three bad jobs are still bad
    assert {name: (out / name / "final.mp4").stat().st_mtime_ns for name in ("intro", "main")} == before
    assert summary(second)["outro"]["status"] == "succeeded"
    assert summary(second)["lipfail"]["status"] == "failed"
    assert int(ffprobe_streams(out / "outro" / "final.mp4")["video"]["nb_read_frames"]) == 50
    assert json.loads((out / "outro" / "manifest.json").read_text())["attempts"] == 2
    check_what_made_each_video(files, va_cli, folder, out)


def check_what_made_each_video(files: Media, va_cli: CliRunner, folder: Path, out: Path) -> None:
    """OUT records which job file and plan made each video: a different job under a taken name, or a
    finished job edited since, is refused with one line naming the changes (exit 30 in its row, the
    batch 3), its video left as it was; the same job file moved with its batch is still that video."""
    intro = json.loads((out / "intro" / "manifest.json").read_text())
    assert intro["job"] == str(folder / "intro.json")
    assert intro["plan_fingerprint"] == plan_fingerprint(plan_job(load_job(folder / "intro.json")))
    made = {name: (out / name / "final.mp4").stat().st_mtime_ns for name in ("intro", "main")}

    other = files.root / "other"
    other.mkdir()
    document = json.loads((folder / "intro.json").read_text())
    document["buffer"] = {"pre_seconds": 0.0, "post_seconds": 1.0}
    (other / "intro.json").write_text(json.dumps(document))
    refused = va_cli("batch", other, "--out", out, "--json")
    assert refused.code == ExitCode.BATCH_INCOMPLETE, refused.err
    row = summary(refused)["intro"]
    assert (row["status"], row["exit_code"], row["output"]) == ("refused", ExitCode.OUTPUT_EXISTS, None), row
    assert row["message"] == (
        f"{out / 'intro'} holds the run of another job, {folder / 'intro.json'} (changed: "
        "audio_duration_seconds, buffer, document.buffer, target_frames, visual_target_duration_seconds); "
        f"not mixing {other / 'intro.json'} into it (choose another --out)"
    )

    document = json.loads((folder / "main.json").read_text())
    document["buffer"] = {"pre_seconds": 0.0, "post_seconds": 3.0}
    (folder / "main.json").write_text(json.dumps(document))
    (folder / "lipfail.json").unlink()  # its run would start Snakemake again, to fail the same way
    edited = va_cli("batch", folder, "--out", out, "--json")
    assert edited.code == ExitCode.BATCH_INCOMPLETE, edited.err
    row = summary(edited)["main"]
    assert (row["status"], row["exit_code"]) == ("refused", ExitCode.OUTPUT_EXISTS), row
    assert row["message"].startswith(f"{out / 'main' / 'final.mp4'} was made from an earlier version of ")
    assert "(changed: audio_duration_seconds, buffer, document.buffer, target_frames" in row["message"]
    assert row["message"].endswith("(delete it to make it anew, or choose another --out)")
    assert summary(edited)["intro"]["status"] == "succeeded"

    moved = files.root / "moved"
    moved.mkdir()
    (moved / "intro.json").write_text((folder / "intro.json").read_text())
    again = va_cli("batch", moved, "--out", out, "--json")
    assert again.code == ExitCode.OK, again.err
    assert summary(again)["intro"]["status"] == "succeeded"
    assert {name: (out / name / "final.mp4").stat().st_mtime_ns for name in ("intro", "main")} == made


def test_plain_snakemake_runs_a_batch(files: Media) -> None:
    """Without `va batch`: a job whose input file is missing is left out with one line naming it (it
    would fail the whole graph as a missing input), the others run; Snakemake then exits 3 (as `va batch`
    does), its last line saying which job it left out."""
    folder = make_batch(files, ["one", "two", "lost"])
    document = json.loads((folder / "lost.json").read_text())
    document["input"]["audio"] = str(files.root / "gone.wav")
    (folder / "lost.json").write_text(json.dumps(document))
    out = files.root / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "2",
            "--directory",
            str(out),
            "--config",
            f"batch={folder}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == ExitCode.BATCH_INCOMPLETE, done.stderr[-2000:]
    for name in ("one", "two"):
        assert json.loads((out / name / "manifest.json").read_text())["run_status"] == "succeeded"
    about_lost = [line for line in done.stderr.splitlines() if "lost" in line]
    last = "va batch: 1 of 3 job(s) left out (see the lines above): lost"
    assert about_lost == [
        f"va batch: lost: skipped: input.audio: file not found: {files.root / 'gone.wav'}",
        last,
    ]
    assert done.stderr.splitlines()[-1] == last
    assert not (out / "lost").exists()


def test_planning_a_batch_leaves_out_a_job_that_cannot_run(files: Media) -> None:
    """What ``va batch`` (or a plain snakemake of a batch) plans: every job, its checks included; a job
    whose input cannot be used is left out with its problem."""
    folder = make_batch(files, ["good", "empty"])
    document = json.loads((folder / "empty.json").read_text())
    (files.root / "empty.png").write_bytes(b"")
    document["input"]["start"] = str(files.root / "empty.png")
    (folder / "empty.json").write_text(json.dumps(document))
    batch = load_batch(folder)
    plans, problems = plan_jobs(batch.jobs, lambda name: Workdir(files.root / "out" / name))
    assert sorted(plans) == ["good"] and sorted(problems) == ["empty"]
    assert problems["empty"].code == ExitCode.UNSUPPORTED_FORMAT
    assert "input.start: empty file" in problems["empty"].message


def test_a_job_whose_folder_holds_a_video_no_run_made_is_refused_at_planning(
    files: Media, va_cli: CliRunner
) -> None:
    """A job's folder that holds a final video and no recorded run (a user's file) is refused when the
    batch is planned, with va run's line (exit 30 in its row), never left as ``not run``; the file is kept.
    Here every job is refused, so no graph runs."""
    folder = make_batch(files, ["b"])
    out = files.root / "out"
    (out / "b").mkdir(parents=True)
    (out / "b" / "final.mp4").write_text("not a video\n")
    line = f"{out / 'b' / 'final.mp4'} exists; not overwriting it (choose another --out)"
    problem = load_batch(folder, out=out).problems["b"]
    assert (problem.code, problem.message) == (ExitCode.OUTPUT_EXISTS, line)
    result = va_cli("batch", folder, "--out", out, "--json")
    assert result.code == ExitCode.BATCH_INCOMPLETE, result.err
    row = summary(result)["b"]
    assert (row["status"], row["exit_code"], row["message"]) == ("refused", 30, line)
    assert (out / "b" / "final.mp4").read_text() == "not a video\n"


def check_refused_rows(out: Path, batch: Batch) -> None:
    """Each file the batch refused has a row of the summary, ``refused``, under its problem's key."""
    rows = summarize(out, sorted(set(batch.jobs) | set(batch.problems)), batch.problems)
    assert {row["job"]: row["status"] for row in rows if row["job"] in batch.problems} == dict.fromkeys(
        batch.problems, "refused"
    )


def test_job_names_that_collide_or_are_the_batchs_own_are_refused(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two job files with one folder name (``c job.json``, ``c_job.json``): the first in name order runs,
    the later is refused with a line naming both, its row keyed by its file name; names of the batch's own
    places in OUT (``logs``, ``.snakemake``, any starting with ``.``, ``report.html``) are refused too. On a
    file system that keeps case apart (this one: its probe says so), ``B.json`` and ``b.json`` each have a
    folder of their own, and ``Logs.json``, ``REPORT.html.json`` are folder names like any other. The
    probe leaves no file, and is made once a folder."""
    names = [
        "c job",
        "c_job",
        "logs",
        "Logs",
        ".snakemake",
        "..",
        "report.html",
        "REPORT.html",
        "B",
        "b",
        "ok",
    ]
    folder = make_batch(files, names)
    out = files.root / "out"  # not made yet: its nearest existing folder is probed
    probes = calls_of(monkeypatch, batch_module.tempfile, "mkstemp")
    assert not batch_module.folds_case(out)
    for batch in (load_batch(folder, out=out), load_batch(folder)):  # no OUT: names compared as they are
        assert sorted(batch.jobs) == ["B", "Logs", "REPORT.html", "b", "c_job", "ok"]
        assert batch.jobs["c_job"].path == folder / "c job.json"
        assert (batch.jobs["B"].path, batch.jobs["b"].path) == (folder / "B.json", folder / "b.json")
        refused = ["c_job.json", "logs", ".snakemake", "..", "report.html"]
        assert {name: problem.code for name, problem in batch.problems.items()} == dict.fromkeys(
            refused, ExitCode.OUTPUT_EXISTS
        )
        assert batch.problems["c_job.json"].message == (
            f"{folder / 'c_job.json'}: its folder name c_job is that of {folder / 'c job.json'}, which comes "
            "first (each character outside A-Za-z0-9_.- becomes _); rename one of them"
        )
        assert batch.problems["logs"].message == (
            f"{folder / 'logs.json'}: its folder name logs is one the batch uses itself (logs, report.html, "
            "or a name starting with '.'); rename the job file"
        )
    check_refused_rows(out, batch)
    assert len(probes) == 1 and not list(files.root.glob(".va-case-*"))
    # The graph of a batch takes only the jobs va batch selected: the refused files are not named again.
    assert load_batch(folder, only={"B", "b", "c_job", "ok"}).problems == {}


def test_where_case_is_ignored_names_differing_in_case_share_a_folder(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where OUT's file system ignores case (macOS, exFAT, SMB; here the probe is made to say so),
    ``B.json`` and ``b.json`` are one folder: the first in name order runs, the other is refused with one
    line naming both, its row keyed by its file name ``b.json``; ``Logs.json`` and ``REPORT.html.json``
    are the batch's own names. The probe is asked once for the folder."""
    folder = make_batch(files, ["B", "b", "Logs", "REPORT.html", "ok"])
    out = files.root / "out"
    out.mkdir()
    asked: list[Path] = []

    def ignores_case(place: Path) -> bool:
        asked.append(place)
        return True

    monkeypatch.setattr(batch_module, "_probe_case", ignores_case)
    batch = load_batch(folder, out=out)
    assert asked == [out]
    assert sorted(batch.jobs) == ["B", "ok"] and batch.jobs["B"].path == folder / "B.json"
    assert sorted(batch.problems) == ["Logs", "REPORT.html", "b.json"]
    assert batch.problems["b.json"].code == ExitCode.OUTPUT_EXISTS
    assert batch.problems["b.json"].message == (
        f"{folder / 'b.json'}: its folder name b is that of {folder / 'B.json'}, which comes first (each "
        "character outside A-Za-z0-9_.- becomes _, and case is ignored); rename one of them"
    )
    assert batch.problems["Logs"].message == (
        f"{folder / 'Logs.json'}: its folder name Logs is one the batch uses itself (logs, report.html, or "
        "a name starting with '.', in any case); rename the job file"
    )
    check_refused_rows(out, batch)


def test_of_files_sharing_a_name_the_one_whose_run_its_folder_holds_keeps_it(files: Media) -> None:
    """``c_job.json`` ran into ``OUT/c_job``; ``c job.json`` (first in name order) added later does not take
    its folder: it is refused, and ``c_job.json`` keeps its name, for va batch (``out``) and for the graph
    (``folders``: its working directory) alike; its moved batch folder too (the same file name)."""
    folder = make_batch(files, ["c job", "c_job"])
    out = files.root / "out"
    record_run_started(Workdir(out / "c_job"), load_job(folder / "c_job.json"), registering={})
    for batch in (load_batch(folder, out=out), load_batch(folder, folders=out)):
        assert batch.jobs["c_job"].path == folder / "c_job.json"
        assert list(batch.problems) == ["c job.json"]
        assert batch.problems["c job.json"].message == (
            f"{folder / 'c job.json'}: its folder name c_job is that of {folder / 'c_job.json'}, whose run "
            "its folder holds (each character outside A-Za-z0-9_.- becomes _); rename one of them"
        )
    moved = folder.rename(files.root / "moved")
    assert load_batch(moved, folders=out).jobs["c_job"].path == moved / "c_job.json"
    assert load_batch(moved).jobs["c_job"].path == moved / "c job.json"  # no folders: name order


def test_a_file_added_under_a_taken_name_does_not_take_the_folder_of_its_run(
    files: Media, va_cli: CliRunner
) -> None:
    """``c_job.json`` ran into ``OUT/c_job``; ``c job.json`` (another buffer), added later, comes first in
    name order but is refused; ``c_job.json`` keeps its folder, and its unfinished video is made again from
    it, by ``va batch`` and by its graph alike (it was made from ``c job.json`` and reported so)."""
    folder = make_batch(files, ["c_job"])
    out = files.root / "out"
    first = va_cli("batch", folder, "--out", out, "--json")
    assert first.code == ExitCode.OK, first.err
    (out / "c_job" / "final.mp4").unlink()
    document = json.loads((folder / "c_job.json").read_text())
    document["buffer"] = {"pre_seconds": 0.0, "post_seconds": 1.0}
    (folder / "c job.json").write_text(json.dumps(document))
    again = va_cli("batch", folder, "--out", out, "--json")
    assert again.code == ExitCode.BATCH_INCOMPLETE, again.err
    rows = summary(again)
    assert (rows["c_job"]["status"], rows["c job.json"]["status"]) == ("succeeded", "refused"), rows
    assert rows["c job.json"]["message"].endswith(
        "whose run its folder holds (each character outside A-Za-z0-9_.- becomes _); rename one of them"
    )
    manifest = json.loads((out / "c_job" / "manifest.json").read_text())
    assert manifest["job"] == str(folder / "c_job.json") and manifest["attempts"] == 2
    assert int(ffprobe_streams(out / "c_job" / "final.mp4")["video"]["nb_read_frames"]) == 50


def test_a_batch_is_planned_in_threads_each_file_probed_once(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs of a batch are planned side by side, and each distinct input file is probed once; a file
    that fails leaves its job out, named."""
    folder = make_batch(files, ["a", "b", "own", "bad"])
    own = json.loads((folder / "own.json").read_text())
    own["input"]["audio"] = str(files.tone("own.wav", 1.0))
    (folder / "own.json").write_text(json.dumps(own))
    bad = json.loads((folder / "bad.json").read_text())
    (files.root / "noise.wav").write_text("not audio")
    bad["input"]["audio"] = str(files.root / "noise.wav")
    (folder / "bad.json").write_text(json.dumps(bad))
    jobs = {name: load_job(folder / f"{name}.json") for name in ("a", "b", "own", "bad")}
    CHECKED_AUDIO.clear()
    probed = calls_of(monkeypatch, media, "probe_audio")
    plans, problems = plan_jobs(jobs, lambda name: Workdir(files.root / "out" / name))
    assert sorted(probed) == [(files.root / name,) for name in ("noise.wav", "own.wav", "voice.wav")]
    assert len(CHECKED_AUDIO) == 2  # voice.wav and own.wav; noise.wav failed
    assert sorted(plans) == ["a", "b", "own"]
    assert plans["own"].audio_input_duration_seconds == pytest.approx(1.0, abs=1e-3)
    assert problems["bad"].code == ExitCode.UNSUPPORTED_FORMAT and "input.audio" in problems["bad"].message


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, "the batch ended before the awaited moment"
        assert time.monotonic() < deadline, "the awaited moment did not come"
        time.sleep(0.05)


def run_status(workdir: Path) -> str | None:
    try:
        return str(json.loads((workdir / "manifest.json").read_text())["run_status"])
    except (OSError, ValueError):
        return None


def kinds(events: Path, rule: str | None = None) -> list[str]:
    return [e["kind"] for e in read_events(events) if rule is None or e.get("rule") == rule]


def test_a_stopped_batch_keeps_what_finished(files: Media, va_cli: CliRunner) -> None:
    """A job's end is recorded when its own final is published; a SIGTERM of `va batch` prints the summary
    of what finished and the batch command that continues; that command then does only what is left."""
    folder = make_batch(files, ["done", "zz-stuck"])
    out, marker = files.root / "out", uuid.uuid4().hex
    slow = slow_ffmpeg(files.root, 600, only="zz-stuck/prepare/padded.wav")  # the stuck job never ends
    # Three cores: the encode of `done` (two threads) runs beside the stuck rule.
    process = subprocess.Popen(
        [*VA, "batch", str(folder), "--out", str(out), "--cores", "3", "--json"],
        env={**os.environ, "FFMPEG": str(slow), MARKER: marker},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    done_events, stuck_events = (
        out / "done" / "logs" / "events.jsonl",
        out / "zz-stuck" / "logs" / "events.jsonl",
    )
    # The job's end is recorded while the graph still runs (wait_until fails if the batch ended).
    wait_until(lambda: run_status(out / "done") == "succeeded", process)
    wait_until(lambda: kinds(stuck_events, "prepare_audio")[-1:] == ["rule_started"], process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    wait_no_process_marked(marker)
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    again = shlex.join(["va", "batch", str(folder), "--out", str(out), "--cores", "3"])
    assert stderr.strip().splitlines()[-1] == (
        f"va: interrupted (1 of 2 job(s) succeeded); continue with: {again}"
    )
    rows = {row["job"]: row for row in json.loads(stdout)["jobs"]}
    assert rows["done"]["status"] == "succeeded" and rows["done"]["output"] == str(out / "done" / "final.mp4")
    assert rows["zz-stuck"]["status"] == "interrupted" and rows["zz-stuck"]["output"] is None
    # Work is the rules' own time; wall is the attempt's start to its end.
    events = read_events(done_events)
    work = sum(e["seconds"] for e in events if e["kind"] == "rule_finished")
    assert rows["done"]["work_seconds"] == round(work, 3)
    started = next(e["ts"] for e in events if e["kind"] == "run_started")
    ended = next(e["ts"] for e in events if e["kind"] == "run_finished")
    assert rows["done"]["wall_seconds"] == round(epoch(ended) - epoch(started), 3)

    final = out / "done" / "final.mp4"
    before = final.stat().st_mtime_ns
    resumed = va_cli("run", folder / "done.json", "--workdir", out / "done", "--resume", "-q")
    assert resumed.code == ExitCode.OK, resumed.err  # a finished job of a stopped batch: nothing to do
    assert resumed.out.strip() == str(final)
    # As if a batch had been killed between the final's publication and the record of its end: the next
    # batch checks the final and records it, without running the job again.
    lines = done_events.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["kind"] == "run_finished"
    done_events.write_text("".join(lines[:-1]))
    second = va_cli("batch", folder, "--out", out, "--cores", "3", "--json")
    assert second.code == ExitCode.OK, second.err
    assert {row["status"] for row in summary(second).values()} == {"succeeded"}
    assert final.stat().st_mtime_ns == before
    assert json.loads((out / "done" / "manifest.json").read_text())["attempts"] == 1
    assert kinds(done_events).count("run_finished") == 1 and kinds(done_events)[-1] == "run_finished"
    assert int(ffprobe_streams(out / "zz-stuck" / "final.mp4")["video"]["nb_read_frames"]) == 50


def test_a_live_snakemake_in_the_folder_is_never_unlocked(files: Media, va_cli: CliRunner) -> None:
    """`va batch` in a folder where a plain snakemake runs refuses (exit 30, one line with its pid) and
    leaves its lock; once that snakemake is gone (killed: its lock stays), `va batch` unlocks and runs."""
    folder = make_batch(files, ["one"])
    out, marker = files.root / "out", uuid.uuid4().hex
    slow = slow_ffmpeg(files.root, 600, only="one/prepare/padded.wav")
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--cores", "1"]
    process = subprocess.Popen(
        [*argv, "--directory", str(out), "--config", f"batch={folder}"],
        env={**os.environ, "FFMPEG": str(slow), MARKER: marker},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        events = out / "one" / "logs" / "events.jsonl"
        wait_until(lambda: kinds(events, "prepare_audio")[-1:] == ["rule_started"], process)
        locks = sorted((out / ".snakemake" / "locks").iterdir())
        refused = va_cli("batch", folder, "--out", out)
        assert refused.code == ExitCode.OUTPUT_EXISTS
        assert refused.err.strip().splitlines() == [
            f"va: error: {out} is in use by a running snakemake (pid {process.pid}); leaving it alone "
            "(wait for it to end, or stop it, then call again)"
        ]
        assert process.poll() is None and sorted((out / ".snakemake" / "locks").iterdir()) == locks
    finally:
        kill_marked(marker)
        process.wait()
    wait_no_process_marked(marker)
    assert any((out / ".snakemake" / "locks").iterdir())  # a killed snakemake leaves its lock
    result = va_cli("batch", folder, "--out", out, "--json")
    assert result.code == ExitCode.OK, result.err
    assert summary(result)["one"]["status"] == "succeeded"
