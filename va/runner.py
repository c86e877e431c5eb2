"""Driving a run: guard the workdir, start Snakemake on the graph, turn its end into an exit code."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import yaml

from va.atomic import prove_writable, write_text_atomic
from va.batch import SELECTION, BatchRow, check_made_here, load_batch, summarize
from va.clean import remove_empty_outputs
from va.errors import ExitCode, VaError, disk_error_in, place_unusable
from va.events import Event, follow_events
from va.guardian import RULE_GRACE_SECONDS, SNAKEMAKE_GRACE_SECONDS, guardian_argv
from va.job import Job, comfyui_active, load_job
from va.locks import Flock, is_held
from va.manifest import Manifest, build_manifest, current_digest
from va.plan import Plan, plan_jobs, plan_run, publish_plan
from va.processes import ProcessRecord, die_with_parent, end_leftovers, snakemake_in, tree
from va.slurm import settle_leftovers
from va.state import check_state_dir
from va.textlog import last_lines, record_command
from va.tracking import (
    existing_run_id,
    reconcile,
    record_run_finished,
    refresh_records,
    register_finished,
    run_finished,
    run_succeeded,
)
from va.workdir import Workdir

REPO_ROOT = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO_ROOT / "Snakefile"
PROFILES = REPO_ROOT / "profiles"


@dataclass(frozen=True)
class RunOptions:
    """How to run: where, whether to resume, and what Snakemake gets."""

    workdir: Path
    resume: bool = False
    cores: int | None = None
    profile: str | None = None


@dataclass(frozen=True)
class RunResult:
    """How a run ended."""

    code: ExitCode
    message: str
    final: Path
    manifest: Manifest | None
    #: What went wrong that the video does not depend on (a record's cache that could not be written).
    warnings: tuple[str, ...] = ()


def default_workdir() -> Path:
    """``./workdir/run-<timestamp>-<6 hex>`` below the current directory, made here: the folder is created
    exclusively, so runs started in the same second (ten ``va produce`` at once) never share one."""
    parent = Path.cwd() / "workdir"
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        folder = parent / f"run-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


def resolve_profile(profile: str) -> Path:
    """A profile given by name (a folder of ``profiles/``) or by path."""
    named = PROFILES / profile
    path = named if named.is_dir() else Path(profile)
    if not (path / "config.yaml").is_file():
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"--profile: no config.yaml in {path}")
    _profile_settings(path)  # refused now, in one line, not by Snakemake's start (or its wait forever)
    return path.absolute()


#: The profile settings that count what may run at once, and the word each also takes.
_COUNTS = {"cores": "all", "jobs": "unlimited"}


def _is_count(value: object, word: str) -> bool:
    if isinstance(value, str):
        return value == word or (value.isdigit() and int(value) >= 1)
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _profile_settings(profile: Path | None) -> dict[str, Any]:
    """The settings of a profile's config.yaml, checked as far as va relies on them: a mapping, and
    ``cores``/``jobs`` at least 1 (with 0 Snakemake waits forever, below 0 it fails at its start)."""
    if profile is None:
        return {}
    config = profile / "config.yaml"
    try:
        settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise VaError(ExitCode.VALIDATION_FAILED, f"--profile: {config}: not valid YAML") from exc
    if not isinstance(settings, dict):
        raise VaError(
            ExitCode.VALIDATION_FAILED, f"--profile: {config}: not a mapping of settings (key: value)"
        )
    for key, word in _COUNTS.items():
        if key in settings and not _is_count(settings[key], word):
            value = settings[key]
            message = (
                f"--profile: {config}: {key}: {value!r} is neither a whole number of at least 1 nor {word!r}"
            )
            raise VaError(ExitCode.VALIDATION_FAILED, message)
    return settings


def _profile_sets_cores(profile: Path | None) -> bool:
    return any(key in _profile_settings(profile) for key in ("cores", "jobs"))


def settle_cluster_jobs(workdir: Path, options: RunOptions, log: IO[bytes], again: str) -> None:
    """With a Slurm profile: our jobs that an earlier, killed run left in the queue are cancelled (pending)
    or waited for (running) before this run's graph submits its own (va.slurm.settle_leftovers). A stop
    (Ctrl-C, or SIGTERM, which ``va.cli.main`` turns into Ctrl-C for the whole command) while waiting
    cancels those too and is an ``INTERRUPTED`` error naming ``again``."""
    profile = resolve_profile(options.profile) if options.profile else None
    if _profile_settings(profile).get("executor") != "slurm":
        return

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        log.write(f"{line}\n".encode())
        log.flush()

    try:
        settle_leftovers(workdir, say)
    except KeyboardInterrupt:
        raise VaError(ExitCode.INTERRUPTED, f"interrupted; continue with: {again}") from None


def ensure_workdir(workdir: Workdir, place: str = "workdir", option: str = "--workdir") -> None:
    """Make the workdir and its logs folder, and prove it can be written; a path that is a file, a
    read-only or full disk, or a folder without permission is one line naming the path and the reason
    (the ``place``, and the ``option`` that chooses another: a batch's output folder and ``--out``)."""
    if workdir.root.exists() and not workdir.root.is_dir():
        message = f"{place} {workdir.root} unusable: it is a file, not a folder (choose another {option})"
        raise VaError(ExitCode.WORKDIR_UNUSABLE, message)
    try:
        workdir.root.mkdir(parents=True, exist_ok=True)
        workdir.run_lock.parent.mkdir(parents=True, exist_ok=True)
        prove_writable(workdir.run_lock.parent)
    except OSError as exc:
        raise place_unusable(ExitCode.WORKDIR_UNUSABLE, place, workdir.root, exc) from exc


#: What a run's graph writes at the top of its workdir, besides the final video, manifest.json, logs/
#: and Snakemake's .snakemake/ (which a start that was refused may leave).
GRAPH_PLACES = (
    "prepare",
    "frames",
    "comfyui",
    "motion",
    "stabilize",
    "lipsync",
    "captions.srt",
    "captions.vtt",
    "report",
    "benchmarks",
)


def refuse_foreign_places(workdir: Workdir) -> None:
    """A new run does not start in a folder that holds places its graph writes (a folder of the user's
    with a ``frames/`` of their own, say) unless a va run is recorded there: the run would write among
    the user's files, and Snakemake could take a file there for one it made (a video that exits 0 with
    the wrong picture). Checked before anything is written in the folder."""
    if not workdir.root.is_dir() or existing_run_id(workdir):
        return
    found = [name for name in GRAPH_PLACES if (workdir.root / name).exists()]
    if found:
        raise VaError(
            ExitCode.OUTPUT_EXISTS,
            f"{workdir.root} holds {', '.join(found)}, which no va run made; not writing among them "
            "(choose another --workdir, such as a new folder)",
        )


def guard_workdir(workdir: Workdir, job: Job, resume: bool) -> None:
    """Refuse to overwrite a finished video or mix two runs in one workdir; check a resume makes sense."""
    final = workdir.final(job.basename)
    run_id = existing_run_id(workdir)
    if workdir.manifest.exists() and not run_id:
        raise VaError(
            ExitCode.OUTPUT_EXISTS,
            f"{workdir.manifest} is not a manifest of a va run (no run is recorded in {workdir.root}); "
            "not overwriting it (choose another --workdir)",
        )
    if resume:
        remove_empty_outputs(workdir, job.basename)
        reconcile(workdir, job.basename)
    if not resume:
        if final.exists():
            raise VaError(
                ExitCode.OUTPUT_EXISTS, f"{final} exists; not overwriting it (choose another --workdir)"
            )
        if run_id:
            raise VaError(
                ExitCode.OUTPUT_EXISTS,
                f"{workdir.root} already holds run {run_id}; "
                "continue it with --resume or choose another --workdir",
            )
        return
    if not workdir.manifest.exists() or not run_id:
        raise VaError(ExitCode.RESUME_NOT_POSSIBLE, f"nothing to resume: no manifest.json in {workdir.root}")
    refuse_another_job(workdir, job)
    if final.exists() and not run_succeeded(workdir):
        raise VaError(
            ExitCode.RESUME_NOT_POSSIBLE,
            f"nothing to resume: {final} exists but is not the finished video this run recorded; "
            "not overwriting it (choose another --workdir)",
        )


def refuse_another_job(workdir: Workdir, job: Job) -> None:
    """A resume continues the run of the same job file: the run of another job in ``workdir`` (whose
    video would be answered as this job's) is ``RESUME_NOT_POSSIBLE``, naming both."""
    recorded = current_digest(workdir).last_start
    theirs = Path(str((recorded or {}).get("job", ""))).absolute()
    ours = job.path.absolute()
    same = theirs == ours or (theirs.exists() and ours.exists() and os.path.samefile(theirs, ours))
    if recorded is not None and not same:
        raise VaError(
            ExitCode.RESUME_NOT_POSSIBLE,
            f"{workdir.root} holds the run of {theirs}, not of {ours}; resume it with that job, "
            "or choose another --workdir",
        )


def refuse_live_run(workdir: Workdir, *, batch_above: bool = False) -> None:
    """A folder another run works in is left alone: a ``va`` holding its lock, or a snakemake working
    there (plain ``snakemake``, which takes no lock of ours), or with ``batch_above`` in the folder above
    (a job's folder of a running batch). Checked before anything is settled (an earlier run's Slurm jobs
    cancelled) or written there: a refused command never touches the live run. Exit 30, one line."""
    if not workdir.root.is_dir():
        return
    if is_held(workdir.run_lock):
        raise VaError(ExitCode.OUTPUT_EXISTS, f"{workdir.root} is in use by another va run")
    refuse_live_snakemake(workdir, batch_above=batch_above)


def refuse_live_snakemake(workdir: Workdir, *, batch_above: bool = False) -> None:
    """``refuse_live_run`` without the look at ``va``'s lock: for the holder of that lock."""
    places = [workdir.root, workdir.root.parent] if batch_above else [workdir.root]
    # What a killed va's guardian recorded there is that run's leftover, which the new run ends.
    recorded = ProcessRecord(workdir.processes).read()
    leftovers = {process for earlier in recorded for process in tree(earlier)}
    for place, found in snakemake_in(*places).items():
        here = [process for process in found if process not in leftovers]
        if here:
            pids = ", ".join(str(process.pid) for process in here)
            raise VaError(
                ExitCode.OUTPUT_EXISTS,
                f"{place} is in use by a running snakemake (pid {pids}); leaving it alone "
                "(wait for it to end, or stop it, then call again)",
            )


@contextlib.contextmanager
def workdir_lock(workdir: Workdir) -> Iterator[None]:
    """Hold the workdir for this process; a lock of a killed process is released by the kernel."""
    lock = Flock(workdir.run_lock)
    if not lock.try_acquire():
        raise VaError(ExitCode.OUTPUT_EXISTS, f"{workdir.root} is in use by another va run")
    try:
        yield
    finally:
        lock.release()


def snakemake_command(directory: Path, *config: str, local: bool = True) -> list[str]:
    """Snakemake on this workflow in ``directory``, with ``config`` entries (``job=...`` or ``batch=...``).
    ``local``: no profile is named, so the run uses the local executor and Snakemake starts without the
    cluster executor plugins (va/snakemake_local.py)."""
    program = "va.snakemake_local" if local else "snakemake"
    argv = [sys.executable, "-m", program, "--snakefile", str(SNAKEFILE), "--directory", str(directory)]
    return [*argv, "--config", *config]


def graph_argv(directory: Path, options: RunOptions, *config: str) -> list[str]:
    """The Snakemake command line for the graph of ``config`` (``job=...`` or ``batch=...``, and more
    entries) in ``directory``.

    A named profile is used on its own: Snakemake would otherwise also load profiles/default as the
    workflow profile, whose keys win over the named profile's (its ``cores: all`` over yours).
    """
    profile = resolve_profile(options.profile) if options.profile else None
    argv = snakemake_command(directory, *profile_config_entries(profile), *config, local=profile is None)
    if profile is not None:
        argv += ["--profile", str(profile), "--workflow-profile", "none"]
    if options.cores or not _profile_sets_cores(profile):
        argv += ["--cores", str(options.cores or os.cpu_count() or 1)]
    return [*argv, "--rerun-incomplete"]


def snakemake_argv(job: Job, options: RunOptions) -> list[str]:
    """The Snakemake command line for ``job`` in ``options.workdir``, whose plan ``va`` wrote there."""
    return [
        *graph_argv(options.workdir, options, f"job={job.path}", "planned=True"),
        *comfyui_resources([job], options),
    ]


def profile_config(profile: Path | None) -> dict[str, Any]:
    """The ``config:`` entries of a profile (a mapping, or Snakemake's list of ``KEY=VALUE`` with YAML
    values), as the graph's ``config`` gets them."""
    entries = _profile_settings(profile).get("config") or {}
    if isinstance(entries, dict):
        return dict(entries)
    parsed = {}
    for entry in entries if isinstance(entries, list) else []:
        key, _, value = str(entry).partition("=")
        try:
            parsed[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed[key] = value
    return parsed


def profile_config_entries(profile: Path | None) -> list[str]:
    """The profile's ``config:`` as ``--config`` entries: a ``--config`` on the command line replaces the
    profile's, so va passes them on before its own (``job=``, ``batch=``), values as JSON (which
    Snakemake reads as YAML)."""
    entries = _profile_settings(profile).get("config") or {}
    if isinstance(entries, dict):
        return [f"{key}={v if isinstance(v, str) else json.dumps(v)}" for key, v in entries.items()]
    return [str(entry) for entry in entries] if isinstance(entries, list) else []


def comfyui_resources(jobs: Iterable[Job], options: RunOptions) -> list[str]:
    """``--resources`` with ``comfyui`` following the pool of the servers the jobs use
    (va.comfyui.pool.snakemake_jobs: a job for each prompt va keeps at a server, one more started and
    waiting; the leases themselves are taken in va.comfyui.pool). The profile's other
    resources are kept (a ``--resources`` replaces the profile's list). Nothing when no job uses ComfyUI
    or the stage starts its own server (the profile's value holds)."""
    generating = [job for job in jobs if comfyui_active(job)]
    if not generating:
        return []
    # The ComfyUI stage's pool and client, only for jobs that generate: a held still loads neither.
    from va.comfyui.pool import PoolServer, snakemake_jobs  # noqa: PLC0415
    from va.comfyui.stage import job_pool  # noqa: PLC0415

    profile = resolve_profile(options.profile) if options.profile else PROFILES / "default"
    config = profile_config(profile)
    servers: set[PoolServer] = set()
    for job in generating:
        pool = job_pool(job, config)
        if pool.start is not None:
            return []
        servers.update(pool.servers)
    if not servers:
        return []
    limit = snakemake_jobs(servers)
    declared = _profile_settings(profile).get("resources") or []
    if isinstance(declared, dict):
        declared = [f"{name}={value}" for name, value in declared.items()]
    kept = [str(entry) for entry in declared if not str(entry).startswith("comfyui=")]
    return ["--resources", *kept, f"comfyui={limit}"]


class _Terminated(Exception):
    pass


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def prepare_run(job_path: Path, workdir: Workdir | None = None) -> tuple[Job, Plan]:
    """Load and plan a job, its checks included, as ``va validate`` does; every problem is a ``VaError``.
    ``workdir``: where an earlier attempt's plan (and its random seed) is kept."""
    job = load_job(job_path)
    return job, plan_run(job, workdir)


def run_job(
    job_path: Path,
    options: RunOptions,
    on_event: Callable[[Event], None] | None = None,
    planned: Plan | None = None,
) -> RunResult:
    """Run ``job_path`` in ``options.workdir`` through the Snakemake graph and report how it ended. The
    job is planned once, here (``planned``: the caller planned it already), and its plan written before
    Snakemake starts; the graph loads it."""
    workdir = Workdir(options.workdir.absolute())
    if planned is None:
        job, plan = prepare_run(job_path, workdir)
    else:
        job, plan = load_job(job_path), planned
    if plan.stages.visual.generated:
        from va.comfyui.health import check_pool  # noqa: PLC0415 - a generated picture's alone
        from va.comfyui.stage import job_pool  # noqa: PLC0415

        pool = job_pool(job, profile_config(resolve_profile(options.profile) if options.profile else None))
        answers = check_pool(pool.servers) if pool.start is None else []
        if answers and not any(health.ok for health in answers):
            problems = "; ".join(
                health.message if len(answers) == 1 else f"{health.url}: {health.message}"
                for health in answers
            )
            raise VaError(
                ExitCode.COMFYUI_UNAVAILABLE,
                f"ComfyUI at {pool.servers[0].url if len(answers) == 1 else 'no server of the pool'} is not "
                f"reachable ({problems}); start it, or hold the start frame "
                "(empty comfyui.workflow_ids, va produce --no-comfyui)",
            )
    refuse_live_run(workdir, batch_above=True)
    if not options.resume:
        refuse_foreign_places(workdir)
    ensure_workdir(workdir)
    check_state_dir()  # the run registers there: refused now, not by Snakemake's start
    options = RunOptions(workdir.root, options.resume, options.cores, options.profile)
    with workdir_lock(workdir):
        workdir.snakemake_log.parent.mkdir(parents=True, exist_ok=True)
        with open(workdir.snakemake_log, "ab") as log:
            refuse_live_snakemake(workdir, batch_above=True)  # one that started since the first look
            _end_leftovers(workdir, log)
            again = f"va run {job.path} --workdir {workdir.root} --resume"
            settle_cluster_jobs(workdir.root, options, log, again)
            guard_workdir(workdir, job, options.resume)
            if options.resume:  # an edited job's finished video is no success of the job as it is now
                check_made_here(workdir, job, option="--workdir")
            if options.resume and workdir.final(job.basename).exists():
                # Already complete (e.g. a job of a stopped batch that had finished): nothing to do.
                return RunResult(
                    ExitCode.OK, "already complete", workdir.final(job.basename), build_manifest(workdir)
                )
            if options.resume:  # a killed Snakemake leaves its lock
                unlock_abandoned(workdir.root, log)
            publish_plan(plan, workdir.plan)  # the graph loads it, and plans nothing again
            returncode = _drive(snakemake_argv(job, options), log, workdir, on_event, again)
    return _result(workdir, job, returncode, options.profile)


def unlock_abandoned(directory: Path, log: IO[bytes]) -> None:
    """Clear the lock a killed Snakemake left in ``directory``; a Snakemake still running there (plain
    ``snakemake``, started by no ``va``) is refused, never unlocked under it.

    The lock is the folder ``.snakemake/locks``, and removing it is all ``snakemake --unlock`` does; done
    here, once no snakemake runs in the folder and our own lock keeps other ``va`` runs out, a resume
    does not pay for a whole Snakemake start (its imports, the Snakefile, the job's plan) to do it.
    """
    refuse_live_snakemake(Workdir(directory))
    locks = directory / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        shutil.rmtree(locks)
        log.write(f"va: removed the lock a stopped snakemake left: {locks}\n".encode())
        log.flush()


def _end_leftovers(workdir: Workdir, log: IO[bytes]) -> None:
    """End what an earlier run in ``workdir`` left running (its ``va`` and guardian were killed), so
    that this run never works beside it; the snakemake log says what was ended."""
    ended = end_leftovers(ProcessRecord(workdir.processes))
    if ended:
        pids = ", ".join(str(process.pid) for process in ended)
        log.write(f"va: ended {len(ended)} processes left running by an earlier run: {pids}\n".encode())
        log.flush()


#: How long ``va`` waits for its guardian to stop the run before it kills the guardian and ends the
#: recorded processes itself.
GUARDIAN_WAIT_SECONDS = SNAKEMAKE_GRACE_SECONDS + RULE_GRACE_SECONDS + 10


def _drive(
    argv: list[str],
    log: IO[bytes],
    workdir: Workdir,
    on_event: Callable[[Event], None] | None,
    again: str,
) -> int:
    """Run Snakemake (``argv``) under a guardian (va/guardian.py) and wait for it; a stop (Ctrl-C,
    SIGTERM, the supervisor gone) is handed to the guardian, which ends every process of the run, and
    is an ``INTERRUPTED`` error naming ``again``, the command that continues."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    guarded = guardian_argv(argv, workdir.processes, workdir.root)
    record_command(workdir, "snakemake", argv)
    # preexec_fn is safe here: the only other thread (the watcher) starts after the fork.
    arm = die_with_parent(signal.SIGTERM)
    process = subprocess.Popen(
        guarded,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        preexec_fn=arm,  # noqa: PLW1509
    )
    stop = threading.Event()
    watcher = None
    if on_event is not None:
        # Only this run's events: a resumed run's log already holds the previous run's.
        offset = workdir.events.stat().st_size if workdir.events.exists() else 0
        watcher = threading.Thread(target=_watch, args=(workdir, stop, on_event, offset), daemon=True)
        watcher.start()
    try:
        returncode = _wait(process)
        if returncode != 0:  # the guardian killed or failed: what it recorded and still runs ends here
            end_leftovers(ProcessRecord(workdir.processes))
        return returncode
    except (KeyboardInterrupt, _Terminated):
        if _stop_guardian(process, workdir) == 0:
            return 0  # the run had finished when the stop came
        raise VaError(ExitCode.INTERRUPTED, f"interrupted; continue with: {again}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        if watcher is not None:
            watcher.join(timeout=2)


def _stop_guardian(process: subprocess.Popen[bytes], workdir: Workdir) -> int:
    """Ask the guardian to stop the run and wait for it; a guardian that does not end is killed, and
    the processes it recorded are ended here. Returns the guardian's exit status."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=GUARDIAN_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    end_leftovers(ProcessRecord(workdir.processes))
    if existing_run_id(workdir):  # the guardian did not live to record the stop
        record_run_finished(workdir, VaError(ExitCode.INTERRUPTED, "run interrupted by a signal"))
    return process.returncode


#: Set by a supervisor (the VIDAX server) to its pid: the run stops, as on SIGTERM, when that process is gone.
SUPERVISOR_ENV = "VA_SUPERVISOR_PID"


def _wait(process: subprocess.Popen[bytes]) -> int:
    supervisor = os.environ.get(SUPERVISOR_ENV)
    while True:
        try:
            return process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if supervisor and os.getppid() != int(supervisor):
                raise _Terminated from None


def _watch(workdir: Workdir, stop: threading.Event, on_event: Callable[[Event], None], offset: int) -> None:
    for event in follow_events(workdir.events, stop.is_set, poll_seconds=0.1, offset=offset):
        on_event(event)


def _not_started(what: str, workdir: Workdir, profile: str | None) -> VaError:
    """Snakemake ended before the run (or batch) registered. With a ``--profile`` it is what Snakemake
    refused in the profile (an unknown key, an executor not installed): the user's to fix, and named so;
    without one, a bug."""
    detail = last_lines(workdir.snakemake_log)
    disk = disk_error_in(detail)
    if disk is not None:  # Snakemake could not write its own records: the workdir's disk, not a bug
        message = f"{disk.lower()}: snakemake could not write in {workdir.root}"
        return VaError(ExitCode.WORKDIR_UNUSABLE, message)
    if profile:
        message = f"--profile {profile}: snakemake could not start the {what} with it: {detail}"
        return VaError(ExitCode.VALIDATION_FAILED, message)
    return VaError(ExitCode.INTERNAL, f"snakemake could not start the {what}: {detail}")


def _result(workdir: Workdir, job: Job, returncode: int, profile: str | None) -> RunResult:
    final = workdir.final(job.basename)
    # Snakemake may fail after the final was published and the run's success recorded: a record of the
    # encode rule that found the disk full. The final and the event log are whole; what derives from
    # them is made again here, and what cannot be written is said (WORKDIR_UNUSABLE, or a warning).
    if final.exists() and (returncode == 0 or run_succeeded(workdir)):
        if not run_finished(workdir):
            record_run_finished(workdir)
        else:  # recorded by the encode rule, whose write to the registry may have found the state dir full
            register_finished(workdir)
        warnings = refresh_records(workdir)
        if returncode != 0:
            disk = disk_error_in(last_lines(workdir.snakemake_log, 60))  # the rule's error, above Snakemake's
            why = f"an error ({disk})" if disk else "an error"
            warnings.append(
                f"snakemake ended with {why} after {final.name} was published; the final and the run's "
                f"record are whole (see {workdir.snakemake_log})"
            )
        return RunResult(ExitCode.OK, f"{final}", final, build_manifest(workdir), tuple(warnings))
    if not existing_run_id(workdir):
        raise _not_started("run", workdir, profile)
    if not run_finished(workdir):
        record_run_finished(workdir, from_rules=True)
    manifest = build_manifest(workdir)
    status = manifest["exit_status"] if manifest else None
    code = ExitCode(status["code"]) if status and status["code"] is not None else ExitCode.INTERNAL
    if code == ExitCode.OK:
        code = ExitCode.INTERNAL
    message = status["message"] if status and status["message"] is not None else "run failed"
    return RunResult(code, message, final, manifest)


@dataclass(frozen=True)
class BatchResult:
    """How a batch ended: its exit code, one summary row a job, and the line that says why it is not OK."""

    code: ExitCode
    rows: list[BatchRow]
    message: str | None = None


def batch_command(folder: Path, out: Path, options: RunOptions, keep_going: bool) -> str:
    """The ``va batch`` command line that runs (or continues) this batch."""
    argv = ["va", "batch", str(folder), "--out", str(out)]
    argv += ["--profile", options.profile] if options.profile else []
    argv += ["--cores", str(options.cores)] if options.cores else []
    return shlex.join(argv + (["--keep-going"] if keep_going else []))


def run_batch(folder: Path, out: Path, options: RunOptions, *, keep_going: bool = False) -> BatchResult:
    """Run every job of ``folder`` as one graph into ``out/<job-name>/``; a summary row a job.

    Jobs that fail the checks of ``va validate`` are left out (and reported); the others run. A stop
    (Ctrl-C, SIGTERM) still summarizes what finished, and names the command that continues.
    """
    folder, out = folder.absolute(), out.absolute()
    refuse_live_run(Workdir(out))
    batch = load_batch(folder, out=out)  # what each job's folder holds (va.batch.check_made_here)
    unfinished = {
        n: job for n, job in batch.jobs.items() if not Workdir(out / n).final(job.basename).exists()
    }
    plans, problems = plan_jobs(unfinished, lambda name: Workdir(out / name))
    batch.problems.update(problems)
    batch.jobs = {name: job for name, job in batch.jobs.items() if name not in problems}
    names = sorted(set(batch.jobs) | set(batch.problems))
    if not names:
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"no job files (*.json) in {folder}")
    lock_owner = Workdir(out)
    ensure_workdir(lock_owner, "batch output folder", "--out")
    check_state_dir()
    again = batch_command(folder, out, options, keep_going)
    stopped = None
    with workdir_lock(lock_owner):
        lock_owner.snakemake_log.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_owner.snakemake_log, "ab") as log:
            refuse_live_snakemake(lock_owner)  # one that started since the first look
            _end_leftovers(lock_owner, log)
            try:
                settle_cluster_jobs(out, options, log, again)
                write_text_atomic(out / SELECTION, "".join(f"{name}\n" for name in sorted(batch.jobs)))
                # A finished video is never a target again (the graph's final_videos): with every one
                # there, the graph has nothing to do, and Snakemake's start-up (seconds, more on a loaded
                # submit host) is saved.
                pending = [
                    n for n, job in batch.jobs.items() if not Workdir(out / n).final(job.basename).exists()
                ]
                if pending:
                    for name in pending:  # the graph loads them, and plans nothing again
                        publish_plan(plans[name], Workdir(out / name).plan)
                    argv = graph_argv(out, options, f"batch={folder}", "planned=True")
                    argv += comfyui_resources(batch.jobs.values(), options)
                    argv += ["--keep-going"] if keep_going else []
                    unlock_abandoned(out, log)
                    returncode = _drive(argv, log, lock_owner, None, again)
                    if returncode != 0 and not any(existing_run_id(Workdir(out / n)) for n in batch.jobs):
                        raise _not_started("batch", lock_owner, options.profile)
            except VaError as exc:  # a stop while leftovers were waited for, or while the graph ran
                if exc.code != ExitCode.INTERRUPTED:
                    raise
                stopped = exc
        for name, job in batch.jobs.items():  # a final published, its end not recorded (a kill)
            reconcile(Workdir(out / name), job.basename)
    rows = summarize(out, names, batch.problems)
    failed = sum(1 for row in rows if row["status"] != "succeeded")
    if stopped is not None:
        done = len(rows) - failed
        return BatchResult(
            stopped.code,
            rows,
            f"interrupted ({done} of {len(rows)} job(s) succeeded); continue with: {again}",
        )
    if failed:
        return BatchResult(ExitCode.BATCH_INCOMPLETE, rows, f"{failed} of {len(rows)} job(s) did not succeed")
    return BatchResult(ExitCode.OK, rows)
