"""Jobs of the API: created in ``runs_root/<id>/``, queued, run as separate ``va run`` processes.

Each job's record is ``runs_root/<id>/vidax-job.json`` (atomic writes), so the queue survives a restart.
At most ``max_parallel_runs`` run at once. A run is a child process that gets SIGTERM when the server
dies (and then records itself as interrupted); the workdir lock of ``va run`` makes a second process on
the same job impossible. A run stops (as interrupted) when the server that started it is gone.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from va.atomic import read_json, write_json_atomic, write_text_atomic
from va.errors import ExitCode, VaError, place_unusable
from va.events import utc_now
from va.manifest import TERMINAL, build_manifest
from va.processes import ProcessId
from va.records import JsonObject
from va.retake import RetakePrepared, RetakeRequest, prepare_retake
from va.runner import SUPERVISOR_ENV
from va.state import refuse_file_in_the_way
from va.textlog import last_lines
from va.vidax.errors import ApiError
from va.vidax.intake import INPUT_FIELDS, take_input
from va.workdir import Workdir

log = logging.getLogger(__name__)
RECORD = "vidax-job.json"
#: The form of the ids the server makes; anything else names no job (and no path is built from it).
JOB_ID = re.compile(r"job-[0-9]{8}-[0-9]{6}-[0-9a-f]{8}")
FINISHED = frozenset({"succeeded", "failed", "interrupted", "cancelled", "error"})
CORRUPT = "vidax-job.corrupt.json"


JobStatus = Literal[
    "created", "queued", "running", "succeeded", "failed", "interrupted", "cancelled", "error"
]


class JobRecord(BaseModel):
    """What the server knows of one job, beyond what its manifest says."""

    model_config = ConfigDict(extra="forbid")

    id: str
    workdir: str
    #: ``error``: the record on disk was unreadable; it is kept aside and the job is never run.
    status: JobStatus = "created"
    created_at: str = Field(default_factory=utc_now)
    queued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    pid: int | None = None
    #: Field 22 of ``/proc/<pid>/stat`` when the run started: with ``pid`` it names that one process.
    pid_started: int | None = None
    resume: bool = False
    cancel_requested: bool = False
    exit_code: int | None = None
    message: str | None = None
    #: The input paths the job named; ``job.json`` names the workdir's copies once the run has taken them.
    submitted_inputs: dict[str, str] | None = None
    #: Where a signed completion webhook goes (allow-listed in vidax.json), if anywhere.
    webhook_url: str | None = None
    #: The client's ``Idempotency-Key`` and a digest of its request: the same key returns this job.
    idempotency_key: str | None = None
    request_digest: str | None = None

    @property
    def job_file(self) -> Path:
        return Path(self.workdir) / "job.json"


def first_problem(exc: Exception) -> str:
    """One line saying why a record could not be read."""
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "record"
        return f"{where}: {error['msg']}"
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _exit_code_of(process: subprocess.Popen[bytes] | None) -> int | None:
    """The exit code of a run's ``va`` that recorded none: a signal that ended it (before it could load
    and answer 130, as a cancel in its first instant does) is ``INTERRUPTED``, not the negative number."""
    if process is None:
        return None
    return int(ExitCode.INTERRUPTED) if process.returncode < 0 else process.returncode


#: How long a client told the queue is full should wait before asking again (``Retry-After``, seconds;
#: a run takes about this long to free a slot at the least).
QUEUE_RETRY_AFTER_SECONDS = 30


class JobStore:
    """The records on disk, and the scheduler that starts queued jobs."""

    def __init__(
        self,
        runs_root: Path,
        max_parallel: int,
        input_roots: tuple[Path, ...] = (),
        on_finished: Callable[[JobRecord], None] | None = None,
        max_queued: int | None = None,
    ) -> None:
        self.root = runs_root
        #: How many jobs may wait in the queue (``max_queued_jobs``); None: no limit.
        self.max_queued = max_queued
        refuse_file_in_the_way(self.root, "runs_root", "set runs_root or state_dir in vidax.json to a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in its way, a read-only disk, no permission: said at the start
            raise place_unusable(ExitCode.STATE_DIR_UNUSABLE, "runs_root", self.root, exc) from exc
        self.max_parallel = max_parallel
        self.input_roots = input_roots
        #: Told once of each job that has just ended (succeeded, failed, interrupted, cancelled).
        self.on_finished = on_finished
        self.lock = threading.RLock()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- records ---------------------------------------------------------------------------------

    def _path(self, job_id: str) -> Path:
        return self.root / job_id / RECORD

    def save(self, record: JobRecord) -> None:
        write_json_atomic(self._path(record.id), record.model_dump())

    def _load(self, job_id: str) -> JobRecord:
        """A job's record; one that cannot be read is kept aside (``vidax-job.corrupt.json``) and
        replaced by an ``error`` record, so one bad record never stops the others."""
        path = self._path(job_id)
        record_or_problem = self._read(path)
        if isinstance(record_or_problem, JobRecord):
            return record_or_problem
        with self.lock:
            # Another thread may have set it aside meanwhile: then its ``error`` record is read here.
            record_or_problem = self._read(path)
            if isinstance(record_or_problem, JobRecord):
                return record_or_problem
            problem = record_or_problem
            record = JobRecord(
                id=job_id,
                workdir=str(path.parent),
                status="error",
                ended_at=utc_now(),
                message=f"the job record was unreadable ({problem}); it is kept as {CORRUPT}",
            )
            try:
                os.replace(path, path.with_name(CORRUPT))
                self.save(record)
            except OSError:
                log.exception("could not set aside the unreadable record %s", path)
            log.error("job %s: %s", job_id, record.message)
            return record

    @staticmethod
    def _read(path: Path) -> JobRecord | str:
        """The record at ``path``, or why it cannot be read."""
        try:
            record = JobRecord.model_validate(read_json(path))
        except (OSError, ValueError) as exc:  # JSON, encoding and pydantic errors are ValueErrors
            return first_problem(exc)
        if record.id != path.parent.name:
            return f"the record is of job {record.id[:80]!r}"
        # The folder is where the job is, also after the operator moved runs_root.
        record.workdir = str(path.parent)
        return record

    def get(self, job_id: str) -> JobRecord:
        if not JOB_ID.fullmatch(job_id) or not self._path(job_id).is_file():
            shown = job_id if len(job_id) <= 80 else f"{job_id[:80]}... ({len(job_id)} characters)"
            raise ApiError(404, "NOT_FOUND", f"no job {shown!r}")
        return self._load(job_id)

    def all(self) -> list[JobRecord]:
        """Every job's record (an unreadable one as an ``error`` record), oldest first."""
        ids = [p.parent.name for p in self.root.glob(f"*/{RECORD}") if JOB_ID.fullmatch(p.parent.name)]
        return sorted((self._load(job_id) for job_id in ids), key=lambda r: r.created_at)

    def find_idempotent(self, key: str, digest: str) -> JobRecord | None:
        """The job an earlier request with this ``Idempotency-Key`` made; a different request with the
        same key is refused (422), as the key promises the same request."""
        found = next((r for r in self.all() if r.idempotency_key == key), None)
        if found is not None and found.request_digest != digest:
            raise ApiError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                f"Idempotency-Key was used for another request (job {found.id}); use a new key",
            )
        return found

    def create(
        self,
        document: JsonObject,
        *,
        webhook_url: str | None = None,
        idempotency: tuple[str, str] | None = None,
    ) -> JobRecord:
        """A new job folder with ``job.json``; the id is the server's. ``idempotency``: the client's key
        and the digest of its request."""
        job_id = f"job-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        workdir = self.root / job_id
        workdir.mkdir(parents=True)
        key, digest = idempotency or (None, None)
        record = JobRecord(
            id=job_id,
            workdir=str(workdir),
            webhook_url=webhook_url,
            idempotency_key=key,
            request_digest=digest,
        )
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
            self.refuse_full_queue()
            # A job stopped before its run recorded anything has nothing to continue: it starts afresh.
            resume = resume and Workdir(Path(record.workdir)).manifest.exists()
            record.status, record.queued_at, record.resume = "queued", utc_now(), resume
            record.cancel_requested, record.exit_code, record.message = False, None, None
            record.started_at = record.ended_at = None
            self.save(record)
            return record

    def retake(self, job_id: str, request: RetakeRequest) -> tuple[JobRecord, RetakePrepared]:
        """Record a retake of the segment at a moment of a job's video (va.retake: its previous final kept
        under a new name) and queue the job to continue from what exists."""
        with self.lock:
            record = self.refresh(self.get(job_id))
            if record.status not in ("succeeded", "failed", "interrupted", "cancelled"):
                raise ApiError(
                    409, "CONFLICT", f"job {job_id} is {record.status}; a retake needs a run that ended"
                )
            prepared = prepare_retake(Workdir(Path(record.workdir)), request)
            record.status, record.queued_at, record.resume = "queued", utc_now(), True
            record.cancel_requested, record.exit_code, record.message = False, None, None
            record.started_at = record.ended_at = None
            self.save(record)
            return record, prepared

    def refuse_full_queue(self) -> None:
        """``503 QUEUE_FULL`` (with ``Retry-After``) while ``max_queued`` jobs or more wait: the limit
        ``GET /ready`` reports is the one a job is refused by."""
        with self.lock:
            queued = sum(1 for record in self.all() if self.refresh(record).status == "queued")
        if self.max_queued is not None and queued >= self.max_queued:
            message = f"{queued} jobs wait in the queue; max_queued_jobs is {self.max_queued}"
            retry = {"Retry-After": str(QUEUE_RETRY_AFTER_SECONDS)}
            raise ApiError(503, "QUEUE_FULL", message, headers=retry)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job, or stop a running one (it records itself as interrupted)."""
        with self.lock:
            record = self.refresh(self.get(job_id))
            if record.status in FINISHED or record.status == "created":
                raise ApiError(409, "CONFLICT", f"job {job_id} is {record.status}; nothing to cancel")
            record.cancel_requested = True
            if record.status == "queued":
                record.status, record.ended_at = "cancelled", utc_now()
                self.save(record)
                self._finished(record)
            elif record.pid and record.pid_started is not None:
                # To the run's va, which has its guardian end every process of the run (docs/PROCESSES.md);
                # through a pidfd after the start time is checked, so never to a process that took the pid.
                ProcessId(record.pid, record.pid_started).send(signal.SIGTERM)
            self.save(record)
            return record

    # --- running ---------------------------------------------------------------------------------

    @staticmethod
    def is_its_run(record: JobRecord) -> bool:
        """Whether the record's pid is still the run it started: the same pid and start time. A pid
        the kernel has given to another process since is not, and is never signalled."""
        if not record.pid or record.pid_started is None:
            return False
        return ProcessId(record.pid, record.pid_started).alive()

    def refresh(self, record: JobRecord) -> JobRecord:
        """Bring a running record up to date with its process and manifest."""
        if record.status != "running":
            return record
        process = self.processes.get(record.id)
        alive = process.poll() is None if process is not None else self.is_its_run(record)
        if alive:
            return record
        with self.lock:  # one thread records the end (and tells of it), the others see it recorded
            current = self._load(record.id)
            return self._ended(current, process) if current.status == "running" else current

    def _ended(self, record: JobRecord, process: subprocess.Popen[bytes] | None) -> JobRecord:
        self.processes.pop(record.id, None)
        manifest = build_manifest(Workdir(Path(record.workdir)))
        status: JobStatus = (
            manifest["run_status"] if manifest and manifest["run_status"] in TERMINAL else "interrupted"
        )
        exit_status = manifest["exit_status"] if manifest else None
        record.status = "cancelled" if record.cancel_requested and status != "succeeded" else status
        record.exit_code = exit_status["code"] if exit_status else _exit_code_of(process)
        record.message = (exit_status["message"] if exit_status else None) or self._runner_tail(record)
        if record.message is None and process is not None and process.returncode < 0:
            record.message = f"stopped by signal {-process.returncode} before the run started"
        record.ended_at, record.pid, record.pid_started = utc_now(), None, None
        self.save(record)
        self._finished(record)
        return record

    def _finished(self, record: JobRecord) -> None:
        if self.on_finished is not None:
            try:
                self.on_finished(record)
            except Exception:  # a webhook must never break the queue
                log.exception("after job %s ended", record.id)

    def _runner_tail(self, record: JobRecord) -> str | None:
        return last_lines(Path(record.workdir) / "logs" / "vidax-runner.log", 1) or None

    def _take_inputs(self, record: JobRecord) -> None:
        """At a job's first start its inputs are confined again and taken into ``inputs/`` of its workdir
        (``take_input``: the very files checked), and ``job.json`` names those; a resume uses them."""
        if record.submitted_inputs is not None:
            return
        document = read_json(record.job_file)
        named = {field: str(document["input"][field]) for field in INPUT_FIELDS}
        folder = Path(record.workdir) / "inputs"
        folder.mkdir(exist_ok=True)
        for field, path in named.items():
            target = folder / f"{field}{Path(path).suffix}"
            take_input(path, self.input_roots, f"input.{field}", target)
            document["input"][field] = str(target)
        write_text_atomic(record.job_file, json.dumps(document, indent=2) + "\n")
        record.submitted_inputs = named

    def _start(self, record: JobRecord) -> bool:
        """Start a queued job's run; False when its inputs no longer pass (the job then failed)."""
        try:
            self._take_inputs(record)
        except (ApiError, VaError) as exc:
            failure = exc if isinstance(exc, ApiError) else ApiError.from_va(exc)
            record.status, record.ended_at, record.message = "failed", utc_now(), failure.message
            record.exit_code = int(ExitCode.__members__.get(failure.code, ExitCode.VALIDATION_FAILED))
            self.save(record)
            self._finished(record)
            log.warning("job %s not started: %s", record.id, failure.message)
            return False
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
        identity = ProcessId.of(process.pid)
        record.pid_started = identity.start if identity is not None else None
        self.save(record)
        log.info("started %s (pid %s)", record.id, process.pid)
        return True

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
                running += self._start(record)

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
