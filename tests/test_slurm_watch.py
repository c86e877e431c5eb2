"""va/slurm.py's watch of the queue without a cluster: the queue is what ``squeue`` would list (``our_jobs``
replaced), the partition what ``sinfo`` would say, and the clock is the test's. A job Slurm can never start
is cancelled and reported once; one pending for a reason that comes and goes only after its grace. A re-run
stopped while it waits for an earlier run's jobs cancels them."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import CliRunner, Media
from va import slurm
from va.errors import ExitCode
from va.slurm import ClusterJob, NeverRunsWatch, PartitionLimits
from va.workdir import Workdir

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
        self.monkeypatch = monkeypatch

    def stop_while_waiting(self, signum: signal.Signals) -> None:
        """``signum`` comes to this process at va's first look at the queue while it waits for our jobs;
        a cancelled job leaves the queue."""
        looks = []

        def our_jobs(workdir: Path) -> list[ClusterJob]:
            looks.append(workdir)
            if len(looks) == 2:
                os.kill(os.getpid(), signum)
            return [job for job in self.jobs if job.job_id not in self.cancelled]

        self.monkeypatch.setattr(slurm, "our_jobs", our_jobs)

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


def running(job_id: str, name: str) -> ClusterJob:
    comment = f"rule_{name}@video_encode_hold_start_frame_prepare_audio"
    return ClusterJob(job_id, "RUNNING", "None", comment, "va", 2, "1000M", "30:00")


@pytest.mark.parametrize(
    ("command", "signum"),
    [("batch", signal.SIGINT), ("batch", signal.SIGTERM), ("run", signal.SIGINT)],
    ids=["batch-SIGINT", "batch-SIGTERM", "run-SIGINT"],
)
def test_a_stop_while_an_earlier_runs_jobs_are_waited_for_cancels_them(
    monkeypatch: pytest.MonkeyPatch,
    files: Media,
    state_dir: Path,
    va_cli: CliRunner,
    command: str,
    signum: signal.Signals,
) -> None:
    """An earlier run was killed with one job pending and one running; the re-run cancels the pending one,
    waits for the running one, and gets the signal while it waits: it cancels that one too, says so, and
    ends with 130 and the command that continues. Nothing of Snakemake is started."""
    queue = Queue(monkeypatch)
    queue.jobs = [pending("7", "Priority"), running("8", "one")]
    queue.stop_while_waiting(signum)
    out = files.root / "out"
    if command == "batch":
        folder = files.root / "jobs"
        folder.mkdir()
        files.job(f"{folder.name}/one.json", input={"audio": "../voice.wav", "start": "../start.png"})
        again = f"va batch {folder} --out {out} --profile slurm"
        result = va_cli("batch", folder, "--out", out, "--profile", "slurm", "--json")
        rows = json.loads(result.out)["jobs"]
        assert [row["status"] for row in rows] == ["not run"], rows
        assert f"va: interrupted (0 of 1 job(s) succeeded); continue with: {again}" in result.err
    else:
        job = files.job()
        result = va_cli("run", job, "--workdir", out, "--profile", "slurm", "--quiet")
        again = f"va run {job} --workdir {out} --resume"
        assert f"va: error: interrupted; continue with: {again}" in result.err
    assert result.code == ExitCode.INTERRUPTED, result.err
    assert queue.cancelled == ["7", "8"]
    stopped = f"va: stopped: cancelled the Slurm job it waited for in {out}: 8"
    assert stopped in result.err and stopped in (out / "logs" / "snakemake.log").read_text()
    started = Workdir(out).text_log
    assert not started.exists() or "snakemake: $" not in started.read_text()  # no graph was started


def test_a_second_ctrl_c_does_not_cut_the_cancel_short(
    monkeypatch: pytest.MonkeyPatch, files: Media, state_dir: Path, va_cli: CliRunner
) -> None:
    """Ctrl-C while va waits for an earlier run's job, and again while it cancels that job: the job is
    still cancelled and said so, and va ends with 130 and the command that continues."""
    queue = Queue(monkeypatch)
    queue.jobs = [running("8", "one")]
    queue.stop_while_waiting(signal.SIGINT)

    def cancel(jobs: list[ClusterJob]) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C
        queue.cancelled.extend(job.job_id for job in jobs)

    monkeypatch.setattr(slurm, "cancel", cancel)
    job, out = files.job(), files.root / "out"
    result = va_cli("run", job, "--workdir", out, "--profile", "slurm", "--quiet")
    assert result.code == ExitCode.INTERRUPTED, result.err
    assert queue.cancelled == ["8"]
    assert f"va: stopped: cancelled the Slurm job it waited for in {out}: 8" in result.err
    assert f"va: error: interrupted; continue with: va run {job} --workdir {out} --resume" in result.err


def test_the_lines_count_jobs_in_words() -> None:
    """One job is "1 Slurm job" ("the Slurm job"), more are "N Slurm jobs" ("the N Slurm jobs")."""
    assert [slurm.slurm_jobs(n) for n in (1, 3)] == ["1 Slurm job", "3 Slurm jobs"]
    assert [slurm.the_slurm_jobs(n) for n in (1, 3)] == ["the Slurm job", "the 3 Slurm jobs"]
