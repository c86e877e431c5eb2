"""What a graph's main Snakemake does about its cluster jobs (with the slurm executor): a job the cluster
can never start is cancelled and its video failed (``va.slurm.NeverRunsWatch``); a job that failed for
the cluster's reason (sbatch refused it, it was cancelled by hand, its node was lost, its time limit
reached) has that reason recorded for its video; a failed job's finished rules keep what they made.

The Snakefile's ``onstart`` starts a ``ClusterWatch``; ``rules/common.smk`` sets up
``keep_outputs_of_finished_rules`` with ``finished_in_attempt`` in every Snakemake process of the graph.
The Snakemake jobs handed in are read through their executor interface (``rule.name``,
``wildcards_dict``, ``is_group()``, ``jobs``, ``groupid``); what va changes in Snakemake is in
``va.lifecycle``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from va.errors import ExitCode, VaError
from va.graph import RULE_PHASE
from va.lifecycle import (
    cap_status_check_interval,
    hear_job_errors,
    run_rules_in_the_cluster_job,
    slurm_executor,
    status_check_seconds,
)
from va.slurm import ClusterJob, NeverRunsWatch, cluster_failure, failed_rule, named_job
from va.tracking import failure_of_attempt, record_rule_failed, rule_finished_in_attempt
from va.workdir import Workdir


def finished_in_attempt(job: Any, root: Path) -> bool:
    """Whether the rule of Snakemake's ``job`` recorded its end in this attempt of its video (the graph's
    working directory ``root``)."""
    if job.rule.name not in RULE_PHASE:
        return False
    wildcards = job.wildcards_dict
    target = wildcards.get("batch") or wildcards.get("chunk")
    run = Workdir(root / wildcards.get("name", ""))
    return rule_finished_in_attempt(run, job.rule.name, target)


def cluster_job_name(job: Any) -> str:
    """A rule's job as va's lines name it: ``rule lipsync [intro]``."""
    values = "_".join(str(value) for value in job.wildcards_dict.values())
    return f"rule {job.rule.name}" + (f" [{values}]" if values else "")


@dataclass(frozen=True)
class ClusterWatch:
    """The cluster jobs of one graph: its working directory ``root``, the names of its jobs (``""`` for a
    graph of one job) and the command that continues it (``again``, as ``GraphRun.again``)."""

    root: Path
    names: frozenset[str]
    again: str

    @classmethod
    def of(cls, root: Path, names: Iterable[str], again: str) -> ClusterWatch:
        """The watch of the graph in ``root`` with jobs ``names``."""
        return cls(root, frozenset(names), again)

    def start(self, workflow: Any) -> bool:
        """With the slurm executor: watch the queue for jobs that can never start, hear the cluster's
        reasons for failed jobs, have each job's Snakemake run its rules itself and look at the queue at
        least every ``seconds-between-status-checks``. Returns whether the graph runs on Slurm."""
        executor = slurm_executor(workflow)
        if executor is None:
            return False
        NeverRunsWatch(self.root, report=self.report_never_runs).start()
        hear_job_errors(executor, self.report_cluster_failure)
        run_rules_in_the_cluster_job(executor)
        cap_status_check_interval(executor, status_check_seconds(workflow))
        return True

    def report_cluster_failure(self, job: Any, message: str | None) -> VaError | None:
        """A cluster job that failed for the cluster's reason: that reason on stderr and as the failure
        of the rule it was running (a group's first unfinished rule in graph order), unless one of its
        rules recorded its own error (a rule that failed, a job the watch cancelled). Returns the error
        recorded, if any."""
        jobs = list(job.jobs) if job.is_group() else [job]
        name = jobs[0].wildcards_dict.get("name", "")
        if name not in self.names:
            return None
        run = Workdir(self.root / name)
        what = f"group {job.groupid}" if job.is_group() else cluster_job_name(job)
        error = cluster_failure(message, what, self.again)
        if error is None or failure_of_attempt(run) is not None:
            return None
        print(f"va: {error.message}", file=sys.stderr)
        unfinished = [j for j in jobs if not finished_in_attempt(j, self.root)] or jobs
        failed = min((j.rule.name for j in unfinished), key=list(RULE_PHASE).index)
        record_rule_failed(run, failed, error)
        return error

    def report_never_runs(self, cluster_job: ClusterJob, line: str) -> None:
        """A job the cluster can never start: the line on stderr, and the failure in its video's record."""
        print(f"va: {line}", file=sys.stderr)
        name = named_job(cluster_job, self.names)
        if name is not None:
            error = VaError(ExitCode.CLUSTER_CANNOT_RUN, line)
            record_rule_failed(Workdir(self.root / name), failed_rule(cluster_job), error)
