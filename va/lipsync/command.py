"""Provider type ``command``: a program run from an argv template (never a shell string)."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from va.errors import ExitCode, VaError
from va.lipsync.providers import Provider, fill, fill_tree
from va.processes import ProcessId, end_processes, group_members, tree
from va.retry import RetryPolicy, retrying
from va.textlog import COMMAND, TAIL_BYTES, last_lines

log = logging.getLogger(__name__)
#: How long a tool (and what it started) has to exit after SIGTERM before it is killed.
ENDING_GRACE_SECONDS = 5.0


class TransientFailure(VaError):
    """The command failed in a way its ``failures`` patterns call transient: worth another attempt."""


KIND_CODES = {
    "input": ExitCode.LIPSYNC_INPUT_REJECTED,
    "fatal": ExitCode.LIPSYNC_FAILED,
    "transient": ExitCode.LIPSYNC_FAILED,
}


@dataclass(frozen=True)
class ProviderRun:
    """Where and with what one provider call runs."""

    values: dict[str, str]
    workdir: Path
    logs: Path


@dataclass(frozen=True)
class ProviderOutput:
    """The file a provider produced and the last lines it printed, for the after-checks' messages."""

    path: Path
    tail: str = ""


def _classify(provider: Provider, text: str) -> tuple[str, str] | None:
    for rule in provider.settings["failures"]:
        if re.search(rule["pattern"], text):
            return rule["kind"], rule.get("message") or rule["pattern"]
    return None


def _render_config_file(provider: Provider, values: dict[str, str]) -> None:
    spec = provider.settings.get("config_file")
    if not spec:
        return
    path = Path(fill(spec["path"], values))
    content = fill_tree(spec["content"], values)
    path.parent.mkdir(parents=True, exist_ok=True)
    if spec["format"] == "json":
        path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    else:
        import yaml  # noqa: PLC0415 - only a provider whose config file is YAML needs the writer

        path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")


def _program(provider: Provider, argv: list[str]) -> None:
    program = argv[0]
    found = (
        shutil.which(program) if os.sep not in program else (program if os.access(program, os.X_OK) else None)
    )
    if not found:
        raise VaError(
            ExitCode.LIPSYNC_UNAVAILABLE, f"lip-sync provider {provider.id}: command not found: {program}"
        )


def locate_output(provider: Provider, run: ProviderRun, started: float) -> Path | None:
    """The provider's result: its fixed output path, or the newest file its glob matches."""
    if provider.settings.get("output"):
        path = Path(fill(provider.settings["output"], run.values))
        return path if path.is_file() and path.stat().st_size > 0 else None
    pattern = fill(provider.settings["output_glob"], run.values)
    matches = [p for p in run.workdir.glob(pattern) if p.is_file() and p.stat().st_mtime >= started - 1]
    return max(matches, key=lambda p: p.stat().st_mtime) if matches else None


def _call(
    argv: list[str], cwd: Path, env: dict[str, str], logs: tuple[IO[bytes], IO[bytes]], timeout: float
) -> int | None:
    """Run the provider; its exit status, or None when it ran past ``timeout`` (it was ended).

    The tool runs in a process group of its own (no terminal signal reaches it unasked); on every way
    out (its end, the timeout, this rule being stopped) whatever is left of that group and of the
    tool's process tree (workers it left behind) is ended, so nothing outlives the call.
    """
    out, err = logs
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
    tool = ProcessId.of(process.pid)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        # A group's id is its leader's pid and is not reused while the group has members; the tool is
        # named by its start time too, so neither can reach another process.
        leftovers = {*group_members(process.pid), *(tree(tool) if tool is not None else [])}
        end_processes(leftovers, ENDING_GRACE_SECONDS)
        process.wait()


def run_command_provider(provider: Provider, run: ProviderRun) -> ProviderOutput:
    """Run the provider's command (with retries for transient failures) and return its output file."""
    settings = provider.settings
    values = run.values
    argv = [fill(part, values) for part in settings["argv"]]
    cwd = Path(fill(settings["cwd"], values))
    if not cwd.is_dir():
        raise VaError(
            ExitCode.LIPSYNC_UNAVAILABLE, f"lip-sync provider {provider.id}: cwd {cwd} does not exist"
        )
    _program(provider, argv)
    _render_config_file(provider, values)
    env = {**os.environ, **{key: fill(value, values) for key, value in settings["env"].items()}}
    run.logs.mkdir(parents=True, exist_ok=True)
    attempts = settings["retries"] + 1

    def tell(attempt: int, pause: float, error: BaseException) -> None:
        log.warning("attempt %s failed transiently (%s); again in %.1f s", attempt, error, pause)

    for attempt in retrying(RetryPolicy(attempts), TransientFailure, before_sleep=tell):
        with attempt:
            return _run_once(provider, run, argv, cwd, env, attempt=attempt.retry_state.attempt_number)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _run_once(
    provider: Provider, run: ProviderRun, argv: list[str], cwd: Path, env: dict[str, str], *, attempt: int
) -> ProviderOutput:
    """One attempt of the provider's command; a failure its patterns call transient raises
    ``TransientFailure``."""
    settings = provider.settings
    stdout, stderr = (
        run.logs / f"attempt-{attempt}.stdout.log",
        run.logs / f"attempt-{attempt}.stderr.log",
    )
    log.info("attempt %s: %s (cwd %s)", attempt, shlex.join(argv), cwd, extra=COMMAND)
    started = time.time()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        returncode = _call(argv, cwd, env, (out, err), settings["timeout_seconds"])
    if returncode is None:
        raise VaError(
            ExitCode.LIPSYNC_TIMEOUT,
            f"lip-sync provider {provider.id} did not finish within {settings['timeout_seconds']} s; "
            f"killed. Last output: {last_lines(stderr) or last_lines(stdout) or 'none'}",
        )
    tail = last_lines(stderr) or last_lines(stdout)
    text = stderr.read_text(errors="replace")[-TAIL_BYTES:] + stdout.read_text(errors="replace")[-TAIL_BYTES:]
    matched = _classify(provider, text)
    if matched and matched[0] != "transient":
        kind, message = matched
        raise VaError(KIND_CODES[kind], f"lip-sync provider {provider.id}: {message}: {tail}")
    if returncode != 0:
        raise (TransientFailure if matched else VaError)(
            ExitCode.LIPSYNC_FAILED, f"lip-sync provider {provider.id} exited with {returncode}: {tail}"
        )
    output = locate_output(provider, run, started)
    if output is None:
        expected = settings.get("output") or settings.get("output_glob")
        raise VaError(
            ExitCode.LIPSYNC_FAILED,
            f"lip-sync provider {provider.id} exited 0 but wrote no output ({expected}): "
            f"{tail or 'it printed nothing'}",
        )
    return ProviderOutput(output, tail)
