"""va/slurm.py's watch of the queue without a cluster: the queue is what ``squeue`` would list (``our_jobs``
replaced), the partition what ``sinfo`` would say, and the clock is the test's. A job Slurm can never start
is cancelled and reported once; one pending for a reason that comes and goes only after its grace."""

from __future__ import annotations

from pathlib import Path

import pytest

from va import slurm
from va.slurm import ClusterJob, NeverRunsWatch, PartitionLimits

LIMITS = PartitionLimits("va", 2, 3000, "1-00:00:00", "UP")


class Queue:
    """The queue and the clock of one test, and what the watch cancelled and reported."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.jobs: list[ClusterJob] = []
        self.now = 1000.0
        self.cancelled: list[str] = []
        self.reported: list[str] = []
        monkeypatch.setattr(slurm, "our_jobs", lambda workdir: list(self.jobs))
        monkeypatch.setattr(slurm, "partition_limits", lambda partition: LIMITS)
        monkeypatch.setattr(slurm, "cancel", lambda jobs: self.cancelled.extend(j.job_id for j in jobs))

    def watch(self) -> NeverRunsWatch:
        return NeverRunsWatch(
            Path("out"),
            lambda job, line: self.reported.append(line),
            not_now_seconds=120,
            clock=lambda: self.now,
        )


def pending(job_id: str, reason: str, cpus: int = 1, memory: str = "500M") -> ClusterJob:
    comment = "rule_lipsync_wildcards_j01"
    return ClusterJob(job_id, "PENDING", reason, comment, "va", cpus, memory, "30:00")


def test_a_job_the_partition_can_never_run_is_cancelled_and_reported_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = Queue(monkeypatch)
    queue.jobs = [pending("7", "PartitionConfig", cpus=4), pending("8", "Resources")]
    watch = queue.watch()
    assert [job.job_id for job in watch.check()] == ["7"]
    assert watch.check() == []  # reported once, however long squeue still lists it
    assert queue.cancelled == ["7"]
    (line,) = queue.reported
    assert "Slurm job 7 (rule lipsync [j01]) can never start: it asks for 4 CPUs, 500M memory" in line
    assert "nodes of at most 2 CPUs and 3000 MB" in line and "PartitionConfig" in line


def test_a_request_beyond_the_largest_node_never_runs_whatever_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = Queue(monkeypatch)
    queue.jobs = [pending("9", "Resources", memory="16000M"), pending("10", "Priority", memory="2000M")]
    assert [job.job_id for job in queue.watch().check()] == ["9"]


def test_a_reason_that_comes_and_goes_is_given_its_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = Queue(monkeypatch)
    queue.jobs = [pending("11", "ReqNodeNotAvail")]
    watch = queue.watch()
    assert watch.check() == []
    queue.now += 119
    assert watch.check() == []
    queue.jobs = [pending("11", "Resources")]  # the node came back: the grace starts anew next time
    queue.now += 5
    assert watch.check() == []
    queue.jobs = [pending("11", "NodeDown")]
    queue.now += 60
    assert watch.check() == []
    queue.now += 120
    assert [job.job_id for job in watch.check()] == ["11"] and queue.cancelled == ["11"]
    assert "squeue reason: NodeDown" in queue.reported[0]
