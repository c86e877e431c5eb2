"""``va report``: Snakemake's HTML report of a finished run or batch: the final videos, a contact sheet
and a waveform of each, and the runtime of every rule."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from va.atomic import partial_file, read_json, write_json_atomic
from va.batch import SELECTION, job_name
from va.errors import ExitCode, VaError, place_unusable
from va.manifest import Manifest, build_manifest
from va.memo import FileIdentity, IdentityData, identity_of
from va.runner import snakemake_command, workdir_lock
from va.workdir import Workdir

#: The target rule of the figures (rules/report.smk), asked for by ``va report`` only.
TARGET = "report_images"
#: The only rules ``va report`` lets Snakemake run: it draws figures, it never redoes a video.
FIGURE_RULES = ("report_contact_sheet", "report_waveform", "report_sync", TARGET)
REPORT_NAME = "report.html"


@dataclass(frozen=True)
class ReportSource:
    """A finished run or batch: the folder its graph ran in and the ``--config`` entry naming its jobs."""

    root: Path
    config: str


def find_source(path: Path) -> ReportSource:
    """The run (``va run``'s workdir) or batch (``va batch``'s output folder) at ``path``, if it finished.

    A batch counts as finished when one of its jobs did; the report shows the finished ones.
    """
    root = path.absolute()
    if not root.exists():
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"not found: {path}")
    if not root.is_dir():
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"{path} is a file, not a run's workdir or a batch's folder")
    manifest = build_manifest(Workdir(root))
    if manifest is not None:
        return _run_source(root, manifest)
    return _batch_source(root)


def _batch_source(root: Path) -> ReportSource:
    # A batch runs each job in a folder named after its job file; another run in a subfolder is not its own.
    runs = [
        manifest
        for folder in sorted(root.iterdir())
        if folder.is_dir()
        and (manifest := build_manifest(Workdir(folder)))
        and folder.name == job_name(Path(manifest["job"]))
    ]
    if not runs and not (root / SELECTION).is_file():
        raise VaError(
            ExitCode.INPUT_NOT_FOUND,
            f"{root} is neither a run's workdir (va run) nor a batch's output folder (va batch)",
        )
    finished = [manifest for manifest in runs if manifest["final"]["exists"]]
    if not finished:
        raise VaError(
            ExitCode.INPUT_NOT_FOUND,
            f"no finished video in the batch {root}; finish it first: va batch DIR --out {root}",
        )
    folders = sorted({str(Path(manifest["job"]).parent) for manifest in finished})
    if len(folders) != 1:
        raise VaError(
            ExitCode.VALIDATION_FAILED, f"the jobs in {root} come from several folders: {', '.join(folders)}"
        )
    if not Path(folders[0]).is_dir():
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"the job folder of the batch {root} is gone: {folders[0]}")
    return ReportSource(root, f"batch={folders[0]}")


def _run_source(root: Path, manifest: Manifest) -> ReportSource:
    if not manifest["final"]["exists"]:
        raise VaError(
            ExitCode.INPUT_NOT_FOUND,
            f"no finished video in {root} (the run is {manifest['run_status']}); "
            f"finish it first: va run JOB --workdir {root} --resume",
        )
    job = Path(manifest["job"])
    if not job.is_file():
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"the job file of the run in {root} is gone: {job}")
    return ReportSource(root, f"job={job}")


def graph_argv(source: ReportSource, *extra: str) -> list[str]:
    """The Snakemake command line for ``source``'s graph, limited to its finished jobs."""
    return [*snakemake_command(source.root, source.config, "finished_only=True"), *extra]


def make_report(path: Path, output: Path | None = None, *, cores: int | None = None) -> Path:
    """Draw the figures of the finished run or batch at ``path``, then write its report (default
    ``PATH/report.html``; a ``.zip`` keeps the videos as files beside the page). Returns the report's path.
    """
    if output is not None and output.suffix not in {".html", ".zip"}:
        raise VaError(ExitCode.USAGE, f"--output {output}: a report is an .html or a .zip file")
    source = find_source(path)
    target = (output or source.root / REPORT_NAME).absolute()
    try:  # before the figures are drawn: a place the report cannot go is said at once, in one line
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise place_unusable(ExitCode.WORKDIR_UNUSABLE, "report folder", target.parent, exc) from exc
    owner = Workdir(source.root)
    with workdir_lock(owner):
        refuse_foreign(target, owner)
        # No Snakemake lock: ours keeps other va runs out, and only the figure rules may run.
        figures = ["--nolock", "--allowed-rules", *FIGURE_RULES, "--cores", str(cores or os.cpu_count() or 1)]
        _snakemake(graph_argv(source, *figures, TARGET), owner, ExitCode.ENCODE_FAILED, "drawing the figures")
        # Written in a scratch folder under its own name (a .zip names its inner folder after it), then moved.
        with partial_file(target) as partial:
            report = graph_argv(source, "--report", str(partial), TARGET)
            _snakemake(report, owner, ExitCode.INTERNAL, "snakemake --report")
        record_report(target, owner)
    return target


def _written(owner: Workdir) -> dict[str, IdentityData]:
    """The reports of ``owner`` that va wrote (path: identity data); none when the record is unreadable."""
    try:
        written = read_json(owner.reports)
    except (OSError, ValueError):
        return {}
    return written if isinstance(written, dict) else {}


def refuse_foreign(target: Path, owner: Workdir) -> None:
    """A file at ``target`` is replaced only when it is a report va wrote there and nobody changed since:
    anything else there is the user's (``OUTPUT_EXISTS``, one line, before any figure is drawn)."""
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir():
        recorded = _written(owner).get(str(target))
        try:
            if recorded is not None and FileIdentity.from_dict(recorded) == identity_of(target):
                return
        except (OSError, KeyError, TypeError):
            pass
    raise VaError(
        ExitCode.OUTPUT_EXISTS,
        f"{target} exists and is not a report va wrote there (or it was changed since); not overwriting it "
        "(choose another --output, or remove it)",
    )


def record_report(target: Path, owner: Workdir) -> None:
    """Note the report just written at ``target``, so that the next ``va report`` may replace it."""
    written = _written(owner)
    written[str(target)] = identity_of(target).as_dict()
    write_json_atomic(owner.reports, written, durable=False)


def _snakemake(argv: list[str], owner: Workdir, failure: ExitCode, what: str) -> None:
    """Run Snakemake, its output appended to the workdir's ``logs/snakemake.log``."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    owner.snakemake_log.parent.mkdir(parents=True, exist_ok=True)
    with open(owner.snakemake_log, "a", encoding="utf-8") as log:
        log.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise VaError(failure, f"{what} failed: {_snakemake_error(done.stderr, owner)}")


#: How Snakemake names the log of a rule that failed.
FAILED_RULE_LOG = re.compile(r"^\s*log: (\S+) \(check log file")


def _snakemake_error(stderr: str, owner: Workdir) -> str:
    """The error a failed rule wrote to its log, else Snakemake's first error line."""
    for line in stderr.splitlines():
        if (failed := FAILED_RULE_LOG.match(line)) and (rule_log := owner.root / failed.group(1)).is_file():
            text = rule_log.read_text(encoding="utf-8", errors="replace").splitlines()
            errors = [entry.split(" ERROR ", 1)[1] for entry in text if " ERROR " in entry]
            if errors:
                return f"{errors[-1]} (see {rule_log})"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return f"{(errors or lines or ['no message from snakemake'])[0]} (see {owner.snakemake_log})"
