"""Recording a run as it happens: events appended, the manifest rewritten, the registry updated.

Called from the Snakefile's ``onstart``/``onsuccess``/``onerror`` handlers and from every rule's
script, so a run started by ``va run`` and one started by plain ``snakemake`` leave the same record.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from va import registry
from va.atomic import read_json, write_json_atomic
from va.errors import UNWRITABLE, ErrorData, ExitCode, VaError, disk_error_in
from va.events import append_event, read_events
from va.graph import RULE_PHASE, describe
from va.locks import locked
from va.manifest import (
    EventDigest,
    ExitStatus,
    Manifest,
    build_manifest,
    current_digest,
    process_alive,
    store_digest,
)
from va.media import count_video_packets
from va.processes import ProcessId
from va.registry import RunUpdate
from va.textlog import RuleLogHandler, last_lines, record_event
from va.workdir import Workdir

if TYPE_CHECKING:  # a rule recording its step loads neither the job's schema checks nor the planner
    from va.job import Job
    from va.plan import Plan


def new_run_id() -> str:
    """A run id: UTC time of creation and a random suffix, e.g. ``run-20261124T101500Z-3f9a2c``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"run-{stamp}-{secrets.token_hex(3)}"


#: The threads of one process (the batches of a ComfyUI stage) record one after another.
_RECORDING = threading.Lock()


def record(workdir: Workdir, stage: str, level: str, message: str, **fields: Any) -> Manifest | None:
    """Append one event and bring the manifest up to date (the event folded into the log's digest, not
    the whole log read again); returns the manifest."""
    with _RECORDING, locked(workdir.state_lock, timeout=60):
        record_event(workdir, append_event(workdir.events, stage, level, message, **fields))
        digest = current_digest(workdir)
        _keep_digest(workdir, digest)
        manifest = build_manifest(workdir, digest)
        if manifest is not None:
            _keep(
                lambda: write_json_atomic(workdir.manifest, manifest),
                workdir.manifest,
                f"manifest.json is written again from {workdir.events.name} by the next record",
            )
    return manifest


def _keep_digest(workdir: Workdir, digest: EventDigest) -> str | None:
    """Store ``digest``; a digest that cannot be written (a full disk) is no failure of the record: it
    is a cache of the event log, and the next record folds in what the stored one lacks. Returns the
    warning said then (logged), or None."""
    return _keep(
        lambda: store_digest(workdir, digest),
        workdir.manifest_digest,
        f"the manifest's digest is made again from {workdir.events.name}",
    )


def _keep(write: Callable[[], None], path: Path, then: str) -> str | None:
    """Write a file derived from the event log (the digest, ``manifest.json``): one that cannot be
    written (a full disk) is no failure of the record, whose event is in the log; the next record, or
    ``va`` once the final is published (``refresh_records``), makes it again. A rule that failed here
    after its final was published would have Snakemake delete the final. Returns the warning said then
    (logged), or None."""
    try:
        write()
    except OSError as exc:
        warning = f"{exc.strerror or repr(exc)}: {exc.filename or path}; {then}"
        logging.getLogger(__name__).warning("%s", warning)
        return warning
    return None


def refresh_records(workdir: Workdir) -> list[str]:
    """Bring the files derived from the event log (the digest, ``manifest.json``) up to date, as a record
    does: what ``va`` does once a run's final is published, where a record of a rule may have found the
    disk full. A ``manifest.json`` that cannot be written is ``WORKDIR_UNUSABLE`` naming it; a digest that
    cannot be is a warning, returned, and so is a ``manifest.json`` behind the event log (a record could
    not write it), written now."""
    with _RECORDING, locked(workdir.state_lock, timeout=60):
        digest = current_digest(workdir)
        warnings = [warning] if (warning := _keep_digest(workdir, digest)) else []
        manifest = build_manifest(workdir, digest)
        if manifest is not None:
            if _written_as_of(workdir.manifest) != manifest["updated_at"]:
                warnings.append(
                    f"{workdir.manifest} was behind {workdir.events.name} (a record could not write it, "
                    "see the rules' logs); written again"
                )
            try:
                write_json_atomic(workdir.manifest, manifest)
            except OSError as exc:
                if exc.errno not in UNWRITABLE:
                    raise
                where = exc.filename or workdir.manifest
                made = manifest["final"]
                final = f"; the final is kept: {made['path']}" if made["exists"] else ""
                raise VaError(ExitCode.WORKDIR_UNUSABLE, f"{exc.strerror}: {where}{final}") from exc
    return warnings


def _written_as_of(manifest: Path) -> str | None:
    """The time of the last event the stored ``manifest.json`` holds (None: none readable)."""
    try:
        stored = read_json(manifest)
    except (OSError, ValueError):
        return None
    return stored.get("updated_at") if isinstance(stored, dict) else None


def existing_run_id(workdir: Workdir) -> str | None:
    """The id of the run already recorded in ``workdir``, if any."""
    first = current_digest(workdir).first_start
    return str(first["run_id"]) if first else None


def record_run_started(
    workdir: Workdir,
    job: Job,
    *,
    plan_changes: list[str] | None = None,
    plan: Plan | None = None,
    registering: dict[str, RunUpdate] | None = None,
) -> str:
    """Record the start (or resumption) of the run in ``workdir`` and register it; ``plan_changes``: the
    fields of the plan that an edit of the job (or its inputs) changed since the previous attempt. The
    inputs' hashes are the ``plan``'s when it is given (hashed once, when it was made). With
    ``registering``, the registry entry is added there, for the caller to register many at once."""
    run_id = existing_run_id(workdir) or new_run_id()
    if plan is not None:
        inputs = {name: {"path": item.path, "sha256": item.sha256} for name, item in plan.inputs.items()}
    else:
        from va.plan import sha256_file  # noqa: PLC0415 - the planner's hashes, only for a run not planned

        inputs = {
            "audio": {"path": str(job.audio), "sha256": sha256_file(job.audio)},
            "start": {"path": str(job.start), "sha256": sha256_file(job.start)},
        }
    manifest = record(
        workdir,
        "run",
        "info",
        f"run {run_id} started in {workdir.root}",
        kind="run_started",
        run_id=run_id,
        pid=os.getpid(),
        pid_started=this.start if (this := ProcessId.of(os.getpid())) else None,
        host=socket.gethostname(),
        job=str(job.path),
        graph=describe(job, plan.stages if plan is not None else None),
        inputs=inputs,
        buffer=dataclasses.asdict(job.buffer),
        fps=job.fps,
        plan_changes=plan_changes or [],
    )
    entry = RunUpdate(
        workdir=str(workdir.root),
        job=str(job.path),
        run_status=manifest["run_status"] if manifest else "running",
    )
    if registering is not None:
        registering[run_id] = entry
    else:
        registry.register_run(run_id, **entry)
    return run_id


def failure_of_attempt(workdir: Workdir) -> ErrorData | None:
    """The error of the rule that failed in the latest attempt, if one did."""
    events = read_events(workdir.events)
    starts = [i for i, e in enumerate(events) if e.get("kind") == "run_started"]
    attempt = events[starts[-1] :] if starts else events
    failed = next((e for e in reversed(attempt) if e.get("kind") == "rule_failed"), None)
    if not failed or not failed.get("error"):
        return None
    error: ErrorData = failed["error"]  # as the rule's record wrote it (VaError.as_dict)
    return error


def record_run_finished(
    workdir: Workdir,
    error: VaError | None = None,
    *,
    from_rules: bool = False,
    unfinished: str = "failed",
    again: str = "--resume",
) -> None:
    """Record how the run ended: success, ``error``, or (``from_rules``) the error of its failed rule.

    When none of its rules failed, the run was stopped from outside: ``unfinished`` says whether that
    counts as ``interrupted`` (another job of the graph failed, or a signal) or as a ``failed`` graph;
    ``again`` is what continues it.
    """
    if error is None and not from_rules:
        status, exit_status = "succeeded", ErrorData(code=0, name="OK", message="final video written")
    elif error is not None:
        status = "interrupted" if error.code == ExitCode.INTERRUPTED else "failed"
        exit_status = error.as_dict()
    elif (failure := failure_of_attempt(workdir)) is not None:
        # A rule stopped from outside (its cluster job cancelled by hand, its node lost) was interrupted.
        status = "interrupted" if failure.get("code") == ExitCode.INTERRUPTED else "failed"
        exit_status = failure
    elif unfinished == "interrupted":
        status = "interrupted"
        exit_status = VaError(
            ExitCode.INTERRUPTED,
            "stopped before it finished (another job of the graph failed, or the run was stopped); "
            f"continue with {again}",
        ).as_dict()
    else:
        status = "failed"
        exit_status = _snakemake_failure(workdir).as_dict()
    manifest = record(
        workdir,
        "run",
        "info" if status == "succeeded" else "error",
        f"run {status}: {exit_status['message']}",
        kind="run_finished",
        run_status=status,
        exit_status=exit_status,
    )
    if manifest and manifest["exit_status"]:
        _register_end(workdir, manifest, manifest["exit_status"])


def _register_end(workdir: Workdir, manifest: Manifest, exit_status: ExitStatus) -> None:
    # With where it ran: a run stopped between its start's record and its registration is
    # registered by its end whole, not as an entry without a workdir.
    registry.register_run(
        manifest["run_id"],
        workdir=str(workdir.root),
        job=manifest["job"],
        run_status=manifest["run_status"],
        exit_code=exit_status["code"],
    )


def register_finished(workdir: Workdir) -> None:
    """Register the recorded end of the run in the state dir's registry (again): the rule that recorded
    it may have found the state dir full, and said so only in its log. A state dir that still cannot
    take it is ``STATE_DIR_UNUSABLE``."""
    manifest = build_manifest(workdir)
    if manifest is not None and manifest["exit_status"]:
        _register_end(workdir, manifest, manifest["exit_status"])


def _snakemake_failure(workdir: Workdir) -> VaError:
    """Why Snakemake failed where none of its rules did: a full or read-only disk it could not write its
    own records to (the workdir's), else a failure to look up in its log."""
    disk = disk_error_in(last_lines(workdir.snakemake_log))
    if disk is not None:
        message = f"{disk.lower()}: snakemake could not write in {workdir.root}"
        return VaError(ExitCode.WORKDIR_UNUSABLE, message)
    return VaError(ExitCode.INTERNAL, f"snakemake failed; see {workdir.snakemake_log}")


def run_finished(workdir: Workdir) -> bool:
    """Whether the latest attempt in ``workdir`` has recorded its end."""
    return current_digest(workdir).finished is not None


def rule_finished_in_attempt(workdir: Workdir, rule: str, target: str | None = None) -> bool:
    """Whether ``rule`` (of ``target``: a ComfyUI batch, a lip-sync chunk) recorded its end in the latest
    attempt in ``workdir``, and nothing of it since: its outputs were published whole."""
    digest = current_digest(workdir)
    entry = digest.rules.get(f"{rule}/{target}" if target else rule)
    if entry is None or entry.get("attempt") != digest.starts:
        return False
    return bool(entry.get("last", {}).get("kind") == "rule_finished")


def run_succeeded(workdir: Workdir) -> bool:
    """Whether the latest attempt in ``workdir`` recorded that it succeeded."""
    return current_digest(workdir).succeeded


def reconcile(workdir: Workdir, basename: str) -> bool:
    """A run stopped after its final was published but before its end was recorded (killed, or a batch
    stopped while other jobs ran): check the final (its frames are the plan's) and record the run as
    succeeded. Returns whether it did."""
    final = workdir.final(basename)
    if not final.exists():
        return False
    digest = current_digest(workdir)
    start = digest.last_start
    from va.plan import previous_plan  # noqa: PLC0415 - only the command that starts runs reconciles

    plan = previous_plan(workdir.plan)
    if start is None or digest.finished is not None or plan is None:
        return False
    if process_alive(start.get("pid"), start.get("host")):
        return False  # the graph that publishes it may still be recording its end
    try:
        complete = count_video_packets(final) == plan.target_frames
    except VaError:
        complete = False
    if complete:
        record_run_finished(workdir)
    return complete


def log_to_file(log_path: str | Path) -> None:
    """Send this process's log records to a rule's log file (its folder made first)."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=str(log_path),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


@contextmanager
def rule_step(
    rule: str, log_path: str | Path, target: str | None = None, workdir: Workdir | None = None
) -> Iterator[Callable[..., None]]:
    """Run one rule's body: its log file set up, its start and end recorded, its error kept.

    Yields a reporter, ``report(message, level="info", **fields)``, that records events of this rule
    (progress, attempts). A ``VaError`` is recorded with its exit code and ends the script with a
    non-zero status, so Snakemake stops the graph and the wrapper can report the code.
    """
    workdir = workdir or Workdir(Path.cwd())
    name = f"{rule} {target}" if target else rule
    log_to_file(log_path)
    logging.getLogger().addHandler(RuleLogHandler(workdir, RULE_PHASE[rule], name))
    try:
        with _recorded_step(rule, target, workdir) as report:
            yield report
    except VaError as exc:
        sys.exit(int(exc.code))
    except OSError as exc:
        # A record of the rule (its event appended to the log) that failed: one line, never a traceback.
        code = ExitCode.WORKDIR_UNUSABLE if exc.errno in UNWRITABLE else ExitCode.INTERNAL
        failed_at = exc.filename or workdir.events
        logging.getLogger(rule).error("%s: %s: %s", name, exc.strerror or repr(exc), failed_at)
        sys.exit(int(code))


@contextmanager
def unit_step(rule: str, log_path: Path, target: str, workdir: Workdir) -> Iterator[Callable[..., None]]:
    """One of the units a rule makes side by side in threads (the batches of a ComfyUI stage), recorded as
    ``rule_step`` records a rule: its start, end and error, and what this thread logs in its own log file
    (and in the rule's). A ``VaError`` is recorded and raised again, for the rule to end with."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    here = threading.get_ident()
    handlers: list[logging.Handler] = [
        logging.FileHandler(log_path, encoding="utf-8"),
        RuleLogHandler(workdir, RULE_PHASE[rule], f"{rule} {target}"),
    ]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(min(root.level, logging.INFO))  # a rule's log holds its steps, as rule_step's does
    for handler in handlers:
        handler.addFilter(lambda entry: entry.thread == here)
        root.addHandler(handler)
    try:
        with _recorded_step(rule, target, workdir) as report:
            yield report
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


@contextmanager
def _recorded_step(rule: str, target: str | None, workdir: Workdir) -> Iterator[Callable[..., None]]:
    """The start, the end or the error of one rule (or unit) recorded as events; a ``VaError`` raised
    again once recorded."""
    phase = RULE_PHASE[rule]
    where = {"rule": rule, "phase": phase, **({"target": target} if target else {})}
    name = f"{rule} {target}" if target else rule

    def report(message: str, level: str = "info", **fields: Any) -> None:
        logging.getLogger(rule).info("%s", message)
        record(workdir, phase, level, message, **{"kind": "log", **fields, **where})

    began = time.monotonic()
    # Where the rule runs: on a cluster, the node and the Slurm job.
    host = {
        "host": socket.gethostname(),
        **({"slurm_job_id": os.environ["SLURM_JOB_ID"]} if "SLURM_JOB_ID" in os.environ else {}),
    }
    record(workdir, phase, "info", f"{name} started", kind="rule_started", **host, **where)
    try:
        try:
            yield report
        except OSError as exc:
            if exc.errno not in UNWRITABLE:
                raise
            # A full, read-only or forbidden disk is the place's fault, said with the path, not a bug.
            failed_at = exc.filename or workdir.root
            raise VaError(ExitCode.WORKDIR_UNUSABLE, f"{name}: {exc.strerror}: {failed_at}") from exc
    except VaError as exc:
        logging.getLogger(rule).error("%s", exc.message)
        record(workdir, phase, "error", exc.message, kind="rule_failed", error=exc.as_dict(), **where)
        raise
    except Exception as exc:
        logging.getLogger(rule).exception("internal error")
        error = VaError(ExitCode.INTERNAL, f"{name}: internal error: {exc!r}")
        record(workdir, phase, "error", error.message, kind="rule_failed", error=error.as_dict(), **where)
        raise
    seconds = round(time.monotonic() - began, 3)
    record(
        workdir,
        phase,
        "info",
        f"{name} finished in {seconds} s",
        kind="rule_finished",
        seconds=seconds,
        **where,
    )


def record_rule_failed(workdir: Workdir, rule: str, error: VaError) -> None:
    """Record that ``rule`` failed with ``error`` outside its script (its cluster job never started)."""
    where = {"rule": rule, "phase": RULE_PHASE[rule]}
    record(
        workdir, where["phase"], "error", error.message, kind="rule_failed", error=error.as_dict(), **where
    )


@contextmanager
def figure_step(rule: str, log_path: str | Path) -> Iterator[None]:
    """Run the body of a figure rule: its log file set up, a ``VaError`` logged and made its exit status.

    Unlike a run's rules (``rule_step``) it records no event: the run's record stays as it was.
    """
    log_to_file(log_path)
    try:
        yield
    except VaError as exc:
        logging.getLogger(rule).error("%s", exc.message)
        sys.exit(int(exc.code))
