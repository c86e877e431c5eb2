"""The plain-text log of a run, ``logs/runner.log``: what ``logs/events.jsonl`` says, for people.

One line an event (time, level, stage, message), the commands the rules ran (as ``shlex.join``), and under
an error the exit code's name and a hint of what to do. Every line is appended with one ``write`` on an
``O_APPEND`` file, so the rules running in parallel never tear each other's lines.
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path

from va.errors import ExitCode
from va.events import Event, append_line
from va.workdir import Workdir

#: ``extra=`` of a log record that is a command line being run: it goes to the text log too.
COMMAND = {"command": True}

#: How much of a log's end is read for a message, and how many of its lines are shown.
TAIL_BYTES = 64 * 1024
TAIL_LINES = 3

#: Events too frequent to be worth a line (ComfyUI's sampler steps).
QUIET_KINDS = frozenset({"progress"})

#: What to do about an error, by its exit code.
HINTS: dict[int, str] = {
    ExitCode.VALIDATION_FAILED: "fix the named field of the job or config, then run again",
    ExitCode.INPUT_NOT_FOUND: "check the path; relative inputs are relative to the job file's folder",
    ExitCode.UNSUPPORTED_FORMAT: "convert the file to a format ffmpeg decodes (ffprobe FILE shows why not)",
    ExitCode.DEPENDENCY_MISSING: "install ffmpeg, or point FFMPEG/FFPROBE at it; va doctor checks",
    ExitCode.OUTPUT_EXISTS: "choose another --workdir, or move the file away",
    ExitCode.WORKDIR_UNUSABLE: "free disk space or fix the permissions of the workdir",
    ExitCode.STATE_DIR_UNUSABLE: "free disk space or fix the permissions of VA_STATE_DIR (default ~/.va)",
    ExitCode.COMFYUI_UNAVAILABLE: "start ComfyUI (or fix comfyui.url), then --resume",
    ExitCode.COMFYUI_REJECTED: "the template does not fit the server: see node_errors and the bindings",
    ExitCode.COMFYUI_FAILED: "see ComfyUI's log for the node's exception, then --resume",
    ExitCode.COMFYUI_TIMEOUT: "check the server, or raise comfyui.stall_seconds/timeout_seconds; --resume",
    ExitCode.LIPSYNC_FAILED: "see the provider's attempt logs under logs/ and lipsync/, then --resume",
    ExitCode.LIPSYNC_TIMEOUT: "raise the provider's timeout_seconds, then --resume",
    ExitCode.LIPSYNC_INPUT_REJECTED: "the tool refused the picture (no face?): use another start image",
    ExitCode.LIPSYNC_UNAVAILABLE: "install the provider's tool or start its service; va doctor checks",
    ExitCode.LIPSYNC_OUT_OF_SYNC: "look at the kept video; lipsync.sync_check: retry, or on_fail warn",
    ExitCode.ENCODE_FAILED: "see the rule's log under logs/ for ffmpeg's message",
    ExitCode.INTERNAL: "a bug: the rule's log under logs/ has the traceback",
    ExitCode.INTERRUPTED: "continue with: va run JOB --workdir W --resume",
}


def event_text(event: Event) -> str | None:
    """An event as text-log lines, or None for an event too frequent to log."""
    if event.get("kind") in QUIET_KINDS:
        return None
    level, stage = str(event.get("level", "info")).upper(), str(event.get("stage", ""))
    lines = [f"{event.get('ts', '')}  {level:<7} {stage:<9} {event.get('message', '')}"]
    error = event.get("error") or event.get("exit_status")
    if isinstance(error, dict) and error.get("code"):
        name = error.get("name", "")
        lines.append(f"{'':<24}  {'':<7} {'':<9} exit {error['code']} {name}")
        hint = HINTS.get(int(error["code"]))  # an IntEnum's members are their ints as dict keys
        if hint:
            lines.append(f"{'':<24}  {'':<7} {'':<9} hint: {hint}")
    return "\n".join(lines)


def record_event(workdir: Workdir, event: Event) -> None:
    """Write ``event`` (just appended to the event log) to the text log."""
    text = event_text(event)
    if text is not None:
        append_line(workdir.text_log, text)


class RuleLogHandler(logging.Handler):
    """Sends what a rule logs that people need in the text log: the command lines (records with
    ``extra=COMMAND``) and the warnings (a retry after a transient failure, for one)."""

    def __init__(self, workdir: Workdir, stage: str, rule: str) -> None:
        super().__init__(logging.INFO)
        self.workdir, self.stage, self.rule = workdir, stage, rule

    def emit(self, record: logging.LogRecord) -> None:
        command = getattr(record, "command", False)
        if not command and record.levelno != logging.WARNING:
            return
        try:
            kind, text = (
                ("COMMAND", f"$ {record.getMessage()}") if command else ("WARNING", record.getMessage())
            )
            append_line(
                self.workdir.text_log, _line(record.created, kind, self.stage, f"{self.rule}: {text}")
            )
        except OSError:
            self.handleError(record)


def record_command(workdir: Workdir, who: str, argv: list[str]) -> None:
    """Write the command line ``who`` (the runner starting Snakemake) is about to run to the text log."""
    append_line(workdir.text_log, _line(time.time(), "COMMAND", "run", f"{who}: $ {shlex.join(argv)}"))


def _line(created: float, kind: str, stage: str, text: str) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    millis = int((created % 1) * 1000)
    return f"{stamp}.{millis:03d}Z  {kind:<7} {stage:<9} {text}"


def last_lines(path: Path, count: int = TAIL_LINES) -> str:
    """The last non-empty lines of a log (Python traceback frames left out), joined for a one-line message."""
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - TAIL_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not _frame(line)]
    return " | ".join(lines[-count:])


def _frame(line: str) -> bool:
    """Python traceback scaffolding says nothing to a user; the exception line after it does."""
    stripped = line.strip()
    return stripped.startswith(("Traceback (most recent call last)", 'File "', "^")) or line.startswith(
        "    "
    )
