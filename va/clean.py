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

from va.atomic import read_json
from va.errors import ExitCode, VaError
from va.events import read_events
from va.manifest import Manifest, build_manifest
from va.tracking import record, record_run_finished, run_finished
from va.workdir import Workdir

#: Folders a stage of va owns whole (the lip-sync stage empties them itself on every attempt): the tool's
#: work folder and the inputs made for it, of the whole voice or of one chunk.
STAGE_FOLDERS = ("lipsync/work", "lipsync/input", "lipsync/chunks/*/work", "lipsync/chunks/*/input")
#: Outputs of rules that stay: what the lip-sync provider did, and the captions beside the final.
KEPT_FILES = frozenset({"lipsync/result.json", "captions.srt", "captions.vtt"})


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


def remakeable_files(workdir: Workdir, manifest: Manifest) -> list[Path]:
    """The files of ``workdir`` its run's records say it made and can make again, in path order: the
    outputs of its rules (the final and the records kept), the files each ComfyUI batch record names,
    the folders a stage owns whole (``STAGE_FOLDERS``) and scratch folders of va's encodes. Nothing else
    is looked at: a file of the user's, or of another run, in ``frames/`` or anywhere stays."""
    root = workdir.root.absolute()
    output = (manifest["effective_params"] or {}).get("output")
    final = str(output.get("basename", "")) if isinstance(output, dict) else ""
    named = {
        output
        for phase in manifest["phases"].values()
        for output in phase.get("outputs", [])
        if output not in KEPT_FILES and output != final
    }
    for batch in [output for output in named if output.startswith("comfyui/batches/")]:
        named.update(_batch_files(root, root / batch))
    found = {root / name for name in named}
    for pattern in STAGE_FOLDERS:
        found.update(path for folder in root.glob(pattern) for path in folder.rglob("*"))
    # A scratch folder of an encode that was killed, beside what it was making (the next encode would
    # remove it too).
    for folder in {root} | {path.parent for path in found}:
        found.update(path for scratch in folder.glob(".encode-*") for path in scratch.rglob("*"))
    return sorted(path for path in found if path.is_file() and not path.is_symlink())


def remove_empty_outputs(workdir: Workdir, basename: str) -> list[str]:
    """Remove the run's rule outputs that are empty (a power cut leaves a file renamed into place whose
    data never reached the disk), so that a resume makes them again instead of failing on them; returns
    them. The final and the captions (which may be empty) are not looked at."""
    manifest = build_manifest(workdir)
    if manifest is None:
        return []
    root = workdir.root.absolute()
    spared = {basename, "captions.srt", "captions.vtt"}
    outputs = {output for phase in manifest.get("phases", {}).values() for output in phase.get("outputs", [])}
    empty = sorted(
        name for name in outputs - spared if (root / name).is_file() and (root / name).stat().st_size == 0
    )
    for name in empty:
        (root / name).unlink(missing_ok=True)
    if empty:
        message = (
            f"removed {len(empty)} empty file(s) a cut write left, to make them again: {', '.join(empty)}"
        )
        record(workdir, "run", "warning", message, kind="log")
    return empty


def _batch_files(root: Path, record: Path) -> list[str]:
    """The files a ComfyUI batch record names (its frames or its clip), relative to the workdir; none
    outside it."""
    try:
        files = read_json(record).get("files") or []
    except (OSError, ValueError, AttributeError):
        return []
    inside = [Path(str(name)).absolute() for name in files]
    return [str(path.relative_to(root)) for path in inside if path.is_relative_to(root)]


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
    root = workdir.root.absolute()
    removed = tuple(
        RemovedFile(str(path.relative_to(root)), path.stat().st_size)
        for path in remakeable_files(workdir, manifest)
    )
    result = CleanedRun(workdir.root, removed, dry_run)
    if dry_run or not removed:
        return result
    for item in removed:
        (workdir.root / item.path).unlink(missing_ok=True)
    _remove_empty_folders(workdir, removed)
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


def _remove_empty_folders(workdir: Workdir, removed: tuple[RemovedFile, ...]) -> None:
    """Remove the folders the removed files leave empty, up to the workdir (never a folder that holds
    anything else)."""
    root = workdir.root.absolute()
    folders = {
        parent
        for item in removed
        for parent in (root / item.path).parents
        if parent != root and parent.is_relative_to(root)
    }
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
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
