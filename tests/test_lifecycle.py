"""va/lifecycle.py: what a graph's start and end record for its jobs, and the Snakemake internals va uses
(checked against the installed Snakemake and slurm executor plugin)."""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import Media
from va.job import load_job
from va.lifecycle import (
    DEFAULT_RATE_LIMIT,
    JOBSTEP_ARGS,
    GraphRun,
    cap_status_check_interval,
    hear_job_errors,
    keep_outputs_of_finished_rules,
    release_rescheduling_timers,
    run_rules_in_the_cluster_job,
    stop_idle_rescheduling,
)
from va.manifest import build_manifest
from va.plan import plan_run
from va.workdir import Workdir

if TYPE_CHECKING:
    from snakemake.settings.types import MaxJobsPerTimespan

# Snakemake and its Slurm plugin are imported in the tests that read them, not here: every pytest worker
# imports every test module to collect it, and these imports cost about 1.5 s of CPU (and the plugin runs
# scontrol, which waits up to 10 s while Slurm's controller starts).


def test_snakemake_still_has_what_va_reaches_into() -> None:
    """The scheduler keeps its rate limiter in ``job_rate_limiter`` (made from the scheduling settings'
    ``max_jobs_per_timespan``, whose default is 100 jobs a second) and re-evaluates after a
    ``threading.Timer``: a Snakemake release that changes any of these fails here, not silently."""
    from snakemake.scheduling.job_scheduler import JobScheduler  # noqa: PLC0415
    from snakemake.settings.types import MaxJobsPerTimespan, SchedulingSettings  # noqa: PLC0415

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
    from snakemake.settings.types import MaxJobsPerTimespan  # noqa: PLC0415

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


def test_the_slurm_plugin_still_has_what_va_reaches_into() -> None:
    """The graph's executor is the scheduler's ``_executor``; the plugin's job command ends with the
    jobstep executor's arguments, which ``format_job_exec`` puts after the job's own (a later ``--cores``
    wins); the status checks sleep through ``self.sleep()`` and the plugin backs off by 10 s a look:
    a release that changes any of these fails here, not silently."""
    from snakemake.cli import get_argument_parser  # noqa: PLC0415
    from snakemake.jobs import Job  # noqa: PLC0415
    from snakemake.scheduling.job_scheduler import JobScheduler  # noqa: PLC0415
    from snakemake.settings.types import RemoteExecutionSettings  # noqa: PLC0415
    from snakemake.workflow import Workflow  # noqa: PLC0415
    from snakemake_executor_plugin_slurm import Executor as SlurmExecutor  # noqa: PLC0415
    from snakemake_interface_executor_plugins.executors.base import AbstractExecutor  # noqa: PLC0415
    from snakemake_interface_executor_plugins.executors.real import RealExecutor  # noqa: PLC0415
    from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor  # noqa: PLC0415

    assert "self._executor" in inspect.getsource(JobScheduler.__init__)
    assert isinstance(inspect.getattr_static(Workflow, "executor_plugin"), property)
    assert "seconds_between_status_checks" in RemoteExecutionSettings.__dataclass_fields__
    assert "remote_execution_settings" in inspect.signature(Workflow).parameters
    assert f'"{JOBSTEP_ARGS}"' in inspect.getsource(SlurmExecutor.additional_general_args)
    command = inspect.getsource(RealExecutor.format_job_exec)
    assert command.index("self.get_job_args(job)") < command.index("self.additional_general_args()")
    parse = get_argument_parser().parse_args
    assert parse(["--cores", "1", "--cores", "all"]).cores == parse(["--cores", "all"]).cores
    assert parse(["--cores", "all", "--cores", "1"]).cores == 1
    assert "await self.sleep()" in inspect.getsource(RemoteExecutor._wait_for_jobs)
    assert isinstance(inspect.getattr_static(RemoteExecutor, "next_seconds_between_status_checks"), property)
    backoff = "self.next_seconds_between_status_checks + 10"
    assert backoff in inspect.getsource(SlurmExecutor.check_active_jobs)
    # The hooks' targets, as Snakemake spells them.
    assert list(inspect.signature(AbstractExecutor.report_job_error).parameters)[:3] == [
        "self",
        "job_info",
        "msg",
    ]
    assert inspect.iscoroutinefunction(Job.cleanup)
    assert list(inspect.signature(Job.cleanup).parameters) == ["self", "skip_outputs"]


def plugin_executor(array_jobs: set[str]) -> SimpleNamespace:
    """An executor whose job command is the slurm plugin's own (``additional_general_args``)."""
    from snakemake_executor_plugin_slurm import Executor as SlurmExecutor  # noqa: PLC0415

    settings = SimpleNamespace(executor_settings=SimpleNamespace(pass_command_as_script=True))
    plugin = SimpleNamespace(workflow=settings)
    return SimpleNamespace(
        array_jobs=array_jobs,
        additional_general_args=lambda: SlurmExecutor.additional_general_args(plugin),  # type: ignore[arg-type]
    )


def test_a_cluster_jobs_snakemake_runs_its_rules_itself() -> None:
    """Its command asks for Snakemake's local executor on every CPU (no jobstep executor, which started a
    second Snakemake under srun); the plugin's other arguments stay. Array jobs keep the plugin's."""
    executor = plugin_executor(set())
    assert executor.additional_general_args().startswith(JOBSTEP_ARGS)
    assert run_rules_in_the_cluster_job(executor)
    assert executor.additional_general_args() == "--cores all --slurm-jobstep-pass-command-as-script"
    arrays = plugin_executor({"encode"})
    assert not run_rules_in_the_cluster_job(arrays)
    assert arrays.additional_general_args().startswith(JOBSTEP_ARGS)


def test_the_status_checks_wait_at_most_the_profiles_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    executor = SimpleNamespace(next_seconds_between_status_checks=32)
    assert cap_status_check_interval(executor, 3)
    asyncio.run(executor.sleep())
    executor.next_seconds_between_status_checks = 2  # a job finished: the plugin's first interval again
    asyncio.run(executor.sleep())
    assert slept == [3, 2]
    assert not cap_status_check_interval(SimpleNamespace(), 3)  # not a remote executor: nothing to cap


class Reported:
    """A job error as the plugin reports it: ``report_job_error(job_info, msg=...)``."""

    def __init__(self, job: object) -> None:
        self.job = job


class Executor:
    def __init__(self) -> None:
        self.handled: list[tuple[object, str | None]] = []

    def report_job_error(self, job_info: Reported, msg: str | None = None, **kwargs: Any) -> None:
        self.handled.append((job_info.job, msg))


def test_every_job_error_is_heard_before_snakemake_handles_it(capsys: pytest.CaptureFixture[str]) -> None:
    executor, heard = Executor(), []
    cancelled = "SLURM-job '12' failed, SLURM status is: 'CANCELLED'."

    def hear(job: object, message: str | None) -> None:
        heard.append((job, message))
        if message == "breaks":
            raise RuntimeError("the record failed")

    hear_job_errors(executor, hear)
    executor.report_job_error(Reported("group a@video"), msg=cancelled)
    executor.report_job_error(Reported("rule b"), "breaks", aux_logs=[])
    assert heard == [("group a@video", cancelled), ("rule b", "breaks")]
    assert executor.handled == heard  # Snakemake still handles each, also when va's record failed
    assert (
        "va: could not record the cluster's reason: RuntimeError('the record failed')"
        in capsys.readouterr().err
    )


def test_a_failed_jobs_cleanup_keeps_the_outputs_of_finished_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    from snakemake.jobs import Job  # noqa: PLC0415

    removed: list[str] = []

    class Cleaned:
        def __init__(self, name: str) -> None:
            self.name = name

        async def cleanup(self, skip_outputs: list[Path]) -> None:
            removed.append(self.name)

    keep_outputs_of_finished_rules(lambda job: job.name == "prepare_audio", Cleaned)
    keep_outputs_of_finished_rules(lambda job: False, Cleaned)  # once: a second call changes nothing
    for name in ("prepare_audio", "encode"):
        asyncio.run(Cleaned(name).cleanup([]))
    assert removed == ["encode"]
    monkeypatch.setattr(Job, "cleanup", Job.cleanup)  # put back after the test
    keep_outputs_of_finished_rules(lambda job: True)  # Snakemake's own Job
    assert getattr(Job.cleanup, "keeps_finished", False)
