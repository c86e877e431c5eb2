"""Cleanup of a finished run: remove what the graph can make again, keep what records the run.

``va clean W`` (a run's workdir or a batch's output folder) and ``cleanup.after_success: intermediates``
both come here. Kept: the final video, ``manifest.json``, ``job.json``, ``prepare/plan.json``, ``logs/``,
``benchmarks/``, ``report/``, ComfyUI's sent graphs, the lip-sync result record and any file va does not
make. Removed: the padded audio, the held still, ComfyUI's batches, clips and frames, the lip-sync inputs,
work folders and video, the stabilized and moving pictures. Deleting the final and ``--resume`` makes all
of it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from va.errors import ExitCode, VaError
from va.events import read_events
from va.manifest import build_manifest
from va.tracking import record, record_run_finished, run_finished
from va.workdir import Workdir

#: Folders whose every file a run makes again (apart from the records in ``KEPT``).
REMAKEABLE_FOLDERS = ("frames", "comfyui", "lipsync", "stabilize", "motion")
#: Single files a run makes again.
REMAKEABLE_FILES = ("prepare/padded.wav", "prepare/padded.m4a")
#: Records inside those folders that stay: what was sent to ComfyUI, what the lip-sync provider did.
KEPT_FOLDERS = ("comfyui/graphs",)
KEPT_FILES = frozenset({"lipsync/result.json"})


@dataclass(frozen=True)
class RemovedFile:
    """One file a cleanup removes (or, in a dry run, would remove)."""

    path: str  # relative to the workdir
    bytes: int


@dataclass(frozen=True)
class CleanedRun:
    """What cleaning one run's workdir removed."""

    workdir: Path
    removed: tuple[RemovedFile, ...]
    dry_run: bool

    @property
    def bytes_freed(self) -> int:
        return sum(item.bytes for item in self.removed)


@dataclass(frozen=True)
class CleanReport:
    """What ``va clean`` did to a run or to each run of a batch, and the runs it left alone (with why)."""

    runs: tuple[CleanedRun, ...]
    refused: tuple[VaError, ...]

    @property
    def bytes_freed(self) -> int:
        return sum(run.bytes_freed for run in self.runs)


def remakeable_files(workdir: Workdir) -> list[Path]:
    """The files of ``workdir`` a run can make again, in path order."""
    root = workdir.root
    found = [root / name for name in REMAKEABLE_FILES if (root / name).is_file()]
    for folder in REMAKEABLE_FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            relative = path.relative_to(root).as_posix()
            kept = relative in KEPT_FILES or any(relative.startswith(f"{k}/") for k in KEPT_FOLDERS)
            if path.is_file() and not path.is_symlink() and not kept:
                found.append(path)
    # A scratch folder of an encode that was killed (the next encode would remove it too).
    found += sorted(p for p in root.glob(".encode-*/**/*") if p.is_file())
    return found


def record_success(workdir: Workdir, after_success: str) -> None:
    """The end of a run whose final is published, recorded right then (a batch records each job's end
    when its own final is there, not when the whole graph ends); then its intermediates are removed when
    the job asks (``cleanup.after_success: intermediates``). A cleanup that fails is logged: the final
    is made and recorded, so the rule that published it must not fail.

    Nor does a record that cannot be written (a full workdir or state dir): the final is published and
    checked, and a rule that fails after that has Snakemake delete the outputs of a failed job, the final
    among them. It is logged here; ``va`` says it, with its exit code, when it records the run's end."""
    try:
        if not run_finished(workdir):
            record_run_finished(workdir)
    except (VaError, OSError) as exc:
        logging.getLogger(__name__).error("the final is published, but its end is not recorded: %s", exc)
        return
    if after_success != "intermediates":
        return
    try:
        clean_run(workdir, trigger="cleanup.after_success")
    except (VaError, OSError) as exc:
        logging.getLogger(__name__).warning("cleanup.after_success of %s failed: %s", workdir.root, exc)


def clean_run(workdir: Workdir, *, dry_run: bool = False, trigger: str = "va clean") -> CleanedRun:
    """Remove what a succeeded run can make again and record it in its manifest; a run that has not
    succeeded (running, failed, interrupted) is refused with ``RUN_NOT_FINISHED``."""
    manifest = build_manifest(workdir)
    if manifest is None:
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"no run recorded in {workdir.root}")
    if manifest["run_status"] != "succeeded":
        raise VaError(
            ExitCode.RUN_NOT_FINISHED,
            f"{workdir.root}: the run is {manifest['run_status']}; only a succeeded run is cleaned "
            "(its intermediates are what --resume continues from)",
        )
    removed = tuple(
        RemovedFile(str(path.relative_to(workdir.root)), path.stat().st_size)
        for path in remakeable_files(workdir)
    )
    result = CleanedRun(workdir.root, removed, dry_run)
    if dry_run or not removed:
        return result
    for item in removed:
        (workdir.root / item.path).unlink(missing_ok=True)
    _remove_empty_folders(workdir)
    record(
        workdir,
        "cleanup",
        "info",
        f"{trigger}: removed {len(removed)} file(s), {result.bytes_freed} bytes freed",
        kind="cleanup",
        trigger=trigger,
        removed=[item.path for item in removed],
        bytes_freed=result.bytes_freed,
    )
    return result


def _remove_empty_folders(workdir: Workdir) -> None:
    folders = [workdir.root / name for name in REMAKEABLE_FOLDERS] + list(workdir.root.glob(".encode-*"))
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        if not any(folder.iterdir()):
            folder.rmdir()


def _is_run(folder: Path) -> bool:
    return any(e.get("kind") == "run_started" for e in read_events(Workdir(folder).events))


def clean(path: Path, *, dry_run: bool = False) -> CleanReport:
    """Clean a run's workdir, or every run of a batch's output folder (its succeeded runs; the others
    are reported as refused). A run or batch in use by a ``va`` process is refused."""
    path = path.absolute()
    if path.exists() and not path.is_dir():
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"{path} is a file, not a run's workdir or a batch's folder")
    if not path.is_dir():
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"no such folder: {path}")
    if _is_run(path):
        with _not_in_use(Workdir(path)):
            return CleanReport((clean_run(Workdir(path), dry_run=dry_run),), ())
    runs = sorted(child for child in path.iterdir() if child.is_dir() and _is_run(child))
    if not runs:
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"{path} is neither a run's workdir nor a batch's folder")
    cleaned, refused = [], []
    with _not_in_use(Workdir(path)):
        for run in runs:
            try:
                cleaned.append(clean_run(Workdir(run), dry_run=dry_run))
            except VaError as exc:
                refused.append(exc)
    return CleanReport(tuple(cleaned), tuple(refused))


@contextmanager
def _not_in_use(workdir: Workdir) -> Iterator[None]:
    """Hold the lock a ``va`` process driving a run (or batch) holds, so none starts while we clean."""
    from va.runner import workdir_lock  # noqa: PLC0415 - the runner's imports only where a lock is taken

    try:
        with workdir_lock(workdir):
            yield
    except VaError as exc:
        if exc.code != ExitCode.OUTPUT_EXISTS:
            raise
        message = f"{workdir.root} is in use by a running va run; not cleaning it"
        raise VaError(ExitCode.RUN_NOT_FINISHED, message) from exc
