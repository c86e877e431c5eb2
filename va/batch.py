"""Batches: every job file of a folder, run as one Snakemake graph into ``OUT/<job-name>/``."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from va.errors import ExitCode, VaError
from va.job import Job, load_job
from va.manifest import EventDigest, build_manifest, current_digest, epoch
from va.plan import changed_fields, plan_fingerprint, plan_job, previous_plan
from va.workdir import Workdir

NAME = re.compile(r"[^A-Za-z0-9_.-]")
#: Written by ``va batch`` into OUT: the names of the jobs that passed its checks.
SELECTION = ".va-batch-jobs.txt"
#: Names in OUT the batch uses itself (its logs, ``va report``'s page), never a job's folder; nor is a name
#: that starts with ``.`` (Snakemake's ``.snakemake``, the selection above, ``.`` and ``..``). Compared
#: ignoring case where OUT's file system does (``folds_case``).
RESERVED = frozenset({"logs", "report.html"})


def job_name(path: Path) -> str:
    """The folder name of a job in the batch: its file name without ``.json``, made path-safe."""
    return NAME.sub("_", path.stem) or "job"


def folds_case(out: Path) -> bool:
    """Whether the file system of ``out`` (of its nearest existing folder while it is not made yet) ignores
    the case of names, as macOS, exFAT and SMB do: there ``A`` and ``a`` are one folder. Asked once a
    folder in a process (``_probe_case``)."""
    place = out.absolute()
    while not place.is_dir() and place.parent != place:
        place = place.parent
    return _probe_case(place)


@functools.cache
def _probe_case(place: Path) -> bool:
    """Make a file of a unique lower-case name in ``place`` and look it up by its upper-case name: the
    same file where case is ignored. A folder no file can be made in is taken as ignoring case (the
    stricter comparison; the batch cannot write there anyway)."""
    try:
        handle, name = tempfile.mkstemp(prefix=".va-case-", suffix=".probe", dir=place)
    except OSError:
        return True
    try:
        # No other file has that name in capitals: one found is this one (a network file system may show
        # it with another inode number, so the lookup's success is the answer, not the inodes).
        try:
            os.stat(place / Path(name).name.upper())
        except OSError:
            return False
        return True
    finally:
        os.close(handle)
        with contextlib.suppress(OSError):
            os.unlink(name)


def name_jobs(paths: list[Path], out: Path | None = None) -> tuple[dict[str, Path], dict[str, VaError]]:
    """The folder name of each job file (``paths`` in name order), and the problem of each file that
    gets none: a name the batch uses itself (``RESERVED``, or starting with ``.``), or a name another file
    has too (``a job.json`` and ``a_job.json`` are both ``a_job``; ``A.json`` and ``a.json`` are one folder
    where the file system of ``out`` ignores case, ``folds_case``, and two elsewhere or without ``out``).
    Of files sharing a name, the one whose run the folder in ``out`` holds keeps it (``owner``), else the
    first in name order; the others are refused. Such a problem is ``OUTPUT_EXISTS`` (status
    ``refused``), kept for a reserved name under the name, for a taken name under the file's name
    (``a_job.json``, ``a.json``), so that every file has a row."""
    folding = out is not None and folds_case(out)

    def compared(name: str) -> str:
        return name.casefold() if folding else name

    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(compared(job_name(path)), []).append(path)
    every = {job_name(path) for path in paths}
    names: dict[str, Path] = {}
    problems: dict[str, VaError] = {}

    def file_key(path: Path) -> str:  # a row of its own for each file
        return path.name if path.name not in every else str(path)

    case = (", and case is ignored", ", in any case") if folding else ("", "")
    for folded, group in groups.items():
        if folded.startswith(".") or folded in RESERVED:
            for path in group:
                name = job_name(path)
                problems[name if name not in problems else file_key(path)] = VaError(
                    ExitCode.OUTPUT_EXISTS,
                    f"{path}: its folder name {name} is one the batch uses itself (logs, report.html, or a "
                    f"name starting with '.'{case[1]}); rename the job file",
                )
            continue
        first = owner(group, out)
        names[job_name(first)] = first
        why = "whose run its folder holds" if first != group[0] else "which comes first"
        for path in group:
            if path != first:
                problems[file_key(path)] = VaError(
                    ExitCode.OUTPUT_EXISTS,
                    f"{path}: its folder name {job_name(path)} is that of {first}, {why} (each character "
                    f"outside A-Za-z0-9_.- becomes _{case[0]}); rename one of them",
                )
    return names, problems


def owner(group: list[Path], out: Path | None) -> Path:
    """Of job files sharing a folder name (in name order), the one whose run a folder of theirs in ``out``
    records (by its path, else by its file name: the batch folder moved), else the first."""
    if len(group) == 1 or out is None:
        return group[0]
    for path in group:
        folder = Workdir(out / job_name(path))
        start = current_digest(folder).last_start if folder.root.is_dir() else None
        if start is None:
            continue
        recorded = Path(str(start.get("job")))
        found = next((p for p in group if p.resolve() == recorded.resolve()), None)
        found = found or next((p for p in group if p.name == recorded.name), None)
        if found is not None:
            return found
    return group[0]


def discover(folder: Path) -> list[Path]:
    """The job files of a batch folder (``*.json``), in name order."""
    if folder.exists() and not folder.is_dir():
        raise VaError(
            ExitCode.INPUT_NOT_FOUND, f"{folder} is a file, not a batch folder (va run runs one job file)"
        )
    if not folder.is_dir():
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"batch folder not found: {folder}")
    return sorted(p for p in folder.glob("*.json") if p.is_file())


@dataclass
class Batch:
    """The jobs of a batch folder that can run, and the problem of each one that cannot."""

    folder: Path
    jobs: dict[str, Job] = field(default_factory=dict)
    problems: dict[str, VaError] = field(default_factory=dict)


def load_batch(
    folder: Path,
    *,
    only: set[str] | None = None,
    check: Callable[[Job], object] | None = None,
    workers: int = 8,
    out: Path | None = None,
    folders: Path | None = None,
) -> Batch:
    """Load (and with ``check``, also check) every job of ``folder``; a bad job is kept as a problem.

    ``check`` is called with each loaded job (e.g. to probe its inputs) in a pool of ``workers`` threads;
    with ``workers=1`` (a check that waits for no process), one job after the other. With ``out`` (the
    batch's output folder), a job whose folder there holds another job's run, or a video made from an
    earlier version of the job, is a problem too (``check_made_here``). ``folders`` (default ``out``): where
    the jobs' folders are, which decide who keeps a name files share (``name_jobs``).
    """
    batch = Batch(folder)
    paths, batch.problems = name_jobs(discover(folder), folders or out)
    if only is not None:
        paths = {name: path for name, path in paths.items() if name in only}
        batch.problems = {name: problem for name, problem in batch.problems.items() if name in only}

    def load(item: tuple[str, Path]) -> tuple[str, Job | VaError]:
        name, path = item
        try:
            job = load_job(path)
            if check is not None:
                check(job)
            if out is not None:
                check_made_here(Workdir(out / name), job)
            return name, job
        except VaError as exc:
            return name, exc

    # The checks wait for ffprobe, so they overlap in threads; loading alone is Python work, which
    # threads only slow down (the GIL handed between them: 1,000 jobs 1.07 s in 8 threads, 0.79 s in one).
    if check is None or workers == 1:
        _sort_outcomes(batch, map(load, paths.items()))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            _sort_outcomes(batch, pool.map(load, paths.items()))
    return batch


def check_made_here(workdir: Workdir, job: Job, option: str = "--out") -> None:
    """A job's folder of a batch holds the run of that job only, and its finished video is what the job
    makes now: a folder that holds the run of another job file under the same name (another batch folder
    sent to the same OUT), or a video made from an earlier version of the job (an edit, an input changed)
    is ``OUTPUT_EXISTS`` with one line naming what changed, never a success. Compared by the plan's
    fingerprint (``va.plan.plan_fingerprint``) against the plan that made the folder's run
    (``prepare/plan.json``); a job file moved with its batch makes the same plan, and is its run still.
    An unfinished run of the same job file continues with the job as it is now (only what an edit
    affects is made again). ``option`` chooses another folder (``va run --resume``: ``--workdir``)."""
    if not workdir.root.is_dir():
        return
    start = current_digest(workdir).last_start
    final = workdir.final(job.basename)
    if start is None:  # no run recorded: a video there is someone else's file (as for va run)
        if final.exists():
            raise VaError(
                ExitCode.OUTPUT_EXISTS, f"{final} exists; not overwriting it (choose another {option})"
            )
        return
    recorded = Path(str(start.get("job")))
    same_file = recorded.resolve() == job.path.resolve()
    if same_file and not final.exists():
        return
    made = previous_plan(workdir.plan)
    plan = plan_job(job, made) if made is not None else None
    if plan is not None and made is not None and plan_fingerprint(plan) == plan_fingerprint(made):
        return
    changes = ", ".join(sorted(set(changed_fields(made, plan)) - {"job"})) if plan is not None else ""
    changed = f" (changed: {changes})" if changes else ""
    if not same_file:
        raise VaError(
            ExitCode.OUTPUT_EXISTS,
            f"{workdir.root} holds the run of another job, {recorded}{changed}; not mixing {job.path} "
            f"into it (choose another {option})",
        )
    raise VaError(
        ExitCode.OUTPUT_EXISTS,
        f"{final} was made from an earlier version of {job.path}{changed}; not making it again over the "
        f"finished video (delete it to make it anew, or choose another {option})",
    )


def left_out_line(batch: Batch) -> str:
    """The last line of plain snakemake on a batch that left jobs out: how many, and which."""
    total = len(batch.jobs) + len(batch.problems)
    names = ", ".join(sorted(batch.problems))
    return f"va batch: {len(batch.problems)} of {total} job(s) left out (see the lines above): {names}"


def _sort_outcomes(batch: Batch, outcomes: Iterable[tuple[str, Job | VaError]]) -> None:
    for name, outcome in outcomes:
        if isinstance(outcome, VaError):
            batch.problems[name] = outcome
        else:
            batch.jobs[name] = outcome


def read_selection(out: Path) -> set[str] | None:
    """The job names ``va batch`` selected for this graph, if it wrote a selection."""
    path = out / SELECTION
    if not path.is_file():
        return None
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def work_and_wall(digest: EventDigest) -> tuple[float | None, float | None]:
    """A job's work (the sum of its rules' own seconds, whichever attempt ran them) and its wall time
    (from the start of its latest attempt to its end: waiting for cores or in a cluster's queue too)."""
    seconds = [
        entry["last"]["seconds"]
        for entry in digest.rules.values()
        if entry.get("last", {}).get("kind") == "rule_finished" and entry["last"].get("seconds") is not None
    ]
    work = round(sum(seconds), 3) if seconds else None
    began = epoch(digest.last_start.get("ts")) if digest.last_start else None
    ended = epoch(digest.finished.get("ts")) if digest.finished else None
    wall = round(ended - began, 3) if began is not None and ended is not None else None
    return work, wall


class BatchRow(TypedDict):
    """One job of a batch's summary: its status and exit code, the work and wall seconds of its run, and
    its video (None: not made), or why it could not run."""

    job: str
    status: str
    exit_code: int | None
    message: str | None
    work_seconds: float | None
    wall_seconds: float | None
    output: str | None


def summarize(out: Path, names: list[str], problems: dict[str, VaError]) -> list[BatchRow]:
    """One row a job: its status, its work and wall seconds, and its video (or why it could not run)."""
    rows: list[BatchRow] = []
    for name in names:
        if name in problems:
            error = problems[name]
            status = "refused" if error.code == ExitCode.OUTPUT_EXISTS else "invalid"
            rows.append(
                BatchRow(
                    job=name,
                    status=status,
                    exit_code=int(error.code),
                    message=error.message,
                    work_seconds=None,
                    wall_seconds=None,
                    output=None,
                )
            )
            continue
        workdir = Workdir(out / name)
        digest = current_digest(workdir)
        manifest = build_manifest(workdir, digest)
        exit_status = manifest["exit_status"] if manifest else None
        work, wall = work_and_wall(digest)
        rows.append(
            {
                "job": name,
                "status": manifest["run_status"] if manifest else "not run",
                "exit_code": exit_status["code"] if exit_status else None,
                "message": exit_status["message"] if exit_status else None,
                "work_seconds": work,
                "wall_seconds": wall,
                "output": str(out / name / manifest["final"]["path"])
                if manifest and manifest["final"]["exists"]
                else None,
            }
        )
    return rows
