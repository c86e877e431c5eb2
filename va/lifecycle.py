"""The run lifecycle of a graph: what its start and its end record for each job, and the places va
reaches into Snakemake and its slurm executor plugin.

The Snakefile's ``onstart``, ``onsuccess`` and ``onerror`` call a ``GraphRun``, ``va.cluster_watch`` and
the functions here; ``rules/common.smk`` keeps only the graph's declarations and input functions.
Snakemake's internals are used in this module alone (the scheduler's rate limit and timers, the executor of
a graph, a job's cleanup, the slurm plugin's job command and status checks), besides the process start of a
local run in ``va.snakemake_local`` (its executor plugins and its pandas, checked by
``tests/test_snakemake_local.py``), and the tests
``tests/test_lifecycle.py::test_snakemake_still_has_what_va_reaches_into`` and
``::test_the_slurm_plugin_still_has_what_va_reaches_into`` fail when a release changes them.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from va.clean import record_success
from va.job import Job
from va.plan import Plan, publish_plan, published_changes
from va.registry import RunUpdate, register_runs
from va.tracking import reconcile, record_run_finished, record_run_started, run_finished
from va.workdir import Workdir

#: Snakemake's default job rate limit, ``--max-jobs-per-timespan 100/1s``: jobs, seconds.
DEFAULT_RATE_LIMIT = (100, 1)


@dataclass
class GraphRun:
    """The jobs of one graph (one job, or a batch) in the working directory ``root``, and the record of
    their runs: ``plan_for`` gives a job's plan; ``planned``: ``va`` wrote the plans before Snakemake
    started (else the graph planned them, and its start writes them)."""

    root: Path
    jobs: dict[str, Job]
    plan_for: Callable[[str], Plan]
    planned: bool
    batch: bool
    #: The jobs this graph has work for, with their folders (filled by ``started``).
    pending: list[tuple[Workdir, Job]] = field(default_factory=list)

    @property
    def again(self) -> str:
        """The command that continues an unfinished run of this graph."""
        return "the same va batch (or snakemake) command" if self.batch else "--resume"

    def started(self) -> None:
        """At the start: write the plan (unless ``va`` did) and record a run in each job's folder that
        this graph has work for (a finished video is never touched again, but a run whose valid final
        was published without its end recorded, e.g. a batch stopped before, is recorded as succeeded)."""
        registering: dict[str, RunUpdate] = {}
        for name, job in self.jobs.items():
            run = Workdir(self.root / name)
            if run.final(job.basename).exists():
                reconcile(run, job.basename)
                continue
            self.pending.append((run, job))
            plan = self.plan_for(name)
            changes = published_changes(run.plan) if self.planned else publish_plan(plan, run.plan)
            record_run_started(run, job, plan_changes=changes, plan=plan, registering=registering)
        register_runs(registering)  # one rewrite of the registry for the whole batch

    def finished(self, success: bool) -> None:
        """At the end: each job that had work and whose end its encode did not record yet (it records it
        when it publishes the final) succeeded, failed in one of its rules, or was stopped."""
        for run, job in self.pending:
            if run_finished(run):
                continue
            if run.final(job.basename).exists():
                record_success(run, job.cleanup.after_success)
            else:
                unfinished = "failed" if success else "interrupted"
                record_run_finished(run, from_rules=True, unfinished=unfinished, again=self.again)
        release_rescheduling_timers()


def stop_idle_rescheduling(workflow: Any) -> bool:
    """Drop Snakemake's default job rate limit (100 jobs a second) for this graph; a limit set on
    purpose (--max-jobs-per-timespan) is kept. Returns whether it was dropped.

    The default never binds here, but with any limit every round of the scheduler that leaves a job
    waiting starts a timer for another round a second later, which starts the next timer: each
    finished job adds one such chain. A batch of N jobs ends with N rounds a second, each over every
    waiting job (a 200-job batch: 25,000 rounds, most of the main process's CPU, time per job
    growing with the batch). Without a limit a round runs when a job ends, as it should.
    """
    scheduler: Any = getattr(workflow, "scheduler", None)
    limit = workflow.scheduling_settings.max_jobs_per_timespan
    default = limit is not None and (limit.max_jobs, limit.timespan) == DEFAULT_RATE_LIMIT
    if default and getattr(scheduler, "job_rate_limiter", None) is not None:
        scheduler.job_rate_limiter = None
        return True
    return False


def release_rescheduling_timers() -> None:
    """Cancel the scheduler's pending re-evaluation timers once the graph is done.

    Snakemake's job rate limit (--max-jobs-per-timespan, at least one second) starts a non-daemon
    timer after each round of submissions; the interpreter waits for the last one before it exits,
    which adds up to a second to every run. With the graph finished nothing is left to re-evaluate.
    """
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()


def slurm_executor(workflow: Any) -> Any:
    """The executor a graph's main Snakemake submits its jobs with, when that is the slurm executor
    plugin's; None for any other executor (or before the graph has one)."""
    plugin = getattr(workflow, "executor_plugin", None)
    if plugin is None or plugin.name != "slurm":
        return None
    return getattr(getattr(workflow, "scheduler", None), "_executor", None)


def status_check_seconds(workflow: Any) -> float:
    """The profile's (or the command line's) ``seconds-between-status-checks``."""
    return float(workflow.remote_execution_settings.seconds_between_status_checks)


def hear_job_errors(executor: Any, heard: Callable[[Any, str | None], object]) -> None:
    """Have ``heard(job, message)`` called with each job error Snakemake's ``executor`` reports (the
    Snakemake job or group job, and the executor's message) before Snakemake handles it: Snakemake
    prints a group job's message as None, and a refused ``sbatch`` or a job cancelled by hand was lost.
    What ``heard`` raises is not Snakemake's concern."""
    report = executor.report_job_error

    def reported(job_info: Any, msg: str | None = None, **kwargs: Any) -> None:
        try:
            heard(job_info.job, msg)
        except Exception as exc:  # a record that failed must not stop the graph's own handling
            print(f"va: could not record the cluster's reason: {exc!r}", file=sys.stderr)
        report(job_info, msg, **kwargs)

    executor.report_job_error = reported


def keep_outputs_of_finished_rules(finished: Callable[[Any], bool], job_class: Any = None) -> None:
    """Snakemake's ``Job.cleanup`` (``snakemake.jobs.Job``, or ``job_class``) leaves alone the outputs of a
    job ``finished`` says ended well. Snakemake removes the outputs of every rule of a group job that fails
    ("might be corrupted"), the rules inside it that had finished too: a video's cluster job stopped
    (Ctrl-C, ``scancel``, a time limit) lost its padded audio and its still, and the next run made them
    again. A rule's end is recorded only once its outputs are published whole, so they are kept."""
    if job_class is None:
        from snakemake.jobs import Job  # noqa: PLC0415 - only a graph's processes load Snakemake's jobs

        job_class = Job
    original = job_class.cleanup
    if getattr(original, "keeps_finished", False):
        return

    async def cleanup(job: Any, skip_outputs: Any) -> None:
        if not finished(job):
            await original(job, skip_outputs)

    cleanup.keeps_finished = True  # type: ignore[attr-defined]
    job_class.cleanup = cleanup


#: What snakemake-executor-plugin-slurm adds to the command of each cluster job: a Snakemake with the
#: jobstep executor, which starts a second Snakemake (under ``srun``) to run the job's rules.
JOBSTEP_ARGS = "--executor slurm-jobstep --jobs 1"
#: What va gives the job's Snakemake instead: Snakemake's local executor, with every CPU it sees (what the
#: second Snakemake got), so it runs the rules itself. Later ``--cores`` win over the job's earlier ones.
RULES_IN_THE_JOB_ARGS = "--cores all"


def run_rules_in_the_cluster_job(executor: Any) -> bool:
    """Have each Slurm job's Snakemake run the job's rules itself instead of starting a second Snakemake
    under ``srun`` for them (the slurm executor plugin's jobstep executor): one Snakemake start a cluster
    job instead of two, half of a small video's job (docs/SCALING.md). The job still runs inside its
    allocation (its batch step), and a cancel ends it as before. Array jobs (the plugin's ``array_jobs``)
    need the jobstep executor and are left alone. Returns whether the command was changed."""
    if getattr(executor, "array_jobs", None) or not hasattr(executor, "additional_general_args"):
        return False
    given = executor.additional_general_args

    def job_args() -> str:
        args: str = given()
        if not args.startswith(JOBSTEP_ARGS):
            return args  # a plugin release that says something else: its own command, unchanged
        return RULES_IN_THE_JOB_ARGS + args.removeprefix(JOBSTEP_ARGS)

    executor.additional_general_args = job_args
    return True


def cap_status_check_interval(executor: Any, seconds: float) -> bool:
    """Look at the cluster's jobs at least every ``seconds`` (the profile's
    ``seconds-between-status-checks``). The slurm executor plugin waits 10 s longer after each look that
    found no job finished, up to 3 minutes: a video's job of 40 s was seen finished after 68 s, and a
    batch waited on each. Returns whether the executor has the plugin's waits to cap."""
    if not hasattr(executor, "next_seconds_between_status_checks"):
        return False

    async def sleep() -> None:
        await asyncio.sleep(min(seconds, executor.next_seconds_between_status_checks))

    executor.sleep = sleep
    return True
