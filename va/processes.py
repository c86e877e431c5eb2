"""The processes of a run: each named by its pid and start time, found as a tree, ended for certain, and
recorded per workdir so that a later run ends whatever an earlier one left behind (docs/PROCESSES.md).

Linux only, as the rest of the process handling (``/proc``, ``prctl``, pidfds).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from va.atomic import read_json, write_json_atomic

PROC = Path("/proc")
#: How long a killed process may take to disappear (it may be in an uninterruptible wait).
KILL_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.05
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class _Stat:
    """What one read of ``/proc/<pid>/stat`` says about a process."""

    state: str
    ppid: int
    pgrp: int
    start: int


def _stat(pid: int) -> _Stat | None:
    try:
        text = (PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = text[text.rindex(")") + 2 :].split()
    return _Stat(state=fields[0], ppid=int(fields[1]), pgrp=int(fields[2]), start=int(fields[19]))


def _running(stat: _Stat | None) -> bool:
    # A zombie has ended; only its parent's wait is due.
    return stat is not None and stat.state not in ("Z", "X")


@dataclass(frozen=True, order=True)
class ProcessId:
    """One process for ever: a pid is reused, a pid with its start time (clock ticks after boot, field
    22 of ``/proc/<pid>/stat``) never is."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        """The process that has ``pid`` now, or None when there is none."""
        stat = _stat(pid)
        return cls(pid, stat.start) if _running(stat) and stat is not None else None

    def alive(self) -> bool:
        """Whether this very process still runs (not another one that got its pid)."""
        stat = _stat(self.pid)
        return _running(stat) and stat is not None and stat.start == self.start

    def send(self, signum: int) -> bool:
        """Send ``signum`` to this process if it still runs; never to a process that reuses its pid.

        The pidfd pins the process that has the pid when it is opened; the start time read after that
        proves it is this one, so the signal cannot reach another.
        """
        try:
            fd = os.pidfd_open(self.pid)
        except OSError:
            return False
        try:
            if not self.alive():
                return False
            signal.pidfd_send_signal(fd, signum)
            return True
        except (ProcessLookupError, PermissionError):
            return False
        finally:
            os.close(fd)


def _table() -> dict[int, _Stat]:
    table = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = stat
    return table


def descendants(pid: int) -> list[ProcessId]:
    """Every running process below ``pid``: its children, their children, and so on."""
    table = _table()
    children: dict[int, list[int]] = {}
    for child, stat in table.items():
        children.setdefault(stat.ppid, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        todo.extend(children.get(child, []))
        if _running(table[child]):
            found.append(ProcessId(child, table[child].start))
    return found


def group_members(pgid: int) -> list[ProcessId]:
    """Every running process of the group ``pgid`` (a group's id is not reused while it has members)."""
    table = _table()
    return [ProcessId(pid, stat.start) for pid, stat in table.items() if stat.pgrp == pgid and _running(stat)]


def tree(process: ProcessId) -> list[ProcessId]:
    """``process`` and everything below it, if it still runs."""
    return [process, *descendants(process.pid)] if process.alive() else []


#: ``python -m ...``: Snakemake's own main, and va's for a run on the local executor (va/snakemake_local.py).
SNAKEMAKE_MODULES = (["-m", "snakemake"], ["-m", "va.snakemake_local"])


def _runs_snakemake(argv: list[str]) -> bool:
    """Whether a command line is Snakemake's main process (``snakemake ...``, ``python -m snakemake`` or
    ``python -m va.snakemake_local``); a rule's script (``.snakemake/scripts/...``) or a command that only
    names it later is not."""
    if not argv:
        return False
    if Path(argv[0]).name == "snakemake":
        return True
    if not Path(argv[0]).name.startswith("python") or len(argv) < 2:
        return False
    return argv[1:3] in SNAKEMAKE_MODULES or Path(argv[1]).name == "snakemake"


def _runs_a_job(argv: list[str]) -> bool:
    """Whether a Snakemake command line runs one job of another Snakemake's graph (``--mode remote`` on a
    cluster node, ``--mode subprocess`` for a local group), not a graph of its own."""
    modes = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--mode"]
    return any(mode != "default" for mode in modes)


def snakemake_in(*directories: Path) -> dict[Path, list[ProcessId]]:
    """The live Snakemake processes driving a graph in each of ``directories`` (their working directory,
    which ``--directory`` sets), this process's excepted; a Snakemake that runs one cluster job there (on
    a node that is also this host) is not one. Processes of other users that cannot be read are not seen.

    One look at the process table for all the places, and of each process only its command line unless
    it is a Snakemake's (a machine runs hundreds of processes, and a ``va`` start looks twice)."""
    places = {directory.resolve(): directory for directory in directories}
    found: dict[Path, list[ProcessId]] = {directory: [] for directory in directories}
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if not _runs_snakemake(argv) or _runs_a_job(argv):
                continue
            place = places.get(Path(os.readlink(entry / "cwd")))
        except OSError:
            continue
        stat = _stat(int(entry.name))
        if place is not None and _running(stat) and stat is not None:
            found[place].append(ProcessId(int(entry.name), stat.start))
    return found


def wait_gone(processes: Iterable[ProcessId], seconds: float) -> list[ProcessId]:
    """Wait up to ``seconds`` for ``processes`` to end; returns those still running."""
    pending = [p for p in processes if p.alive()]
    deadline = time.monotonic() + seconds
    while pending and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        pending = [p for p in pending if p.alive()]
    return pending


def end_processes(
    processes: Iterable[ProcessId], grace: float, first: int = signal.SIGTERM
) -> list[ProcessId]:
    """Ask ``processes`` to stop with ``first``, give them ``grace`` seconds, then SIGKILL what is left.

    Returns the processes that were still running and were signalled; they are gone when it returns
    (up to ``KILL_WAIT_SECONDS`` more for a process stuck in the kernel).
    """
    signalled = sorted({p for p in processes if p.send(first)})
    stubborn = wait_gone(signalled, grace)
    for process in stubborn:
        process.send(signal.SIGKILL)
    wait_gone(stubborn, KILL_WAIT_SECONDS)
    return signalled


def die_with_parent(signum: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``signum`` when the process that starts it dies."""
    import ctypes  # noqa: PLC0415 - only a process that starts a server or a tool's tree needs it

    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:  # the parent died before the request was in place
            os.kill(os.getpid(), signum)

    return arm


def become_subreaper() -> None:
    """Orphans below this process become its children (not init's), so none leaves its tree."""
    import ctypes  # noqa: PLC0415 - see die_with_parent

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)


@dataclass(frozen=True)
class ProcessRecord:
    """The live processes of a workdir's run (``logs/processes.json``), written while it runs."""

    path: Path

    def write(self, processes: Iterable[ProcessId]) -> None:
        entries = [{"pid": p.pid, "start": p.start} for p in sorted(set(processes))]
        write_json_atomic(self.path, {"processes": entries})

    def read(self) -> list[ProcessId]:
        """The recorded processes; an unreadable record names none (nothing is signalled on a guess)."""
        try:
            return [ProcessId(int(e["pid"]), int(e["start"])) for e in read_json(self.path)["processes"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def end_leftovers(record: ProcessRecord, grace: float = 10.0) -> list[ProcessId]:
    """End the processes an earlier run recorded that still run, and everything below them; returns them.

    Called with the workdir's lock held, so their ``va`` is gone: nobody watches them any more.
    SIGINT first, the way Snakemake cancels what it submitted to a cluster.
    """
    found = {process for recorded in record.read() for process in tree(recorded)}
    ended = end_processes(found, grace, first=signal.SIGINT)
    record.clear()
    return ended
