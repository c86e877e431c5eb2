"""The ``va`` command line: a thin layer over the package.

Every error a user can cause becomes one line on stderr and one exit code, here and nowhere else.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
import typing
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import va
import va.startup  # first: a stop while the package loads is one line and 130
from va import registry
from va.clean import clean
from va.errors import DISK_FAILURES, ExitCode, VaError
from va.events import Event, follow_events, follow_lines, format_event, read_events
from va.job import job_from_document
from va.lipsync import sync
from va.manifest import TERMINAL, Manifest, Phase, build_manifest
from va.motion import motion_warnings
from va.plan import Plan, plan_run
from va.produce import Flag, ProduceRequest, build_job, write_produced_job
from va.progress import RunDisplay, batches_note
from va.report import make_report
from va.retake import RetakeRequest, prepare_retake
from va.runner import (
    RunOptions,
    default_workdir,
    ensure_workdir,
    prepare_run,
    run_batch,
    run_job,
)
from va.state import state_dir
from va.tracking import reconcile
from va.workdir import Workdir

va.startup.loaded()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, as argparse does, without the usage block
        self.exit(int(ExitCode.USAGE), f"va: usage error: {message} (see va --help)\n")


def _path(text: str) -> Path:
    """A path argument; an empty one (``--workdir ""``, a shell variable that was not set) is refused,
    where ``Path("")`` would quietly be the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def _count(text: str) -> int:
    """A number of cores: a whole number of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _path_text(text: str) -> str:
    """A path argument as text (``_path``'s check)."""
    return str(_path(text))


def add_request_flags(parser: argparse.ArgumentParser) -> None:
    """``va produce``'s flags: one a field of ``ProduceRequest``, spelled, typed and explained there."""
    hints = typing.get_type_hints(ProduceRequest, include_extras=True)
    for field in dataclasses.fields(ProduceRequest):
        kind, *extras = typing.get_args(hints[field.name])
        flag = next(extra for extra in extras if isinstance(extra, Flag))
        names = (*(flag.names or (f"--{field.name.replace('_', '-')}",)), *flag.aliases)
        if kind is bool:
            parser.add_argument(*names, dest=field.name, action="store_true", help=flag.help)
            continue
        value = next(arg for arg in typing.get_args(kind) or (kind,) if arg is not type(None))
        while typing.get_origin(value) is typing.Annotated:  # a type with limits: VIDAX's to check
            value = typing.get_args(value)[0]
        choices = typing.get_args(value) if typing.get_origin(value) is typing.Literal else None
        parser.add_argument(
            *names,
            dest=field.name,
            type=_path_text if flag.path else str if choices else value,
            choices=choices,
            required=field.default is dataclasses.MISSING,
            default=None if field.default is dataclasses.MISSING else field.default,
            metavar=flag.metavar,
            help=flag.help,
        )


def produce_request(args: argparse.Namespace) -> ProduceRequest:
    """The request ``va produce``'s flags make (``add_request_flags``)."""
    return ProduceRequest(
        **{field.name: getattr(args, field.name) for field in dataclasses.fields(ProduceRequest)}
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="va", description="VideoAudio Runner: a voice track and a start image become a video."
    )
    parser.add_argument("--version", action="version", version=f"va {va.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    doctor = commands.add_parser(
        "doctor", help="check ffmpeg, Python, Snakemake, state dir, configs, ComfyUI"
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")

    install = commands.add_parser(
        "install", help="create the state dir, copy configs, fetch and verify assets"
    )
    install.add_argument("--force", action="store_true", help="replace edited configs (a backup is kept)")
    install.add_argument("--with-optional", action="store_true", help="also fetch assets marked optional")
    install.add_argument("--status", action="store_true", help="only report which assets are present")
    install.add_argument("--json", action="store_true", help="machine-readable output")

    commands.add_parser("serve", help="run VIDAX, the HTTP API (config: VIDAX_CONFIG, state dir, repository)")

    validate = commands.add_parser("validate", help="check a job file and its inputs; changes nothing")
    validate.add_argument("job", type=_path)

    run = commands.add_parser("run", help="run a job file to its final video")
    run.add_argument("job", type=_path)
    _add_run_options(run)

    retake = commands.add_parser(
        "retake", help="make the segment at a moment again (and, in a chain, those after it), then the final"
    )
    retake.add_argument("workdir", type=_path, help="the run's workdir")
    retake.add_argument("--at", type=float, required=True, metavar="SECONDS", help="a moment of the video")
    retake.add_argument("--seed", type=int, help="the new take's seed (default: a fresh one)")
    retake.add_argument("--prompt", help="the new take's prompt (default: the segment's)")
    retake.add_argument("--cores", type=_count, help="cores Snakemake may use (default: all)")
    retake.add_argument("--profile", help="Snakemake profile: a name in profiles/ or a path")
    retake.add_argument("--quiet", "-q", action="store_true", help="print only the result")

    produce = commands.add_parser(
        "produce", help="write W/job.json from flags and run it (final: fertig.mp4)"
    )
    add_request_flags(produce)
    _add_run_options(produce)

    batch = commands.add_parser("batch", help="run every job file of a folder as one graph")
    batch.add_argument("folder", type=_path, help="folder of job files (*.json)")
    batch.add_argument("--out", type=_path, help="output folder (default ./workdir/batch-<folder name>)")
    batch.add_argument("--cores", type=_count, help="cores Snakemake may use (default: all)")
    batch.add_argument("--profile", help="Snakemake profile: a name in profiles/ or a path")
    batch.add_argument("--keep-going", action="store_true", help="run the other jobs when one fails")
    batch.add_argument("--json", action="store_true", help="machine-readable summary")

    status = commands.add_parser("status", help="one run's phases and figures, or every registered run")
    status.add_argument("run", nargs="?", help="a workdir or a run id")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    logs = commands.add_parser("logs", help="print a run's events (logs/events.jsonl)")
    logs.add_argument("run", help="a workdir or a run id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    logs.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --follow: how long to wait for a run to start in an existing, still empty workdir",
    )
    shown = logs.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print the raw JSON lines")
    shown.add_argument("--text", action="store_true", help="print the plain-text log (logs/runner.log)")

    clean = commands.add_parser(
        "clean", help="remove what a succeeded run (or each of a batch) can make again; keep its records"
    )
    clean.add_argument("path", type=_path, help="a run's workdir or a batch's output folder (--out)")
    clean.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    clean.add_argument("--json", action="store_true", help="machine-readable output")

    report = commands.add_parser(
        "report", help="Snakemake's HTML report of a finished run or batch: videos, figures, rule runtimes"
    )
    report.add_argument("path", type=_path, help="a run's workdir or a batch's output folder (--out)")
    report.add_argument("--output", type=_path, help="report file, .html or .zip (default PATH/report.html)")
    _add_workflow_parser(commands)
    return parser


def _add_workflow_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    workflow = commands.add_parser("workflow", help="import ComfyUI workflows as templates; check templates")
    actions = workflow.add_subparsers(dest="action", required=True, parser_class=_Parser)
    imports = actions.add_parser(
        "import", help="an editor-format workflow (ComfyUI's Save) as a template W.json + W.bindings.json"
    )
    imports.add_argument("file", nargs="?", type=_path, help="the workflow file (editor format)")
    imports.add_argument("--official", metavar="NAME", help="an official ComfyUI template by name")
    imports.add_argument("--name", help="the template id W (default: the file's name)")
    imports.add_argument(
        "--out", type=_path, help="folder for the files (default: the state dir's templates)"
    )
    imports.add_argument("--force", action="store_true", help="replace a template of that name")
    imports.add_argument("--json", action="store_true", help="machine-readable output")
    check = actions.add_parser(
        "check", help="a template and its bindings against a server's node definitions"
    )
    check.add_argument("workflow_id", metavar="W", help="the template id")
    for action in (imports, check):
        source = action.add_mutually_exclusive_group()
        source.add_argument(
            "--server", metavar="URL", help="ComfyUI to ask (default: comfyui.url of vidax.json)"
        )
        source.add_argument(
            "--object-info", type=_path, metavar="FILE", help="a saved GET /object_info (or .gz)"
        )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir", type=_path, help="run folder (default ./workdir/run-<timestamp>-<6 hex>)"
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --workdir")
    parser.add_argument("--cores", type=_count, help="cores Snakemake may use (default: all)")
    parser.add_argument("--profile", help="Snakemake profile: a name in profiles/ or a path")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the result")


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM stops a command as Ctrl-C does (exit 130, one line), also before a run's graph started
    (while the inputs are checked), where it killed ``va`` bare; a run's own handling takes over inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_as_ctrl_c():
            return int(COMMANDS[args.command](args))
    except VaError as exc:
        if args.debug:
            raise
        print(f"va: error: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        print("va: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`va status | head`): nothing more to say, and nothing to say it to.
        # stdout points at /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)
    except OSError as exc:
        if args.debug or exc.errno not in DISK_FAILURES:
            raise
        error = disk_failure(exc)
        print(f"va: error: {error.message}", file=sys.stderr)
        return int(error.code)
    except Exception as exc:
        if args.debug:
            raise
        print(f"va: internal error: {exc!r} (run with --debug for the traceback)", file=sys.stderr)
        return int(ExitCode.INTERNAL)


def disk_failure(exc: OSError) -> VaError:
    """A full or read-only disk, or a path too long for it, met anywhere: ``STATE_DIR_UNUSABLE`` when the
    file is in the state dir, else ``WORKDIR_UNUSABLE``, in one line naming the file."""
    where = Path(str(exc.filename or "")).absolute()
    state = state_dir().parent.absolute()
    in_state = exc.filename is not None and where.is_relative_to(state)
    code = ExitCode.STATE_DIR_UNUSABLE if in_state else ExitCode.WORKDIR_UNUSABLE
    return VaError(code, f"{exc.strerror or 'cannot write'}: {exc.filename or 'a file of the run'}")


def cmd_doctor(args: argparse.Namespace) -> ExitCode:
    """Report whether this machine can run jobs."""
    # Each command loads what it alone uses (here: the HTTP client of the ComfyUI check): a `va produce`
    # of a held still pays for none of it.
    from va import doctor  # noqa: PLC0415

    checks = doctor.run_checks()
    code = doctor.exit_code(checks)
    if args.json:
        print(
            json.dumps(
                {"ok": code == ExitCode.OK, "exit_code": int(code), "checks": [c.as_dict() for c in checks]}
            )
        )
    else:
        for check in checks:
            print(f"{check.status.upper():<5} {check.name:<26} {check.detail}")
        print("ready" if code == ExitCode.OK else f"not ready ({code.name})")
    return code


def cmd_install(args: argparse.Namespace) -> ExitCode:
    """Install the state dir and assets, or report their status."""
    from va import install  # noqa: PLC0415 - the download client, for this command alone

    report = (
        install.status()
        if args.status
        else install.install(force=args.force, with_optional=args.with_optional, progress=not args.json)
    )
    failure = report.failure()
    if args.json:  # the report goes to stdout even when an asset failed; the error line to stderr
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"state dir {report.state_dir}")
        for name, what in report.files.items():
            print(f"  {name:<48} {what}")
        print(f"assets from {report.manifest}")
        for outcome in report.assets:
            note = f"  ({outcome.message})" if outcome.message else ""
            print(f"  {outcome.id:<32} {outcome.status:<10} {outcome.destination}{note}")
        if not args.status and failure is None:
            print(
                f"downloaded {report.downloaded} asset(s)"
                if report.downloaded
                else "nothing to download: every asset is present and verified"
            )
    if failure is not None and not args.status:
        raise VaError(failure.code, failure.message)
    return ExitCode.OK


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP API until stopped."""
    from va.vidax.server import main as serve  # noqa: PLC0415 - load the web stack only to serve

    return serve()


def cmd_batch(args: argparse.Namespace) -> ExitCode:
    """Run a folder of jobs; print one row a job, also when the batch was stopped."""
    out = args.out or Path.cwd() / "workdir" / f"batch-{args.folder.absolute().name}"
    options = RunOptions(workdir=out, cores=args.cores, profile=args.profile)
    result = run_batch(args.folder, out, options, keep_going=args.keep_going)
    if args.json:
        document = {"exit_code": int(result.code), "out": str(out.absolute()), "jobs": result.rows}
        print(json.dumps(document, indent=2))
    else:
        print(f"{'JOB':<24} {'STATUS':<12} {'WORK S':>8} {'WALL S':>8}  OUTPUT / PROBLEM")
        for row in result.rows:
            work = "" if row["work_seconds"] is None else f"{row['work_seconds']:.2f}"
            wall = "" if row["wall_seconds"] is None else f"{row['wall_seconds']:.2f}"
            detail = row["output"] or row["message"] or ""
            print(f"{row['job']:<24} {row['status']:<12} {work:>8} {wall:>8}  {detail}")
    if result.message:
        print(f"va: {result.message}", file=sys.stderr)
    return result.code


def cmd_validate(args: argparse.Namespace) -> ExitCode:
    """Check a job (schema, inputs present and decodable) and print its plan, the one a run makes."""
    job, plan = prepare_run(args.job)
    for warning in motion_warnings(job):
        print(f"va: warning: {warning}", file=sys.stderr)
    picture, generation = plan.geometry, plan.comfyui
    print(
        f"ok: {job.path}: {plan.visual_target_duration_seconds:.3f} s, {plan.target_frames} frames "
        f"at {plan.fps} fps -> {job.basename}"
    )
    print(
        f"  audio     {plan.audio_input_duration_seconds:.3f} s of voice, {plan.buffer.pre_seconds:g} s "
        f"before, {plan.buffer.post_seconds:g} s after"
    )
    if plan.loudness is not None:
        loudness = plan.loudness
        print(f"  loudness  {loudness.target_lufs:g} LUFS, true peak {loudness.true_peak_db:g} dBTP")
    print(
        f"  picture   {picture.width}x{picture.height} ({picture.fit} on {picture.background}; start "
        f"{picture.source_width}x{picture.source_height}), x264 crf {plan.encoding.crf} "
        f"preset {plan.encoding.preset}"
    )
    if generation is None:
        print("  visual    the start frame held for every frame")
    elif generation.segments:
        contract, chain = generation.contract, "chained" if generation.chained else "independent"
        print(
            f"  visual    ComfyUI {', '.join(generation.workflow_ids)}: {generation.frames} frames at "
            f"{generation.fps} fps in {len(generation.segments)} {chain} segments"
            + (f" ({contract.frame_form}, at most {contract.max_frames} frames)" if contract else "")
        )
        for segment in generation.segments:
            print(
                f"  segment   {segment.name}  {segment.start_seconds:8.3f}-{segment.end_seconds:<8.3f} s  "
                f"{segment.frames:3d} frames ({segment.kept} kept)  seed {segment.seed}  cut {segment.cut}"
            )
    else:
        print(
            f"  visual    ComfyUI {', '.join(generation.workflow_ids)}: {generation.frames} frames at "
            f"{generation.fps} fps in {len(generation.batches)} batch(es) of up to {generation.batch_size}"
        )
    lipsync = f"{plan.lipsync.provider} ({plan.lipsync.type})" if plan.lipsync else "off"
    if generation is not None and generation.lipsync_in_model and plan.lipsync is None:
        lipsync = "in the model (the template's lipsync_in_model)"
    if plan.lipsync and plan.lipsync.chunked:
        longest = max(chunk.end_seconds - chunk.start_seconds for chunk in plan.lipsync.chunks)
        lipsync += f" in {len(plan.lipsync.chunks)} chunks of up to {longest:.2f} s"
    print(f"  lip-sync  {lipsync}")
    face = plan.lipsync.face if plan.lipsync else None
    if face is not None:
        seen = f"frame {face.frames[0]}" if len(face.frames) == 1 else f"{len(face.frames)} frames"
        if face.faceless_frame is not None or face.box is None:  # allow_passthrough: passed through
            print(f"  face      none in frame {face.faceless_frame}: the un-synced picture will be used")
        else:
            box = face.box
            print(f"  face      {box.width}x{box.height} at {box.x},{box.y} ({seen} of the start looked at)")
    drawn = " (drawn anew by each run)" if plan.seeds.policy == "random" else ""
    print(f"  seed      {plan.seeds.value} ({plan.seeds.policy}){drawn}")
    return ExitCode.OK


def _run(job_path: Path, args: argparse.Namespace, workdir: Path, planned: Plan | None = None) -> ExitCode:
    options = RunOptions(workdir=workdir, resume=args.resume, cores=args.cores, profile=args.profile)
    display = None if args.quiet else RunDisplay(workdir.absolute())
    try:
        result = run_job(job_path, options, on_event=display, planned=planned)
    finally:
        if display is not None:
            display.close()
    if result.code != ExitCode.OK:
        raise VaError(result.code, result.message)
    for warning in result.warnings:
        print(f"va: warning: {warning}", file=sys.stderr)
    lipsync = result.manifest["phases"].get("lipsync") if result.manifest else None
    record = lipsync.get("sync") if lipsync else None
    if record is not None and record["verdict"] == sync.OUT_OF_SYNC:  # on_fail: warn published it; say so
        print(f"va: warning: {sync.describe(record)}", file=sys.stderr)
    print(result.final)
    return ExitCode.OK


def cmd_run(args: argparse.Namespace) -> ExitCode:
    """Run a job file."""
    return _run(args.job, args, args.workdir or default_workdir())


def cmd_retake(args: argparse.Namespace) -> ExitCode:
    """Retake the segment at a moment of a finished (or stopped) run, then resume the run."""
    workdir = Workdir(args.workdir.absolute())
    done = prepare_retake(workdir, RetakeRequest(args.at, args.seed, args.prompt))
    segment = done.segment
    print(
        f"va: retaking segment {segment.name} ({segment.start_seconds:g}-{segment.end_seconds:g} s), "
        f"take {done.take}",
        file=sys.stderr,
    )
    if done.kept_final is not None:
        print(f"va: the previous final is kept as {done.kept_final}", file=sys.stderr)
    args.resume = True
    return _run(done.job, args, workdir.root)


def cmd_produce(args: argparse.Namespace) -> ExitCode:
    """Build a job from flags, write it to the workdir and run it."""
    document = build_job(produce_request(args))
    workdir = Workdir((args.workdir or default_workdir()).absolute())
    # Planned (and so checked) before the job file is written: bad flags leave nothing behind.
    plan = plan_run(job_from_document(document, workdir.produced_job), workdir)
    ensure_workdir(workdir)
    job_path = write_produced_job(workdir, document, args.resume)
    return _run(job_path, args, workdir.root, plan)


def resolve_run(ref: str) -> Workdir:
    """A workdir given by path, or by the id of a registered run."""
    path = Path(ref)
    if (path / "manifest.json").exists() or (path / "logs" / "events.jsonl").exists():
        return Workdir(path.absolute())
    entry = registry.find_run(ref)
    if entry is not None and entry.get("workdir"):
        return Workdir(Path(entry["workdir"]))
    if entry is not None:  # earlier versions registered a run stopped before its start was recorded so
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"no run found: {ref} is registered without a workdir")
    raise VaError(
        ExitCode.INPUT_NOT_FOUND, f"no run found: {ref} is neither a run's workdir nor a registered run id"
    )


def _status_of(workdir: Workdir) -> Manifest | None:
    return build_manifest(workdir) if workdir.events.exists() else None


def cmd_status(args: argparse.Namespace) -> ExitCode:
    """Show one run, or all registered runs."""
    if args.run:
        workdir = resolve_run(args.run)
        manifest = _status_of(workdir)
        if manifest is not None and reconcile(workdir, str(manifest["final"]["path"])):
            manifest = _status_of(workdir)
        if manifest is None:
            raise VaError(ExitCode.INPUT_NOT_FOUND, f"no run recorded in {workdir.root}")
        print(json.dumps(manifest, indent=2) if args.json else render_run(manifest))
        return ExitCode.OK
    rows = []
    entries, skipped = registry.read_runs()
    if skipped is not None:  # the others are listed; the line says which entries are not
        print(f"va: warning: {skipped}", file=sys.stderr)
    for entry in entries:
        # An entry without a workdir (earlier versions registered a run stopped between the record of
        # its start and its registration so, by its end alone) is listed as missing, not a crash.
        where = entry.get("workdir")
        manifest = _status_of(Workdir(Path(where))) if where else None
        status = manifest["run_status"] if manifest else "missing"
        rows.append({**entry, "workdir": where, "run_status": status})
    if args.json:
        print(json.dumps(rows, indent=2))
        return ExitCode.OK
    print(f"{'RUN ID':<34} {'STATUS':<12} {'UPDATED':<25} WORKDIR")
    for row in rows:
        updated, folder = row.get("updated_at", ""), row["workdir"] or "-"
        print(f"{row['run_id']:<34} {row['run_status']:<12} {updated:<25} {folder}")
    return ExitCode.OK


def comfyui_servers_lines(phase: Phase) -> list[str]:
    """The ComfyUI servers that made the batches, with their versions and counts; a pool whose servers
    report different versions is said to be mixed."""
    made = phase.get("batch_servers") or {}
    if not made:
        return []
    counts = Counter(entry["url"] for entry in made.values())
    versions = phase.get("comfyui_versions") or {}
    unit = "segment(s)" if phase.get("segments") else "batch(es)"
    named = ", ".join(
        f"{url} ({versions.get(url) or 'version unknown'}): {count} {unit}" for url, count in counts.items()
    )
    mixed = len({version for version in versions.values() if version}) > 1
    return ["", f"comfyui   {named}" + ("; a pool of mixed ComfyUI versions" if mixed else "")]


def render_run(manifest: Manifest) -> str:
    """One run's manifest as text for people."""
    exit_status = manifest["exit_status"]
    lines = [
        f"run       {manifest['run_id']}",
        f"status    {manifest['run_status']}"
        + (f" ({exit_status.get('name')}: {exit_status['message']})" if exit_status else ""),
        f"workdir   {manifest['workdir']}",
        f"job       {manifest['job']}",
        "",
        f"{'PHASE':<9} {'STATUS':<9} {'SECONDS':>8}  NOTE",
    ]
    for name, phase in manifest["phases"].items():
        seconds = "" if phase.get("seconds") is None else f"{phase['seconds']:.2f}"
        error = phase.get("error")
        note = phase.get("reason") or (error["message"] or "" if error else "")
        if phase.get("progress") and not note:
            note = batches_note(phase["progress"])
        if phase.get("chunks") and not note:
            chunks = phase["chunks"]
            note = f"{sum(c['status'] == 'done' for c in chunks)} of {len(chunks)} chunks"
        if phase.get("sync"):
            note = "; ".join(part for part in (note, sync.summary(phase["sync"])) if part)
        lines.append(f"{name:<9} {phase['status']:<9} {seconds:>8}  {note}")
    if manifest.get("target_frames") is not None:
        seeds = manifest["seeds"]
        lines += [
            "",
            f"audio     {manifest['audio_input_duration_seconds']} s input, "
            f"{manifest['audio_duration_seconds']} s padded",
            f"video     {manifest['target_frames']} frames at {manifest['fps']} fps "
            f"({manifest['visual_target_duration_seconds']} s)",
            f"seed      {seeds['value']} ({seeds['policy']})" if seeds else "seed      -",
        ]
    comfyui = manifest["phases"].get("comfyui")
    lines += comfyui_servers_lines(comfyui) if comfyui else []
    lines += segment_lines(comfyui) if comfyui else []
    cleanup = manifest["cleanup"]
    if cleanup:
        lines.append(
            f"cleaned   {cleanup['at']} ({cleanup['trigger']}): {cleanup['files_removed']} file(s), "
            f"{_size(cleanup['bytes_freed'])} freed"
        )
    final = manifest["final"]
    lines.append(
        f"final     {manifest['workdir']}/{final['path']}" + ("" if final["exists"] else " (not yet)")
    )
    return "\n".join(lines)


def segment_lines(phase: Phase) -> list[str]:
    """A generation by segments, one line a segment: index, time range, frames, seed and take, status,
    prompt id and attempts."""
    segments = phase.get("segments") or []
    if not segments:
        return []
    lines = [
        "",
        f"{'SEGMENT':<8} {'SECONDS':<17} {'FRAMES':>6} {'SEED':>8} {'TAKE':>4}  {'STATUS':<8} PROMPT",
    ]
    for segment in segments:
        span = f"{segment['start']:.3f}-{segment['end']:.3f}"
        made = (
            f"{segment['prompt_id']} ({segment['attempts']} attempt(s))" if segment.get("prompt_id") else "-"
        )
        figures = f"{segment['frames']:>6} {segment['seed']:>8} {segment['take']:>4}"
        lines.append(f"{segment['name']:<8} {span:<17} {figures}  {segment['status']:<8} {made}")
    return lines


def wait_for_run(ref: str, seconds: float) -> None:
    """Wait up to ``seconds`` for a run to record its start in the existing folder ``ref`` (a run that
    was just launched there has not yet written its first event)."""
    events = Workdir(Path(ref)).events
    deadline = time.monotonic() + seconds
    while Path(ref).is_dir() and not events.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def cmd_logs(args: argparse.Namespace) -> ExitCode:
    """Print (and follow) a run's event log."""
    if args.follow:
        wait_for_run(args.run, args.wait)
    workdir = resolve_run(args.run)

    def show(event: Event) -> None:
        print(json.dumps(event) if args.json else format_event(event), flush=True)

    def finished() -> bool:
        manifest = _status_of(workdir)
        return manifest is not None and manifest["run_status"] in TERMINAL

    if args.text:
        for line in follow_lines(workdir.text_log, lambda: not args.follow or finished()):
            print(line, flush=True)
        return ExitCode.OK
    if not args.follow:
        for event in read_events(workdir.events):
            show(event)
        return ExitCode.OK
    for event in follow_events(workdir.events, finished):
        show(event)
    return ExitCode.OK


def cmd_clean(args: argparse.Namespace) -> ExitCode:
    """Clean a run or a batch; print every file removed and the bytes freed."""
    report = clean(args.path, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        runs = [
            {
                "workdir": str(run.workdir),
                "removed": [{"path": item.path, "bytes": item.bytes} for item in run.removed],
                "bytes_freed": run.bytes_freed,
            }
            for run in report.runs
        ]
        refused = [error.as_dict() for error in report.refused]
        document = {
            "dry_run": args.dry_run,
            "runs": runs,
            "refused": refused,
            "bytes_freed": report.bytes_freed,
        }
        print(json.dumps(document, indent=2))
    else:
        for run in report.runs:
            for item in run.removed:
                print(f"{verb}  {_size(item.bytes):>10}  {run.workdir / item.path}")
        freed = "would free" if args.dry_run else "freed"
        print(f"{freed} {_size(report.bytes_freed)} ({report.bytes_freed} bytes)")
    for error in report.refused:
        print(f"va: not cleaned: {error.message}", file=sys.stderr)
    return ExitCode.RUN_NOT_FINISHED if report.refused else ExitCode.OK


def _size(count: int) -> str:
    """A byte count for people: B, KiB, MiB or GiB."""
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def cmd_report(args: argparse.Namespace) -> ExitCode:
    """Write the report of a finished run or batch; print its path."""
    print(make_report(args.path, args.output))
    return ExitCode.OK


def cmd_workflow(args: argparse.Namespace) -> ExitCode:
    """``va workflow import``: convert and write a template; ``va workflow check``: check one."""
    # The template tools, for this command alone.
    from va.comfyui.catalog import load_catalog  # noqa: PLC0415
    from va.comfyui.template_check import check_template  # noqa: PLC0415
    from va.comfyui.template_import import (  # noqa: PLC0415
        as_json,
        describe_import,
        import_workflow,
        read_official,
        read_workflow_file,
    )
    from va.comfyui.workflow import load_workflow  # noqa: PLC0415

    if args.action == "import" and (args.file is None) == (args.official is None):
        raise VaError(ExitCode.USAGE, "va workflow import: give a workflow file or --official NAME")
    catalog = load_catalog(args.server, args.object_info)
    if args.action == "check":
        workflow = load_workflow(args.workflow_id)
        result = check_template(workflow, catalog)
        for problem in result.problems:
            print(f"problem: {problem}")
        if args.server or args.object_info is None:
            for model in result.missing_models:
                print(f"model file missing on the server: {model}")
        checked = f"{result.nodes} nodes, {result.bindings} bound inputs"
        print(f"{workflow.id}: {checked} checked against {catalog.source}")
        if not result.ok:
            raise VaError(
                ExitCode.VALIDATION_FAILED, f"workflow {workflow.id}: {len(result.problems)} problem(s)"
            )
        return ExitCode.OK
    text = read_official(args.official) if args.official else read_workflow_file(args.file)
    imported = import_workflow(text, catalog, args.name, args.out, args.force)
    print(json.dumps(as_json(imported), indent=2) if args.json else "\n".join(describe_import(imported)))
    return ExitCode.OK


COMMANDS = {
    "doctor": cmd_doctor,
    "serve": cmd_serve,
    "install": cmd_install,
    "validate": cmd_validate,
    "run": cmd_run,
    "produce": cmd_produce,
    "retake": cmd_retake,
    "batch": cmd_batch,
    "status": cmd_status,
    "logs": cmd_logs,
    "report": cmd_report,
    "clean": cmd_clean,
    "workflow": cmd_workflow,
}
