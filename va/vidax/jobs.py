"""Jobs of the API: created in ``runs_root/<id>/``, queued, run as separate ``va run`` processes.

Each job's record is ``runs_root/<id>/vidax-job.json`` (atomic writes), so the queue survives a restart.
At most ``max_parallel_runs`` run at once. A run is a child process that gets SIGTERM when the server
dies (and then records itself as interrupted); the workdir lock of ``va run`` makes a second process on
the same job impossible. A run stops (as interrupted) when the server that started it is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from va.atomic import read_json, write_json_atomic, write_text_atomic
from va.events import utc_now
from va.manifest import TERMINAL, build_manifest, process_alive
from va.runner import SUPERVISOR_ENV
from va.vidax.errors import ApiError
from va.workdir import Workdir

log = logging.getLogger(__name__)
RECORD = "vidax-job.json"
FINISHED = frozenset({"succeeded", "failed", "interrupted", "cancelled"})


@dataclass
class JobRecord:
    """What the server knows of one job, beyond what its manifest says."""

    id: str
    workdir: str
    status: str = "created"  # created | queued | running | succeeded | failed | interrupted | cancelled
    created_at: str = field(default_factory=utc_now)
    queued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    pid: int | None = None
    resume: bool = False
    cancel_requested: bool = False
    exit_code: int | None = None
    message: str | None = None

    @property
    def job_file(self) -> Path:
        return Path(self.workdir) / "job.json"


class JobStore:
    """The records on disk, and the scheduler that starts queued jobs."""

    def __init__(self, runs_root: Path, max_parallel: int) -> None:
        self.root = runs_root
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_parallel = max_parallel
        self.lock = threading.RLock()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- records ---------------------------------------------------------------------------------

    def _path(self, job_id: str) -> Path:
        return self.root / job_id / RECORD

    def save(self, record: JobRecord) -> None:
        write_json_atomic(self._path(record.id), asdict(record))

    def get(self, job_id: str) -> JobRecord:
        path = self._path(job_id)
        if "/" in job_id or job_id.startswith(".") or not path.is_file():
            raise ApiError(404, "NOT_FOUND", f"no job {job_id!r}")
        return JobRecord(**read_json(path))

    def all(self) -> list[JobRecord]:
        records = [JobRecord(**read_json(p)) for p in self.root.glob(f"*/{RECORD}")]
        return sorted(records, key=lambda r: r.created_at)

    def create(self, document: dict[str, Any]) -> JobRecord:
        """A new job folder with ``job.json``; the id is the server's."""
        job_id = f"job-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        workdir = self.root / job_id
        workdir.mkdir(parents=True)
        record = JobRecord(job_id, str(workdir))
        write_text_atomic(record.job_file, json.dumps(document, indent=2) + "\n")
        self.save(record)
        return record

    def enqueue(self, job_id: str, *, resume: bool) -> JobRecord:
        """Queue a job to run (or to continue from what exists, with ``resume``)."""
        with self.lock:
            record = self.refresh(self.get(job_id))
            if record.status in ("queued", "running"):
                raise ApiError(409, "CONFLICT", f"job {job_id} is already {record.status}")
            if resume and record.status not in ("failed", "interrupted", "cancelled"):
                raise ApiError(
                    409, "RESUME_NOT_POSSIBLE", f"job {job_id} is {record.status}; nothing to resume"
                )
            if not resume and record.status != "created":
                raise ApiError(
                    409, "CONFLICT", f"job {job_id} was already started ({record.status}); resume it"
                )
            # A job stopped before its run recorded anything has nothing to continue: it starts afresh.
            resume = resume and Workdir(Path(record.workdir)).manifest.exists()
            record.status, record.queued_at, record.resume = "queued", utc_now(), resume
            record.cancel_requested, record.exit_code, record.message = False, None, None
            record.started_at = record.ended_at = None
            self.save(record)
            return record

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job, or stop a running one (it records itself as interrupted)."""
        with self.lock:
            record = self.refresh(self.get(job_id))
            if record.status in FINISHED or record.status == "created":
                raise ApiError(409, "CONFLICT", f"job {job_id} is {record.status}; nothing to cancel")
            record.cancel_requested = True
            if record.status == "queued":
                record.status, record.ended_at = "cancelled", utc_now()
            elif record.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(record.pid, signal.SIGTERM)
            self.save(record)
            return record

    # --- running ---------------------------------------------------------------------------------

    def refresh(self, record: JobRecord) -> JobRecord:
        """Bring a running record up to date with its process and manifest."""
        if record.status != "running":
            return record
        process = self.processes.get(record.id)
        alive = process.poll() is None if process is not None else process_alive(record.pid, None)
        if alive:
            return record
        self.processes.pop(record.id, None)
        manifest = build_manifest(Workdir(Path(record.workdir)))
        status = manifest["run_status"] if manifest and manifest["run_status"] in TERMINAL else "interrupted"
        exit_status = (manifest or {}).get("exit_status") or {}
        record.status = "cancelled" if record.cancel_requested and status != "succeeded" else status
        record.exit_code = exit_status.get("code", process.returncode if process else None)
        record.message = exit_status.get("message") or self._runner_tail(record)
        record.ended_at, record.pid = utc_now(), None
        self.save(record)
        return record

    def _runner_tail(self, record: JobRecord) -> str | None:
        log_file = Path(record.workdir) / "logs" / "vidax-runner.log"
        if not log_file.exists():
            return None
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else None

    def _start(self, record: JobRecord) -> None:
        argv = [sys.executable, "-m", "va", "run", str(record.job_file), "--workdir", record.workdir, "-q"]
        if record.resume:
            argv.append("--resume")
        runner_log = Path(record.workdir) / "logs" / "vidax-runner.log"
        runner_log.parent.mkdir(parents=True, exist_ok=True)
        with open(runner_log, "ab") as output:
            process = subprocess.Popen(
                argv,
                stdout=output,
                stderr=output,
                start_new_session=True,
                env={**os.environ, SUPERVISOR_ENV: str(os.getpid())},
            )
        self.processes[record.id] = process
        record.status, record.pid, record.started_at = "running", process.pid, utc_now()
        self.save(record)
        log.info("started %s (pid %s)", record.id, process.pid)

    def tick(self) -> None:
        """One round of the scheduler: reap finished runs, start queued ones while there is room."""
        with self.lock:
            records = [self.refresh(r) for r in self.all()]
            running = sum(1 for r in records if r.status == "running")
            for record in sorted(
                (r for r in records if r.status == "queued"), key=lambda r: r.queued_at or ""
            ):
                if running >= self.max_parallel:
                    break
                self._start(record)
                running += 1

    def recover(self) -> None:
        """After a restart: runs whose process is gone are interrupted (resumable); the queue stays."""
        with self.lock:
            for record in self.all():
                if record.status == "running":
                    self.refresh(record)

    def start(self) -> None:
        """Run the scheduler in a background thread."""
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="vidax-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.tick()
            except Exception:  # the scheduler must outlive one bad record
                log.exception("scheduler round failed")

    def stop(self) -> None:
        """Stop the scheduler (running jobs keep running until the server process ends)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
