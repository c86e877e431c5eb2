"""The run lifecycle of a graph: what its start and its end record for each job, and the two places va
reaches into Snakemake's scheduler.

The Snakefile's ``onstart``, ``onsuccess`` and ``onerror`` call a ``GraphRun`` and the functions here;
``rules/common.smk`` keeps only the graph's input functions. Snakemake's internals are used in this module
alone (``stop_idle_rescheduling``, ``release_rescheduling_timers``), and
``tests/test_lifecycle.py::test_snakemake_still_has_what_va_reaches_into`` fails when a Snakemake
release changes them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from va.clean import record_success
from va.job import Job
from va.plan import Plan, publish_plan, published_changes
from va.registry import register_runs
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
        registering: dict[str, dict[str, Any]] = {}
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
