"""The lip-sync stage end to end: the audiogram, command providers that succeed and fail, passthrough."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRunner, Media, ffprobe_streams
from tests.lipsync_service import lipsync_service
from va.errors import ExitCode
from va.events import read_events

FAKE = str(Path(__file__).with_name("fake_lipsync.py"))
FAKE_ARGV = [sys.executable, FAKE]


def providers_file(folder: Path, **providers: dict[str, Any]) -> dict[str, str]:
    path = folder / "providers.json"
    path.write_text(json.dumps({"schema_version": 1, "providers": providers}))
    return {"VIDAX_LIPSYNC_CONFIG": str(path)}


def command(mode: str, *extra: str, **settings: Any) -> dict[str, Any]:
    argv = [*FAKE_ARGV, mode, "--face", "{video}", "--audio", "{audio}", "--outfile", "{output}", *extra]
    return {"type": "command", "argv": argv, "output": "{output}", "input": {"fps": 25}, **settings}


def run(
    files: Media, va_cli: CliRunner, env: dict[str, str], provider: str, **lipsync: Any
) -> tuple[Any, Path]:
    job = files.job(lipsync={"enable": True, "provider": provider, **lipsync})
    workdir = files.root / "w"
    return va_cli("run", job, "--workdir", workdir, "-q", env=env), workdir


def manifest_of(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "manifest.json").read_text())
    return data


def assert_final(workdir: Path, frames: int = 50) -> None:
    video = ffprobe_streams(workdir / "final.mp4")["video"]
    assert int(video["nb_read_frames"]) == frames


def test_audiogram_end_to_end(files: Media, va_cli: CliRunner) -> None:
    result, workdir = run(files, va_cli, {}, "audiogram")
    assert result.code == 0, result.err
    assert_final(workdir)
    lipsync = manifest_of(workdir)["phases"]["lipsync"]
    assert (
        lipsync["status"] == "done" and lipsync["provider"] == "audiogram" and lipsync["passthrough"] is False
    )
    assert lipsync["outputs"] == ["lipsync/output.mp4"]


def test_command_provider_succeeds(files: Media, va_cli: CliRunner) -> None:
    env = providers_file(files.root, fake=command("ok"))
    result, workdir = run(files, va_cli, env, "fake")
    assert result.code == 0, result.err
    assert_final(workdir)
    assert manifest_of(workdir)["phases"]["lipsync"]["status"] == "done"


def test_glob_output_and_a_rendered_yaml_config(files: Media, va_cli: CliRunner) -> None:
    provider = {
        "type": "command",
        "argv": [*FAKE_ARGV, "glob", "--config", "{workdir}/inference.yaml"],
        "config_file": {
            "path": "{workdir}/inference.yaml",
            "content": {"task_0": {"video_path": "{video}", "audio_path": "{audio}"}},
        },
        "output_glob": "results/**/*.mp4",
    }
    result, workdir = run(files, va_cli, providers_file(files.root, muse=provider), "muse")
    assert result.code == 0, result.err
    assert_final(workdir)
    assert "video_path:" in (workdir / "lipsync" / "work" / "inference.yaml").read_text()


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
        ("hang", {"timeout_seconds": 2}, ExitCode.LIPSYNC_TIMEOUT, ["did not finish within 2 s"]),
        ("short", {}, ExitCode.LIPSYNC_FAILED, ["output lasts 1.0", "the audio 2.000 s"]),
    ],
    ids=["face-error", "face-unclassified", "exit-0-no-output", "hang", "too-short"],
)
def test_command_provider_failures(
    files: Media, va_cli: CliRunner, mode: str, settings: dict[str, Any], code: int, needles: list[str]
) -> None:
    env = providers_file(files.root, fake=command(mode, **settings))
    result, workdir = run(files, va_cli, env, "fake")
    assert result.code == code, result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    for needle in needles:
        assert needle in result.err
    assert not (workdir / "final.mp4").exists() and not (workdir / "lipsync" / "output.mp4").exists()
    manifest = manifest_of(workdir)
    assert manifest["phases"]["lipsync"]["status"] == "failed"
    assert manifest["exit_status"]["code"] == code
    failed = [e for e in read_events(workdir / "logs" / "events.jsonl") if e["kind"] == "rule_failed"]
    assert needles[0] in failed[-1]["message"]


def test_passthrough_continues_with_the_unsynced_video(files: Media, va_cli: CliRunner) -> None:
    env = providers_file(files.root, fake=command("face"))
    result, workdir = run(files, va_cli, env, "fake", allow_passthrough=True)
    assert result.code == 0, result.err
    assert_final(workdir)
    lipsync = manifest_of(workdir)["phases"]["lipsync"]
    assert lipsync["status"] == "done" and lipsync["passthrough"] is True
    assert "un-synced video was used" in lipsync["note"] and "Face not detected" in lipsync["note"]


def test_transient_failures_are_retried(files: Media, va_cli: CliRunner) -> None:
    settings = {"retries": 1, "failures": [{"pattern": "temporarily unavailable", "kind": "transient"}]}
    result, workdir = run(
        files, va_cli, providers_file(files.root, fake=command("flaky", **settings)), "fake"
    )
    assert result.code == 0, result.err
    assert (workdir / "lipsync" / "logs" / "attempt-2.stderr.log").exists()


def test_paths_with_spaces_and_shell_characters_are_passed_literally(files: Media, va_cli: CliRunner) -> None:
    odd = files.root / "it's a $(touch pwned) & `x`; dir"
    odd.mkdir()
    dump = odd / "argv.json"
    (files.root / "voice.wav").rename(odd / "voice $HOME.wav")
    job = files.job(input={"audio": str(odd / "voice $HOME.wav"), "start": "start.png"})
    job.write_text(
        job.read_text().replace('"enable": false', '"enable": true, "provider": "fake"'), encoding="utf-8"
    )
    env = providers_file(files.root, fake=command("ok", "--dump", str(dump)))
    workdir = odd / "work dir"
    result = va_cli("run", job, "--workdir", workdir, "-q", env=env)
    assert result.code == 0, result.err
    argv = json.loads(dump.read_text())["argv"]
    assert argv[argv.index("--outfile") + 1] == str(workdir / "lipsync" / "work" / "output.mp4")
    assert argv[argv.index("--face") + 1] == str(workdir / "lipsync" / "input" / "video.mp4")
    assert not (files.root / "pwned").exists() and not list(files.root.rglob("pwned"))
    assert_final(workdir)


def test_an_unknown_provider_is_a_validation_error(files: Media, va_cli: CliRunner) -> None:
    job = files.job(lipsync={"enable": True, "provider": "nope"})
    result = va_cli("validate", job, env=providers_file(files.root, fake=command("ok")))
    assert result.code == ExitCode.VALIDATION_FAILED
    assert "'nope' is not configured" in result.err and "known: fake" in result.err


def test_http_provider_end_to_end(files: Media, va_cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "service").mkdir()
    with lipsync_service(tmp_path / "service") as service:
        provider = {"type": "http", "submit_url": f"{service.url}/submit", "poll_interval_seconds": 0.1}
        result, workdir = run(files, va_cli, providers_file(files.root, remote=provider), "remote")
    assert result.code == 0, result.err
    assert service.submits == 1
    assert_final(workdir)
    assert manifest_of(workdir)["phases"]["lipsync"]["provider"] == "remote"


@pytest.mark.parametrize(
    ("fault", "code", "needle"),
    [
        ("500", ExitCode.LIPSYNC_UNAVAILABLE, "submit failed after 2 attempt(s): HTTP 500"),
        ("failed", 50, "crashed"),
    ],
)
def test_http_provider_failures(
    files: Media, va_cli: CliRunner, tmp_path: Path, fault: str, code: int, needle: str
) -> None:
    (tmp_path / "service").mkdir()
    with lipsync_service(tmp_path / "service") as service:
        service.fault = fault
        provider = {
            "type": "http",
            "submit_url": f"{service.url}/submit",
            "poll_interval_seconds": 0.1,
            "retries": 1,
        }
        result, workdir = run(files, va_cli, providers_file(files.root, remote=provider), "remote")
    assert result.code == code, result.err
    assert needle in result.err
    assert not (workdir / "final.mp4").exists()
