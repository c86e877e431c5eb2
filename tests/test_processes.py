"""va/processes.py and va/guardian.py with real process trees (no Snakemake): a pid is only signalled
with its start time, a tree is ended even where a member ignores SIGTERM or left its process group,
the record lets a later run end an earlier one's leftovers, and the guardian ends its whole tree when it
is stopped, when its parent dies and when its command ends. One whole ``va run`` stopped each way in turn
in its slow lip-sync tool, each attempt resuming the one before, is in the second half."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import MARKER, VA, CliRunner, Media, marked_processes, wait_no_process_marked
from tests.lipsync.fakes import command, providers_file
from va.errors import ExitCode
from va.events import read_events
from va.guardian import STOPPED, guardian_argv
from va.processes import (
    ProcessId,
    ProcessRecord,
    descendants,
    end_leftovers,
    end_processes,
    snakemake_in,
    tree,
)

#: A process that starts a worker in a session of its own (so a signal to its group misses it), prints
#: both pids and waits; with "stubborn" the worker ignores SIGTERM.
TREE = """
import subprocess, sys, time
stubborn = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if sys.argv[1:] else ""
worker = "import signal, time\\n" + stubborn + "time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", worker], start_new_session=True)
print(child.pid, flush=True)
time.sleep(600)
"""


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def marked_env(marker: str) -> dict[str, str]:
    return {**os.environ, MARKER: marker}


def start_tree(marker: str, *extra: str) -> tuple[subprocess.Popen[str], ProcessId, ProcessId]:
    """A running TREE: the process, its ProcessId and its worker's."""
    process = subprocess.Popen(
        [sys.executable, "-c", TREE, *extra], stdout=subprocess.PIPE, text=True, env=marked_env(marker)
    )
    assert process.stdout is not None
    worker = ProcessId.of(int(process.stdout.readline()))
    root = ProcessId.of(process.pid)
    assert root is not None and worker is not None
    return process, root, worker


def test_a_pid_is_signalled_only_with_its_start_time() -> None:
    marker = uuid.uuid4().hex
    process, root, worker = start_tree(marker)
    try:
        impostor = ProcessId(root.pid, root.start + 1)  # the same pid, as a reused one would be
        assert not impostor.alive()
        assert not impostor.send(signal.SIGKILL)
        assert root.alive() and process.poll() is None
        assert worker in descendants(root.pid)  # its own session does not take it out of the tree
    finally:
        end_processes(tree(root), grace=2)
        process.wait(timeout=10)
    assert not root.alive() and not worker.alive()
    assert not root.send(signal.SIGTERM)  # ended: nothing is signalled any more
    wait_no_process_marked(marker)


def test_the_snakemakes_driving_a_graph_are_found_by_their_folder(tmp_path: Path) -> None:
    """One look finds, for each folder asked, the Snakemake whose working directory it is; one that runs
    a single cluster job there (``--mode remote``) drives no graph and is left out."""
    driving, other, job = tmp_path / "run", tmp_path / "other", tmp_path / "job"
    for folder in (driving, other, job):
        folder.mkdir()
    wait = "import time; time.sleep(60)"
    started = [
        subprocess.Popen(["bash", "-c", f"exec -a snakemake {sys.executable} -c '{wait}' {extra}"], cwd=cwd)
        for cwd, extra in ((driving, "--cores 2"), (job, "--mode remote"))
    ]
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            not command_line(process.pid).startswith("snakemake ") for process in started
        ):
            time.sleep(0.05)
        found = snakemake_in(driving, other, job, tmp_path)
        assert found == {driving: [ProcessId.of(started[0].pid)], other: [], job: [], tmp_path: []}
    finally:
        for process in started:
            process.kill()
            process.wait()


def test_ending_a_tree_kills_what_ignores_sigterm() -> None:
    marker = uuid.uuid4().hex
    process, root, worker = start_tree(marker, "stubborn")
    ended = end_processes(tree(root), grace=0.5)
    process.wait(timeout=10)
    assert set(ended) == {root, worker}
    wait_no_process_marked(marker, seconds=2)


def test_a_later_run_ends_the_recorded_leftovers_of_an_earlier_one(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    process, root, worker = start_tree(marker)
    record = ProcessRecord(tmp_path / "logs" / "processes.json")
    gone = ProcessId(root.pid, root.start - 1)  # an entry whose pid now names another process
    record.write([root, gone])
    ended = end_leftovers(record, grace=2)
    process.wait(timeout=10)
    assert set(ended) == {root, worker}  # the worker was not recorded: it is found below its parent
    assert not record.path.exists()
    wait_no_process_marked(marker, seconds=2)
    assert end_leftovers(record) == []  # no record: nothing to do


def test_an_unreadable_record_signals_nothing(tmp_path: Path) -> None:
    record = ProcessRecord(tmp_path / "processes.json")
    record.path.write_text("{not json")
    assert record.read() == []


def guarded(tmp_path: Path, marker: str, script: str) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """``script`` run under a guardian, as ``va`` starts Snakemake."""
    record = ProcessRecord(tmp_path / "processes.json")
    argv = guardian_argv([sys.executable, "-c", script], record.path, None)
    process = subprocess.Popen(argv, env=marked_env(marker), start_new_session=True)
    return process, record


def recorded_tree(record: ProcessRecord, size: int, process: subprocess.Popen[bytes]) -> list[ProcessId]:
    """Until the guardian's record names ``size`` processes (itself included)."""
    deadline = time.monotonic() + 30
    while len(entries := record.read()) < size:
        assert process.poll() is None and time.monotonic() < deadline, "the guardian recorded no tree"
        time.sleep(0.05)
    return entries


def test_a_stopped_guardian_ends_its_whole_tree(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    process, record = guarded(tmp_path, marker, TREE)
    entries = recorded_tree(record, 3, process)  # guardian, the command, its worker
    assert process.pid in {e.pid for e in entries}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == STOPPED
    wait_no_process_marked(marker, seconds=2)
    assert not record.path.exists()


def test_a_guardian_ends_its_tree_when_its_parent_dies(tmp_path: Path) -> None:
    """SIGKILL of ``va``: the kernel tells the guardian (it is in a session of its own, so a SIGKILL of
    va's process group does not reach it either)."""
    marker = uuid.uuid4().hex
    record = ProcessRecord(tmp_path / "processes.json")
    argv = guardian_argv([sys.executable, "-c", TREE], record.path, None)
    parent_script = (
        "import signal, subprocess, sys, time\n"
        "from va.processes import die_with_parent\n"
        f"subprocess.Popen({argv!r}, start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_script], env=marked_env(marker))
    recorded_tree(record, 3, parent)
    parent.kill()
    parent.wait()
    wait_no_process_marked(marker, seconds=10)
    assert not record.path.exists()


def test_what_a_command_leaves_behind_ends_with_it(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    script = (
        "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])"
    )
    process, record = guarded(tmp_path, marker, script)
    assert process.wait(timeout=20) == 0  # the command's own status
    wait_no_process_marked(marker, seconds=2)
    assert not record.path.exists()


# --- whole runs: one workdir stopped each way in turn, with a lip-sync tool that hangs (and has a worker) ---


def hanging_run(files: Media, marker: str, *extra: str) -> tuple[subprocess.Popen[str], Path, Path]:
    """A ``va run`` (with ``extra`` options) of the job in ``files`` whose lip-sync tool hangs, started in
    a session of its own; returns it once the tool (and its worker) run, with its workdir and the tool's
    dump."""
    dump = files.root / "told.json"
    dump.unlink(missing_ok=True)  # an earlier attempt's
    env = {
        **os.environ,
        MARKER: marker,
        **providers_file(files.root, fake=command("hang", "--dump", str(dump))),
    }
    job = files.root / "job.json"
    if not job.exists():
        files.job(lipsync={"enable": True, "provider": "fake"})
    workdir = files.root / "w"
    process = subprocess.Popen(
        [*VA, "run", str(job), "--workdir", str(workdir), "--cores", "1", "-q", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while not (dump.exists() and "worker" in dump.read_text()):
        assert process.poll() is None, f"the run ended before its tool ran: {process.communicate()[1]}"
        assert time.monotonic() < deadline, "the tool did not start"
        time.sleep(0.05)
    assert len(marked_processes(marker)) >= 5  # va, guardian, snakemake, the rule, the tool, its worker
    return process, workdir, dump


@pytest.mark.whole_run
def test_a_run_stopped_each_way_leaves_no_process_and_resumes(files: Media, va_cli: CliRunner) -> None:
    """One workdir, its run stopped in the lip-sync tool three ways in turn, each attempt resuming the one
    before (one run a way cost a whole run each): SIGTERM of ``va`` (as VIDAX's cancel sends it; Ctrl-C
    takes the same way, tests/test_resume.py); SIGKILL of the ``va`` process alone (and so of its process
    group: the run is in another); the guardian killed with ``va`` (nothing left to stop the run), after
    which the resumed run ends the recorded leftovers (the rule, the tool, its worker) before it starts,
    then finishes with a tool that works."""
    marker = uuid.uuid4().hex

    # SIGTERM of va.
    process, workdir, _ = hanging_run(files, marker)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "--resume" in err and "Traceback" not in err
    wait_no_process_marked(marker, seconds=5)
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["run_status"] == "interrupted"
    assert not (workdir / "logs" / "processes.json").exists()

    # SIGKILL of the va process alone.
    process, workdir, _ = hanging_run(files, marker, "--resume")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wait_no_process_marked(marker, seconds=10)
    status = va_cli("status", workdir, "--json")
    assert json.loads(status.out)["run_status"] == "interrupted"
    events = [e["kind"] for e in read_events(workdir / "logs" / "events.jsonl")]
    assert events[-1] == "run_finished"

    # The guardian killed with va.
    process, workdir, dump = hanging_run(files, marker, "--resume")
    guardian = next(p for p in descendants(process.pid) if "va.guardian" in command_line(p.pid))
    guardian.send(signal.SIGSTOP)  # so that it cannot act on va's death before it is killed itself
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    guardian.send(signal.SIGKILL)
    tool = ProcessId.of(json.loads(dump.read_text())["pid"])
    assert tool is not None and tool.alive()  # left running: nobody watches it now
    working = providers_file(files.root, fake=command("ok"))
    resumed = va_cli("run", workdir / ".." / "job.json", "--workdir", workdir, "--resume", "-q", env=working)
    assert resumed.code == 0, resumed.err
    assert not tool.alive()
    assert "left running by an earlier run" in (workdir / "logs" / "snakemake.log").read_text()
    wait_no_process_marked(marker, seconds=5)
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["run_status"] == "succeeded" and manifest["attempts"] == 4


def test_a_guardian_whose_record_cannot_be_written_still_waits_for_its_command(tmp_path: Path) -> None:
    """A full disk under the workdir: the record of the run's processes cannot be written. The guardian
    lives on (an ended guardian let ``va`` return while Snakemake still ran) and ends with its command."""
    marker = uuid.uuid4().hex
    record = ProcessRecord(tmp_path / "processes.json")
    script = (
        "import errno, os, sys\n"
        "from va import guardian\n"
        "from va.processes import ProcessRecord\n"
        "def full(self, processes):\n"
        "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))\n"
        "ProcessRecord.write = full\n"
        f"sys.exit(guardian.main(['--record', {str(record.path)!r}, '--', sys.executable, '-c', "
        "'import time; time.sleep(1.5)']))\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", script],
        env=marked_env(marker),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert f"va: guardian: could not write {record.path}: No space left on device" in process.stderr
    wait_no_process_marked(marker, seconds=2)
