"""Our jobs in a Slurm queue: which jobs a workdir's graph submitted, which of them can never start, and
cancelling them.

A job is ours when its working directory is the graph's workdir (the slurm executor plugin submits with
``-D``) and its comment names a rule (``rule_<rule>_wildcards_<wildcards>``) or a group
(``rule_<group>_<its rules>``).
Every query goes through ``squeue``/``scontrol``/``sinfo``, so what va sees is what the cluster says.
"""

from __future__ import annotations

import contextlib
import pwd
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from va.errors import ExitCode, VaError
from va.graph import RULE_PHASE

#: ``squeue -o``: the fields of a job, ``|``-separated (no field of ours holds one).
_SQUEUE_FORMAT = "%i|%T|%r|%k|%Z|%P|%C|%m|%l"
#: How long a Slurm command may take before its answer counts as none (slurmctld busy or down).
_COMMAND_SECONDS = 30.0

#: Reasons Slurm gives a pending job that the partition's configuration can never run, whatever else
#: happens in the queue: the request exceeds the partition's limits (e.g. more CPUs than its nodes have).
NEVER_RUNS = frozenset(
    {
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "BadConstraints",
        "InvalidAccount",
        "InvalidQOS",
    }
)
#: Reasons that also come and go (a required node down, drained or reserved; the partition down): a job
#: pending for one of them this long is taken as never running.
NOT_NOW = frozenset({"ReqNodeNotAvail", "PartitionDown", "PartitionInactive", "NodeDown"})
NOT_NOW_SECONDS = 120.0


@dataclass(frozen=True)
class ClusterJob:
    """One job of ours as ``squeue`` lists it."""

    job_id: str
    state: str
    reason: str
    comment: str
    partition: str
    cpus: int
    memory: str
    time_limit: str

    @property
    def pending(self) -> bool:
        """Still waiting to start (it has run nothing yet)."""
        return self.state == "PENDING"

    @property
    def name(self) -> str:
        """The rule's name, or for a group job ``<group>_<its rules>`` (the plugin's ``job.name``)."""
        return self.comment.partition("_")[2].partition("_wildcards_")[0]

    @property
    def group(self) -> str | None:
        """The group of a group job (``<job name>@video``, ``video``); None for a single rule's job."""
        marker = f"@{VIDEO_GROUP}_"
        if marker in self.name:  # a batch's: the job's name never holds "@"
            return self.name.partition(marker)[0] + marker[:-1]
        return VIDEO_GROUP if self.name.startswith(f"{VIDEO_GROUP}_") else None

    @property
    def what(self) -> str:
        """The rule (or group) and wildcards the job runs, from its comment."""
        if self.group is not None:
            return f"group {self.group}"
        return f"rule {self.name}" + (f" [{self.wildcards}]" if self.wildcards else "")

    @property
    def rule(self) -> str | None:
        """The rule of a single rule's job; None for a group job."""
        return None if self.group is not None else self.name

    @property
    def wildcards(self) -> str:
        """The job's wildcard values joined by ``_``, as the plugin writes them into the comment."""
        return self.comment.partition("_wildcards_")[2]

    @property
    def request(self) -> str:
        """What the job asks for, as a person reads it."""
        return f"{self.cpus} CPUs, {self.memory} memory, time {self.time_limit}"


#: The cluster job group of a video's cheap rules is ``<job name>@video`` in a batch (a name never holds
#: ``@``), ``video`` for one job: the plugin's comment of a group job names the group, not the wildcards.
VIDEO_GROUP = "video"


def group_id(name: str) -> str:
    """The group of the cheap rules of the video of job ``name`` ("" for a graph of one job)."""
    return f"{name}@{VIDEO_GROUP}" if name else VIDEO_GROUP


def named_job(job: ClusterJob, names: Iterable[str]) -> str | None:
    """Which of the graph's jobs (``names``; "" for a graph of one job) a cluster job works for."""
    names = set(names)
    if job.group is not None:
        name = job.group.removesuffix(VIDEO_GROUP).removesuffix("@")
        return name if name in names else None
    # The plugin joins the wildcards with "_", and a name may hold "_": the longest name that fits.
    fits = [n for n in names if job.wildcards == n or (n and job.wildcards.startswith(n + "_"))]
    return max(fits, key=len, default=None)


def failed_rule(job: ClusterJob) -> str:
    """The rule a cluster job's failure is recorded for: its own, or a group's first in graph order."""
    if job.rule is not None:
        return job.rule
    # A group's comment ends with its rules' names (sorted, joined by "_").
    return next((rule for rule in RULE_PHASE if rule in job.comment), "prepare_audio")


#: How the slurm executor plugin reports a submission that ``sbatch`` refused, and the call it made.
_REFUSED = re.compile(
    r"SLURM sbatch failed\. The error message was '(?P<error>[^']*)'\.\s+"
    r"sbatch call:\s+(?P<call>sbatch [^\n]*)"
)
#: The request in the plugin's ``sbatch`` call: flag and what it means.
_REQUEST_FLAGS = (
    (re.compile(r"--cpus-per-task[= ](\d+)"), "{} CPUs"),
    (re.compile(r"--mem[= ](\d+)"), "{} MB memory"),
    (re.compile(r"--gpus[= ](\S+)"), "{} GPUs"),
    (re.compile(r"--gres[= ](\S+)"), "gres {}"),
    (re.compile(r" -t (\S+)"), "time {} min"),
)


#: How the slurm executor plugin reports a job that Slurm ended in a failed state (``squeue``'s state).
_ENDED = re.compile(
    r"SLURM-job '(?P<id>\d+)' failed(?: due to a node failure)?, SLURM status is: '(?P<state>[A-Z_]+)'"
)
#: Words of an sbatch error that passes (the controller busy or out of reach): no verdict on the request.
_PASSING = ("Unable to contact", "Socket timed out", "try again", "temporarily", "Transport endpoint")


def cluster_failure(message: str | None, what: str, again: str) -> VaError | None:
    """Slurm's own reason for a cluster job that failed, from the slurm executor plugin's ``message``
    (what it hands Snakemake, which prints a group job's as None), as one line naming the job (``what``:
    its rule or group); None for a message that is not the cluster's (a rule that failed in its script
    records its own error). A request ``sbatch`` refuses, a time limit or the memory limit reached are
    ``CLUSTER_CANNOT_RUN`` (asked again, it fails again); a cancel outside va (``scancel`` by hand) or a
    node that failed are ``INTERRUPTED``, continued with ``again``."""
    if not message:
        return None
    if (refused := _REFUSED.search(message)) is not None:
        return _refusal(refused, what, again)
    if (ended := _ENDED.search(message)) is not None:
        return _ending(ended["id"], ended["state"], what, again)
    return None


def _refusal(refused: re.Match[str], what: str, again: str) -> VaError:
    call = refused["call"]
    error = "; ".join(line.strip() for line in refused["error"].splitlines() if line.strip())
    asks = ", ".join(text.format(found[1]) for flag, text in _REQUEST_FLAGS if (found := flag.search(call)))
    if any(words in error for words in _PASSING):
        line = f"sbatch could not submit the job of {what} ({error}); continue with {again}"
        return VaError(ExitCode.INTERRUPTED, line)
    partition = re.search(r" -p (\S+)", call)
    limits = partition_limits(partition[1]) if partition else None
    limit = f"; {limits.describe()}" if limits else ""
    return VaError(
        ExitCode.CLUSTER_CANNOT_RUN, f"Slurm refused the job of {what}: it asks for {asks}{limit}; {error}"
    )


def job_details(job_id: str) -> dict[str, str]:
    """What ``scontrol show job`` says of a job (while the cluster keeps it: ``MinJobAge``); {} when not."""
    out = _run(["scontrol", "--oneliner", "show", "job", job_id]) or ""
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def _cancelled_by(job_id: str) -> str:
    """Who cancelled a job, where accounting knows (``sacct``: ``CANCELLED by 1000``); "" otherwise."""
    out = _run(
        ["sacct", "--jobs", job_id, "--allocations", "--noheader", "--parsable2", "--format", "State"], 5
    )
    found = re.search(r"CANCELLED by (\d+)", out or "")
    if found is None:
        return ""
    with contextlib.suppress(KeyError):
        return f" by {pwd.getpwuid(int(found[1])).pw_name}"
    return f" by uid {found[1]}"


def _ending(job_id: str, state: str, what: str, again: str) -> VaError:
    job = job_details(job_id)
    name = f"Slurm job {job_id} ({what})"
    node = job.get("NodeList", "its node")
    ran = job.get("RunTime", "?")
    if state == "CANCELLED":
        by = _cancelled_by(job_id)
        line = f"{name} was cancelled{by} outside va (scancel) after {ran} of running; continue with {again}"
        return VaError(ExitCode.INTERRUPTED, line)
    if state == "TIMEOUT":
        limit = job.get("TimeLimit", "?")
        line = f"{name} reached its time limit of {limit} and was ended (TIMEOUT); give it a longer runtime"
        return VaError(ExitCode.CLUSTER_CANNOT_RUN, f"{line} (set-resources in the profile)")
    if state == "OUT_OF_MEMORY":
        memory = job.get("MinMemoryNode", "?")
        line = f"{name} ran out of its {memory} memory (OUT_OF_MEMORY); give it more mem_mb"
        return VaError(ExitCode.CLUSTER_CANNOT_RUN, f"{line} (set-resources in the profile)")
    if state in ("NODE_FAIL", "BOOT_FAIL", "PREEMPTED"):
        line = f"{name} ended when its node {node} was lost ({state}) after {ran}; continue with {again}"
        return VaError(ExitCode.INTERRUPTED, line)
    code = job.get("ExitCode", "?")
    reason = job.get("Reason", "None")
    detail = f", reason {reason}" if reason != "None" else ""
    return VaError(ExitCode.INTERNAL, f"{name} ended {state} (exit code {code} on {node}{detail})")


@dataclass(frozen=True)
class PartitionLimits:
    """What the largest node of a partition offers, and the partition's own limits."""

    name: str
    node_cpus: int
    node_memory_mb: int
    max_time: str
    state: str
    #: The nodes' generic resources (GPUs), as ``sinfo`` lists them; "" for none.
    gres: str = ""

    def describe(self) -> str:
        """The limits as a person reads them."""
        return (
            f"partition {self.name} ({self.state.lower()}) has nodes of at most {self.node_cpus} CPUs "
            f"and {self.node_memory_mb} MB, {'GPUs ' + self.gres if self.gres else 'no GPUs'}, "
            f"time limit {self.max_time}"
        )


def _run(argv: Sequence[str], timeout: float = _COMMAND_SECONDS) -> str | None:
    """A Slurm command's output; None where Slurm is not installed or does not answer (within ``timeout``
    seconds, or with an error)."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        # In a session of its own: a Ctrl-C at the terminal (to va's process group) does not cut a
        # scancel short; va itself gets the Ctrl-C and decides.
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


#: How long Slurm's controller may take to answer ``scontrol ping`` before it counts as not answering.
PING_SECONDS = 3.0


def controller_answers() -> bool | None:
    """Whether Slurm's controller answers ``scontrol ping`` within PING_SECONDS; None where Slurm's
    commands are not installed.

    Where they are and it does not answer, every Snakemake start that loads snakemake-executor-plugin-slurm
    waits for it: the plugin runs ``scontrol show config`` (10 s timeout) when it loads. A run on the local
    executor does not load it (va/snakemake_local.py)."""
    if shutil.which("scontrol") is None:
        return None
    out = _run(["scontrol", "ping"], timeout=PING_SECONDS)
    return out is not None and " is UP" in out


def our_jobs(workdir: Path) -> list[ClusterJob]:
    """Our jobs still in the queue (pending, running, completing) whose working directory is ``workdir``."""
    out = _run(["squeue", "--me", "--noheader", "--format", _SQUEUE_FORMAT])
    if out is None:
        return []
    where = str(workdir.resolve())
    jobs = []
    for line in out.splitlines():
        fields = line.split("|")
        if len(fields) != 9:
            continue
        job_id, state, reason, comment, job_dir, partition, cpus, memory, limit = fields
        if job_dir != where or not comment.startswith(("rule_", "group_")):
            continue
        jobs.append(ClusterJob(job_id, state, reason, comment, partition, int(cpus or 0), memory, limit))
    return jobs


def cancel(jobs: Sequence[ClusterJob]) -> None:
    """Cancel ``jobs`` (``scancel``); a job that ended meanwhile is no error."""
    if jobs:
        _run(["scancel", *(job.job_id for job in jobs)])


def partition_limits(partition: str) -> PartitionLimits | None:
    """The limits of ``partition`` from ``sinfo`` (its nodes) and ``scontrol`` (the partition)."""
    nodes = _run(["sinfo", "--noheader", "--partition", partition, "--format", "%c|%m|%G"])
    shown = _run(["scontrol", "--oneliner", "show", "partition", partition])
    if not nodes or not shown:
        return None
    sizes = [line.split("|") for line in nodes.split() if line.count("|") == 2]
    fields = dict(field.split("=", 1) for field in shown.split() if "=" in field)
    gres = sorted({gres for _, _, gres in sizes if gres not in ("(null)", "")})
    return PartitionLimits(
        name=partition,
        node_cpus=max(int(re.sub(r"\D", "", cpus) or 0) for cpus, _, _ in sizes),
        node_memory_mb=max(int(re.sub(r"\D", "", memory) or 0) for _, memory, _ in sizes),
        max_time=fields.get("MaxTime", "UNLIMITED"),
        state=fields.get("State", "UP"),
        gres=",".join(gres),
    )


def memory_mb(memory: str) -> int:
    """``squeue``'s memory (``500M``, ``16G``, ``1T``) in MB."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", memory.strip())
    if match is None:
        return 0
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[match[2]]
    return int(int(match[1]) * scale)


def beyond(job: ClusterJob, limits: PartitionLimits) -> bool:
    """Whether ``job`` asks for more than the largest node of its partition has."""
    return job.cpus > limits.node_cpus or memory_mb(job.memory) > limits.node_memory_mb


class NeverRunsWatch:
    """Watches our pending jobs in ``workdir``; one the cluster can never start is cancelled and reported.

    Never-runs is what Slurm says (a reason of ``NEVER_RUNS``, or one of ``NOT_NOW`` for
    ``NOT_NOW_SECONDS``) or a request beyond the largest node of the partition. ``report(job, line)``
    gets one line naming the job, its request and the partition's limits, after the job is cancelled.
    """

    def __init__(
        self,
        workdir: Path,
        report: Callable[[ClusterJob, str], None],
        *,
        poll_seconds: float = 5.0,
        not_now_seconds: float = NOT_NOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workdir = workdir
        self.clock = clock
        self.report = report
        self.poll_seconds = poll_seconds
        self.not_now_seconds = not_now_seconds
        self._stop = threading.Event()
        self._waiting_since: dict[str, float] = {}
        self._reported: set[str] = set()
        self._limits: dict[str, PartitionLimits | None] = {}
        self._thread = threading.Thread(target=self._watch, name="va-slurm-watch", daemon=True)

    def start(self) -> None:
        """Start watching (a daemon thread)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()

    def check(self) -> list[ClusterJob]:
        """One look at the queue: cancel and report every pending job that can never start."""
        found = []
        for job in our_jobs(self.workdir):
            if not job.pending or job.job_id in self._reported:
                continue
            if job.partition not in self._limits:
                self._limits[job.partition] = partition_limits(job.partition)
            limits = self._limits[job.partition]
            if not self._never_runs(job, limits):
                continue
            self._reported.add(job.job_id)
            cancel([job])
            limit = limits.describe() if limits else f"partition {job.partition}"
            line = (
                f"Slurm job {job.job_id} ({job.what}) can never start: it asks for {job.request}; "
                f"{limit} (squeue reason: {job.reason}); cancelled"
            )
            self.report(job, line)
            found.append(job)
        return found

    def _never_runs(self, job: ClusterJob, limits: PartitionLimits | None) -> bool:
        if job.reason in NEVER_RUNS or (limits is not None and beyond(job, limits)):
            return True
        if job.reason in NOT_NOW:
            since = self._waiting_since.setdefault(job.job_id, self.clock())
            return self.clock() - since >= self.not_now_seconds
        self._waiting_since.pop(job.job_id, None)
        return False


def settle_leftovers(
    workdir: Path, say: Callable[[str], None], *, poll_seconds: float = 2.0
) -> list[ClusterJob]:
    """Before a graph submits in ``workdir``: our jobs an earlier run left in the queue (its Snakemake was
    killed) are dealt with, so no rule runs twice. Pending ones are cancelled (they ran nothing; the new
    graph submits them again with today's settings); running ones are waited for, since their outputs
    are what the new graph would make again. Either way nothing is built until every one has left the
    queue (a cancelled job that had just started ends its processes first). Returns the jobs found.

    A stop while waiting (Ctrl-C, or what the caller raises on SIGTERM) cancels the running ones too, says
    so, and goes on up: whoever stops the command wants the folder's work stopped, not left running."""
    left = our_jobs(workdir)
    if not left:
        return []
    pending = [job for job in left if job.pending]
    running = [job for job in left if not job.pending]
    if pending:
        cancel(pending)
        ids = ", ".join(job.job_id for job in pending)
        say(f"va: cancelled {slurm_jobs(len(pending))} an earlier run left pending in {workdir}: {ids}")
    if running:
        ids = ", ".join(job.job_id for job in running)
        say(f"va: waiting for {slurm_jobs(len(running))} an earlier run left running in {workdir}: {ids}")
    wanted = {job.job_id for job in left}
    try:
        while any(job.job_id in wanted for job in our_jobs(workdir)):
            time.sleep(poll_seconds)
    except BaseException:  # any stop, however the caller turns a signal into an exception
        if running:
            with _stops_held():  # a second Ctrl-C must not cut the cancel (or its line) short
                cancel(running)
                ids = ", ".join(job.job_id for job in running)
                say(
                    f"va: stopped: cancelled {the_slurm_jobs(len(running))} it waited for in {workdir}: {ids}"
                )
        raise
    return left


def slurm_jobs(count: int) -> str:
    """``1 Slurm job``, ``3 Slurm jobs``."""
    return f"{count} Slurm job" if count == 1 else f"{count} Slurm jobs"


def the_slurm_jobs(count: int) -> str:
    """``the Slurm job``, ``the 3 Slurm jobs``."""
    return "the Slurm job" if count == 1 else f"the {slurm_jobs(count)}"


@contextlib.contextmanager
def _stops_held() -> Iterator[None]:
    """Let SIGINT and SIGTERM change nothing until the block ends (the caller is stopping already).

    Python runs a signal's handler in the main thread whichever thread the kernel gave the signal to, so
    a blocked signal mask does not hold a stop back in a process with other threads: the handlers are
    swapped for ones that do nothing instead, and put back after. Only the main thread can do that; in
    another thread the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        stop: signal.signal(stop, lambda signum, frame: None) for stop in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
