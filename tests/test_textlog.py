"""``logs/runner.log``, the run's plain-text log, and ``va logs W --text``."""

from __future__ import annotations

import re

import pytest

from tests.conftest import CliRunner, FinishedRun, Media
from va.errors import ExitCode, VaError
from va.job import load_job
from va.tracking import record_run_finished, record_run_started
from va.workdir import Workdir

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  (INFO|WARNING|ERROR|COMMAND) ")


def test_a_finished_run_has_its_text_log(
    finished_run: FinishedRun, va_cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VA_STATE_DIR", str(finished_run.state_root))
    text = (finished_run.workdir / "logs" / "runner.log").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert all(LINE.match(line) or line.startswith(" ") for line in lines), text
    # The Snakemake command the runner started, then the run's own events.
    assert " COMMAND run       snakemake: $ " in lines[0] and "--snakefile" in lines[0], lines[0]
    assert "started in" in lines[1] and "run succeeded" in lines[-1]
    for rule in ("prepare_audio", "hold_start_frame", "encode"):
        assert any(f"{rule} started" in line for line in lines), rule
        assert any(f"{rule} finished in" in line for line in lines), rule
    commands = [line for line in lines if " COMMAND " in line]
    # The commands as a shell would take them: the padded audio's ffmpeg, the final's mux.
    assert any("$ " in line and "ffmpeg" in line and "prepare/padded.wav" in line for line in commands)
    assert any("ffmpeg" in line and ".encode-final.mp4" in line for line in commands)

    shown = va_cli("logs", finished_run.workdir, "--text")
    assert shown.code == 0 and shown.out == text
    assert va_cli("logs", finished_run.workdir, "--text", "--json").code == ExitCode.USAGE


def test_an_error_has_its_code_and_a_hint(files: Media) -> None:
    run = Workdir(files.root / "w")
    record_run_started(run, load_job(files.job()))
    record_run_finished(
        run, VaError(ExitCode.COMFYUI_UNAVAILABLE, "ComfyUI at http://127.0.0.1:9 is not reachable")
    )
    lines = run.text_log.read_text(encoding="utf-8").splitlines()
    failed = next(i for i, line in enumerate(lines) if "run failed" in line)
    assert " ERROR " in lines[failed] and "127.0.0.1:9" in lines[failed]
    assert lines[failed + 1].strip() == "exit 40 COMFYUI_UNAVAILABLE"
    assert lines[failed + 2].strip().startswith("hint: start ComfyUI")
