"""A ComfyUI that the stage starts for itself (on a compute node of a cluster), and stops at its end.

The declared start (``va.comfyui.pool.ServerStart``) is run with ``{port}`` replaced by a free port of
this node, in a process group of its own that gets SIGTERM when the stage's process dies; the stage
waits until ``/system_stats`` (or ``/health``) answers, uses it as its pool, and at its end, however it
ends, stops the group and every process below the server (SIGTERM, ``stop_seconds``, SIGKILL), so no
process outlives the job (docs/PROCESSES.md).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from va.comfyui.health import check_health
from va.comfyui.pool import PoolServer, PoolSettings, ServerPool, ServerStart
from va.errors import ExitCode, VaError
from va.processes import ProcessId, descendants, die_with_parent, end_processes, group_members
from va.textlog import last_lines
from va.tracking import record
from va.workdir import Workdir

#: The environment variable Slurm sets in every job: the stage runs as a cluster job.
CLUSTER_JOB_VARIABLE = "SLURM_JOB_ID"


def free_port() -> int:
    """A TCP port of this node nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def applies(start: ServerStart | None) -> bool:
    """Whether the stage starts its own server: a start is declared, and it is a profile's, or the stage
    runs as a cluster job."""
    return start is not None and (not start.cluster_only or CLUSTER_JOB_VARIABLE in os.environ)


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """End the server's group and every process below it: SIGTERM, ``grace`` seconds, SIGKILL."""
    leader = ProcessId.of(process.pid)
    members = group_members(process.pid) + descendants(process.pid)
    end_processes([*([leader] if leader else []), *members], grace)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1)


def _wait_healthy(
    process: subprocess.Popen[bytes], url: str, start: ServerStart, log_file: Path
) -> str | None:
    """Wait until the server answers; its ``comfyui_version``. A server that exits or does not answer in
    time is ``COMFYUI_UNAVAILABLE`` with the end of its output."""
    deadline = time.monotonic() + start.start_timeout_seconds
    while True:
        if process.poll() is not None:
            raise VaError(
                ExitCode.COMFYUI_UNAVAILABLE,
                f"the ComfyUI this job started exited with {process.returncode} before it answered: "
                f"{last_lines(log_file) or 'no output'}",
            )
        health = check_health(url, timeout=1)
        if health.ok:
            return health.version
        if time.monotonic() > deadline:
            raise VaError(
                ExitCode.COMFYUI_UNAVAILABLE,
                f"the ComfyUI this job started did not answer within {start.start_timeout_seconds:g} s: "
                f"{last_lines(log_file) or 'no output'}",
            )
        time.sleep(0.25)


@contextlib.contextmanager
def started_server(start: ServerStart, workdir: Workdir, log_file: Path) -> Iterator[str]:
    """Start the declared server on a free port, wait until it answers, record how long that took
    (event ``comfyui_server_started``), and yield its URL; stopped when the block ends."""
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in start.command]
    url = f"http://127.0.0.1:{port}"
    cwd = Path(start.cwd).expanduser() if start.cwd else None
    log_file.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with open(log_file, "ab") as output:
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # one thread: the stage starts its server before any download thread
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509
            )
        except OSError as exc:
            raise VaError(
                ExitCode.COMFYUI_UNAVAILABLE, f"cannot start ComfyUI ({shlex.join(argv)}): {exc.strerror}"
            ) from exc
    try:
        version = _wait_healthy(process, url, start, log_file)
        seconds = round(time.monotonic() - began, 2)
        record(
            workdir,
            "comfyui",
            "info",
            f"ComfyUI started at {url} in {seconds:g} s (pid {process.pid})",
            kind="comfyui_server_started",
            url=url,
            seconds=seconds,
            comfyui_version=version,
            host=socket.gethostname(),
            pid=process.pid,
        )
        yield url
    finally:
        _stop(process, start.stop_seconds)


@contextlib.contextmanager
def own_server(
    settings: PoolSettings, workdir: Workdir, logs: Path
) -> Iterator[tuple[PoolSettings, ServerPool | None]]:
    """The pool the stage uses: ``settings`` as they are, or, when a start applies, the one server it
    starts (with slots of its own, private to this job: another node's server may have the same URL)."""
    if settings.start is None or not applies(settings.start):
        yield settings, None
        return
    with (
        started_server(settings.start, workdir, logs.parent / "server.log") as url,
        tempfile.TemporaryDirectory(prefix="va-comfyui-pool-") as folder,
    ):
        servers = (PoolServer(url, 1),)
        yield PoolSettings(servers), ServerPool(servers, Path(folder))
