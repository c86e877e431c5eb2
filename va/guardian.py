"""The guardian of a run: the process between ``va`` and Snakemake that ends everything the run started.

``va`` starts it in a session of its own, so Ctrl-C at a terminal or a SIGKILL of va's process group
reaches only ``va``, which then asks the guardian to stop; when ``va`` dies the kernel asks (the
guardian gets SIGTERM on its parent's death). It is a child subreaper, so no process of the run leaves
its tree, and keeps the workdir's record of the run's processes up to date (docs/PROCESSES.md).

Usage: ``python -m va.guardian --record FILE [--workdir DIR] -- SNAKEMAKE-ARGV...``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from va.errors import ExitCode, VaError
from va.processes import (
    ProcessId,
    ProcessRecord,
    become_subreaper,
    descendants,
    die_with_parent,
    end_processes,
    tree,
)
from va.workdir import Workdir

#: After the stop, how long the rule scripts, ffmpeg and the providers have before SIGKILL.
RULE_GRACE_SECONDS = 5.0
#: How long Snakemake has to cancel what it submitted (Slurm jobs) before SIGKILL.
SNAKEMAKE_GRACE_SECONDS = 30.0
#: The exit status of a stopped run, as va's own (ExitCode.INTERRUPTED).
STOPPED = 130
_POLL_SECONDS = 0.2
#: How often the record of the run's processes is brought up to date.
_RECORD_SECONDS = 1.0


class Guardian:
    """Runs one command (Snakemake) and owns every process below it."""

    def __init__(self, argv: Sequence[str], record: ProcessRecord, workdir: Path | None) -> None:
        self.argv = list(argv)
        self.record = record
        self.workdir = workdir
        self.stop_requested = False

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True

    def run(self) -> int:
        """Run the command to its end, or stop it and everything below it; returns its exit status."""
        become_subreaper()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._request_stop)
        me = ProcessId.of(os.getpid())
        # If the guardian itself is killed, Snakemake gets SIGINT: it cancels its cluster jobs.
        arm = die_with_parent(signal.SIGINT)
        child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, preexec_fn=arm)  # noqa: PLW1509 - one thread
        snakemake = ProcessId.of(child.pid)
        recorded: set[ProcessId] = set()
        stopped_at: float | None = None
        first_asked: list[ProcessId] = []
        next_scan = 0.0
        while child.returncode is None:
            if self.stop_requested and stopped_at is None:
                stopped_at = time.monotonic()
                first_asked = self._ask_to_stop(snakemake)
            if stopped_at is not None:
                self._escalate(stopped_at, snakemake, first_asked)
            if time.monotonic() >= next_scan:  # a scan of /proc costs a few ms: once a second
                next_scan = time.monotonic() + _RECORD_SECONDS
                running = {p for p in (me, *descendants(os.getpid())) if p is not None}
                if running != recorded and self._write_record(running):
                    recorded = running
            self._reap(child)
            if child.returncode is None:
                time.sleep(_POLL_SECONDS)
        # Whatever the command left behind (a background process of a rule) ends with it.
        end_processes(descendants(os.getpid()), RULE_GRACE_SECONDS)
        self._reap(child)
        self.record.clear()
        if stopped_at is not None and child.returncode != 0:
            self._record_interrupted()
            return STOPPED
        return child.returncode

    def _write_record(self, running: set[ProcessId]) -> bool:
        """Write the record of the run's processes; a full disk leaves the previous one (tried again at
        the next scan): the guardian must live on to end the run's processes, whatever the disk says."""
        try:
            self.record.write(running)
        except OSError as exc:
            with contextlib.suppress(OSError):  # its stderr is Snakemake's log, on the same disk
                print(f"va: guardian: could not write {self.record.path}: {exc.strerror}", file=sys.stderr)
            return False
        return True

    def _ask_to_stop(self, snakemake: ProcessId | None) -> list[ProcessId]:
        """SIGINT to Snakemake (it then cancels its cluster jobs) and to every process below it."""
        below = [p for p in descendants(os.getpid()) if p != snakemake]
        if snakemake is not None:
            snakemake.send(signal.SIGINT)
        for process in below:
            process.send(signal.SIGINT)
        return below

    def _escalate(self, stopped_at: float, snakemake: ProcessId | None, first_asked: list[ProcessId]) -> None:
        waited = time.monotonic() - stopped_at
        if waited > RULE_GRACE_SECONDS:
            # Only what was running at the stop, and what it started: new children of Snakemake are its
            # cancelling (scancel) and get until Snakemake's own deadline.
            for process in {p for asked in first_asked for p in tree(asked)}:
                process.send(signal.SIGKILL)
        if waited > SNAKEMAKE_GRACE_SECONDS and snakemake is not None:
            snakemake.send(signal.SIGKILL)

    @staticmethod
    def _reap(child: subprocess.Popen[bytes]) -> None:
        """Collect every ended child (orphans of the run become ours); the command's status is kept."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == child.pid:
                child.returncode = os.waitstatus_to_exitcode(status)

    def _record_interrupted(self) -> None:
        """The run ended because it was stopped, whatever its rules made of the signals."""
        if self.workdir is None:
            return
        # Imported here: the guardian starts before every run, and tracking (the graph, the schemas)
        # takes a tenth of a second to import that only a stopped run needs.
        from va.tracking import existing_run_id, record_run_finished  # noqa: PLC0415

        workdir = Workdir(self.workdir)
        if existing_run_id(workdir):
            error = VaError(ExitCode.INTERRUPTED, "run interrupted by a signal; continue with --resume")
            record_run_finished(workdir, error)


def guardian_argv(argv: Sequence[str], record: Path, workdir: Path | None) -> list[str]:
    """The command line that runs ``argv`` under a guardian keeping ``record``."""
    command = [sys.executable, "-m", "va.guardian", "--record", str(record)]
    return [*command, *(["--workdir", str(workdir)] if workdir else []), "--", *argv]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m va.guardian``."""
    parser = argparse.ArgumentParser(prog="python -m va.guardian")
    parser.add_argument("--record", type=Path, required=True, help="the workdir's record of live processes")
    parser.add_argument("--workdir", type=Path, help="the run's workdir, to record a stop in its manifest")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    return Guardian(command, ProcessRecord(args.record), args.workdir).run()


if __name__ == "__main__":
    raise SystemExit(main())
