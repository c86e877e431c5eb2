"""va/lifecycle.py: what a graph's start and end record for its jobs, and the Snakemake internals va uses
(checked against the installed Snakemake)."""

from __future__ import annotations

import inspect
import json
import shutil
import threading
from types import SimpleNamespace

from snakemake.scheduling.job_scheduler import JobScheduler
from snakemake.settings.types import MaxJobsPerTimespan, SchedulingSettings

from tests.conftest import Media
from va.job import load_job
from va.lifecycle import DEFAULT_RATE_LIMIT, GraphRun, release_rescheduling_timers, stop_idle_rescheduling
from va.manifest import build_manifest
from va.plan import plan_run
from va.workdir import Workdir


def test_snakemake_still_has_what_va_reaches_into() -> None:
    """The scheduler keeps its rate limiter in ``job_rate_limiter`` (made from the scheduling settings'
    ``max_jobs_per_timespan``, whose default is 100 jobs a second) and re-evaluates after a
    ``threading.Timer``: a Snakemake release that changes any of these fails here, not silently."""
    made = inspect.getsource(JobScheduler.__init__)
    assert "self.job_rate_limiter" in made and "max_jobs_per_timespan" in made
    assert "threading.Timer" in inspect.getsource(JobScheduler._schedule_reevalutation)
    assert "max_jobs_per_timespan" in SchedulingSettings.__dataclass_fields__
    limit = MaxJobsPerTimespan(100, "1s")
    assert (limit.max_jobs, limit.timespan) == DEFAULT_RATE_LIMIT
    from snakemake import cli  # noqa: PLC0415 - only this test reads the CLI's default

    assert '"100/1s"' in inspect.getsource(cli) or "'100/1s'" in inspect.getsource(cli)


def workflow_with(limit: MaxJobsPerTimespan | None) -> SimpleNamespace:
    """A workflow as the Snakefile's ``onstart`` sees it: its scheduler with a rate limiter."""
    scheduler = SimpleNamespace(job_rate_limiter=object())
    return SimpleNamespace(
        scheduler=scheduler, scheduling_settings=SimpleNamespace(max_jobs_per_timespan=limit)
    )


def test_the_default_rate_limit_is_dropped_a_chosen_one_kept() -> None:
    default = workflow_with(MaxJobsPerTimespan(100, "1s"))
    assert stop_idle_rescheduling(default) and default.scheduler.job_rate_limiter is None
    chosen = workflow_with(MaxJobsPerTimespan(10, "1s"))
    assert not stop_idle_rescheduling(chosen) and chosen.scheduler.job_rate_limiter is not None
    assert not stop_idle_rescheduling(workflow_with(None))


def test_pending_rescheduling_timers_are_cancelled() -> None:
    fired = threading.Event()
    timer = threading.Timer(30, fired.set)
    timer.start()
    release_rescheduling_timers()
    timer.join(timeout=5)
    assert not timer.is_alive() and not fired.is_set()


def test_a_graph_run_records_the_start_and_the_end_of_its_jobs(files: Media) -> None:
    """Its start writes the plan (a plain snakemake's) and records a run in each job's folder with work;
    a finished video's folder is left alone. Its end records a job without its final as failed (or
    interrupted), naming the command that continues."""
    jobs = {name: load_job(files.job(f"{name}.json")) for name in ("todo", "done")}
    root = files.root / "out"
    finished = Workdir(root / "done").final(jobs["done"].basename)
    finished.parent.mkdir(parents=True)
    shutil.copyfile(files.root / "voice.wav", finished)  # any file: a finished video is never touched
    plans = {name: plan_run(job) for name, job in jobs.items()}
    graph = GraphRun(root=root, jobs=jobs, plan_for=plans.__getitem__, planned=False, batch=True)
    graph.started()
    todo = Workdir(root / "todo")
    assert [run.root for run, _ in graph.pending] == [todo.root]
    assert json.loads(todo.plan.read_text())["target_frames"] == plans["todo"].target_frames
    started = build_manifest(todo)
    assert started is not None and started["run_status"] == "running"
    assert not (root / "done" / "logs").exists()
    graph.finished(success=False)
    ended = build_manifest(todo)
    assert ended is not None and ended["run_status"] == "interrupted"
    assert "the same va batch (or snakemake) command" in ended["exit_status"]["message"]


def test_a_planned_graph_takes_the_changes_va_published(files: Media) -> None:
    """With the plans written by ``va`` before Snakemake started, the start records the fields that
    plan changed (kept beside it), and does not write the plan again."""
    job = load_job(files.job())
    root = files.root / "w"
    first = plan_run(job)
    GraphRun(root, {"": job}, lambda name: first, planned=False, batch=False).started()
    sharper = load_job(files.job(output={"crf": 30}))
    plan = plan_run(sharper, Workdir(root))
    from va.plan import publish_plan  # noqa: PLC0415 - what va run does before Snakemake starts

    assert publish_plan(plan, Workdir(root).plan) == ["document.output", "encoding"]
    written = Workdir(root).plan.stat().st_mtime_ns
    GraphRun(root, {"": sharper}, lambda name: plan, planned=True, batch=False).started()
    assert Workdir(root).plan.stat().st_mtime_ns == written
    manifest = build_manifest(Workdir(root))
    assert manifest is not None
    assert manifest["last_attempt"]["plan_changes"] == ["document.output", "encoding"]
