"""va/lipsync/command.py in-process: the fake tool run as a ``command`` provider, its output found, its
failures classified into exit codes and messages, transient ones retried, its argv passed literally."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.lipsync.conftest import UseProviders
from tests.lipsync.fakes import FAKE_ARGV, command
from va import media
from va import retry as retry_module
from va.errors import ExitCode, VaError
from va.lipsync.command import ProviderRun, run_command_provider
from va.processes import ProcessId


def provider_run(root: Path, video: Path, audio: Path) -> ProviderRun:
    """A provider call laid out as the stage lays it out: ``lipsync/work`` and ``lipsync/logs``."""
    work = root / "lipsync" / "work"
    work.mkdir(parents=True)
    values = {
        "video": str(video),
        "image": "",
        "audio": str(audio),
        "output": str(work / "output.mp4"),
        "workdir": str(work),
        "fps": "25",
        "seed": "7",
        "home": "",
    }
    return ProviderRun(values, work, root / "lipsync" / "logs")


@pytest.fixture
def run(tmp_path: Path, clip: dict[str, Path]) -> ProviderRun:
    return provider_run(tmp_path, clip["video"], clip["audio"])


def test_a_command_provider_succeeds(tmp_path: Path, use_providers: UseProviders, run: ProviderRun) -> None:
    dump = tmp_path / "told.json"
    provider = use_providers(fake=command("ok", "--dump", str(dump)))["fake"]
    output = run_command_provider(provider, run)
    assert output.path == run.workdir / "output.mp4"
    assert media.decoded_duration(output.path, stream="v") == pytest.approx(2.0, abs=0.04)
    assert output.tail == "loading model ..."  # nothing on stderr: its stdout's last line
    assert "loading model" in (run.logs / "attempt-1.stdout.log").read_text()
    assert json.loads(dump.read_text())["cwd"] == str(run.workdir)  # cwd defaults to {workdir}


def test_glob_output_and_a_rendered_yaml_config(use_providers: UseProviders, run: ProviderRun) -> None:
    provider = use_providers(
        muse={
            "type": "command",
            "argv": [*FAKE_ARGV, "glob", "--config", "{workdir}/inference.yaml"],
            "config_file": {
                "path": "{workdir}/inference.yaml",
                "content": {"task_0": {"video_path": "{video}", "audio_path": "{audio}"}},
            },
            "output_glob": "results/**/*.mp4",
        }
    )["muse"]
    output = run_command_provider(provider, run)
    assert output.path == run.workdir / "results" / "v15" / "video_audio.mp4"
    assert media.decoded_duration(output.path, stream="v") == pytest.approx(2.0, abs=0.04)
    rendered = (run.workdir / "inference.yaml").read_text()
    assert "video_path:" in rendered
    task = {"video_path": run.values["video"], "audio_path": run.values["audio"]}
    assert yaml.safe_load(rendered) == {"task_0": task}


@pytest.mark.parametrize(
    ("mode", "settings", "code", "needles"),
    [
        (
            "face",
            {"failures": [{"pattern": "Face not detected", "kind": "input", "message": "no face found"}]},
            ExitCode.LIPSYNC_INPUT_REJECTED,
            ["no face found", "Ensure the video contains a face"],
        ),
        ("face", {}, ExitCode.LIPSYNC_FAILED, ["exited with 1", "Face not detected"]),
        ("silent", {}, ExitCode.LIPSYNC_FAILED, ["exited 0 but wrote no output", "we exit 0 anyway"]),
        ("hang", {"timeout_seconds": 1}, ExitCode.LIPSYNC_TIMEOUT, ["did not finish within 1 s; killed"]),
    ],
    ids=["face-error", "face-unclassified", "exit-0-no-output", "hang"],
)
def test_command_provider_failures(
    tmp_path: Path,
    use_providers: UseProviders,
    run: ProviderRun,
    mode: str,
    settings: dict[str, Any],
    code: ExitCode,
    needles: list[str],
) -> None:
    dump = tmp_path / "told.json"
    provider = use_providers(fake=command(mode, "--dump", str(dump), **settings))["fake"]
    with pytest.raises(VaError) as raised:
        run_command_provider(provider, run)
    assert raised.value.code == code
    message = raised.value.message
    assert message.startswith("lip-sync provider fake") and "\n" not in message and "Traceback" not in message
    for needle in needles:
        assert needle in message
    assert not (run.workdir / "output.mp4").exists()
    told = json.loads(dump.read_text())
    for pid in (told["pid"], told.get("worker")):  # a tool that hung was ended, its worker too
        assert pid is None or ProcessId.of(pid) is None


def test_a_fatal_pattern_fails_at_once_without_a_retry(
    use_providers: UseProviders, run: ProviderRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(retry_module, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleeps.append))
    settings = {
        "retries": 2,
        "failures": [
            {"pattern": "CUDA out of memory", "kind": "fatal", "message": "the GPU ran out of memory"}
        ],
    }
    provider = use_providers(fake=command("oom", **settings))["fake"]
    with pytest.raises(VaError) as raised:
        run_command_provider(provider, run)
    assert raised.value.code == ExitCode.LIPSYNC_FAILED
    message = raised.value.message
    assert "the GPU ran out of memory" in message and "Tried to allocate 2.00 GiB" in message
    assert (run.logs / "attempt-1.stderr.log").exists()
    assert not (run.logs / "attempt-2.stderr.log").exists() and sleeps == []


def test_transient_failures_are_retried(
    use_providers: UseProviders, run: ProviderRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The backoff before the second attempt is recorded, not slept: the test checks it is asked for.
    sleeps: list[float] = []
    monkeypatch.setattr(retry_module, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleeps.append))
    settings = {"retries": 1, "failures": [{"pattern": "temporarily unavailable", "kind": "transient"}]}
    provider = use_providers(fake=command("flaky", **settings))["fake"]
    output = run_command_provider(provider, run)
    assert output.path == run.workdir / "output.mp4" and output.path.stat().st_size > 0
    assert "temporarily unavailable" in (run.logs / "attempt-1.stderr.log").read_text()
    assert (run.logs / "attempt-2.stderr.log").exists()
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5  # the policy's first pause: full jitter up to 0.5 s


def test_a_transient_failure_on_the_last_attempt_fails(use_providers: UseProviders, run: ProviderRun) -> None:
    settings = {"retries": 0, "failures": [{"pattern": "temporarily unavailable", "kind": "transient"}]}
    provider = use_providers(fake=command("flaky", **settings))["fake"]
    with pytest.raises(VaError) as raised:
        run_command_provider(provider, run)
    assert raised.value.code == ExitCode.LIPSYNC_FAILED
    assert "exited with 1: RuntimeError: resource temporarily unavailable" in raised.value.message
    assert not (run.logs / "attempt-2.stderr.log").exists()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"argv": ["no-such-lipsync-tool", "{video}"]}, "command not found: no-such-lipsync-tool"),
        ({"cwd": "{workdir}/missing"}, "/missing does not exist"),
    ],
    ids=["program", "cwd"],
)
def test_a_tool_that_cannot_start_is_unavailable(
    use_providers: UseProviders, run: ProviderRun, change: dict[str, Any], needle: str
) -> None:
    provider = use_providers(fake={**command("ok"), **change})["fake"]
    with pytest.raises(VaError) as raised:
        run_command_provider(provider, run)
    assert raised.value.code == ExitCode.LIPSYNC_UNAVAILABLE and needle in raised.value.message


def test_paths_with_spaces_and_shell_characters_are_passed_literally(
    tmp_path: Path, use_providers: UseProviders, clip: dict[str, Path]
) -> None:
    odd = tmp_path / "it's a $(touch pwned) & `x`; dir"
    (odd / "in put").mkdir(parents=True)
    video = Path(shutil.copy(clip["video"], odd / "in put" / "video $HOME.mp4"))
    audio = Path(shutil.copy(clip["audio"], odd / "voice $HOME.wav"))
    run = provider_run(odd / "work dir", video, audio)
    dump = odd / "argv.json"
    provider = use_providers(fake=command("ok", "--dump", str(dump)))["fake"]
    output = run_command_provider(provider, run)
    argv = json.loads(dump.read_text())["argv"]
    assert argv[argv.index("--outfile") + 1] == str(odd / "work dir" / "lipsync" / "work" / "output.mp4")
    assert argv[argv.index("--face") + 1] == str(video)
    assert argv[argv.index("--audio") + 1] == str(audio)
    assert not list(tmp_path.rglob("pwned")) and not (Path.cwd() / "pwned").exists()
    assert output.path == run.workdir / "output.mp4" and output.path.stat().st_size > 0
