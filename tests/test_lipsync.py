"""The lip-sync stage end to end: the audiogram, command providers that succeed and fail, passthrough."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRunner, Media, ffprobe_streams
from tests.lipsync_service import lipsync_service
from va.config import REPO_CONFIG
from va.errors import ExitCode
from va.events import read_events
from va.lipsync.providers import fill, load_providers

FAKE = str(Path(__file__).with_name("fake_lipsync.py"))
FAKE_ARGV = [sys.executable, FAKE]


def providers_file(folder: Path, **providers: dict[str, Any]) -> dict[str, str]:
    path = folder / "providers.json"
    path.write_text(json.dumps({"schema_version": 1, "providers": providers}))
    return {"VIDAX_LIPSYNC_CONFIG": str(path)}


def command(mode: str, *extra: str, **settings: Any) -> dict[str, Any]:
    argv = [*FAKE_ARGV, mode, "--face", "{video}", "--audio", "{audio}", "--outfile", "{output}", *extra]
    return {"type": "command", "argv": argv, "output": "{output}", "input": {"fps": 25}, **settings}


def http_provider(service_url: str, **settings: Any) -> dict[str, Any]:
    """An ``http`` provider against the test service, polling every 0.1 s."""
    return {"type": "http", "submit_url": f"{service_url}/submit", "poll_interval_seconds": 0.1, **settings}


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
        (
            "short",
            {},
            ExitCode.LIPSYNC_FAILED,
            ["output lasts 1.0", "the audio 2.000 s", "audio features ran out after 25 frames"],
        ),
        (
            "corrupt",
            {},
            ExitCode.LIPSYNC_FAILED,
            ["output does not decode", "ffmpeg mux step failed"],
        ),
    ],
    ids=["face-error", "face-unclassified", "exit-0-no-output", "hang", "too-short", "undecodable"],
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
    for needle in needles:  # the provider's own last lines reach events.jsonl, not only the terminal
        assert needle in failed[-1]["message"]


def test_a_fatal_pattern_fails_at_once_without_a_retry(files: Media, va_cli: CliRunner) -> None:
    settings = {
        "retries": 2,
        "failures": [
            {"pattern": "CUDA out of memory", "kind": "fatal", "message": "the GPU ran out of memory"}
        ],
    }
    env = providers_file(files.root, fake=command("oom", **settings))
    result, workdir = run(files, va_cli, env, "fake")
    assert result.code == ExitCode.LIPSYNC_FAILED, result.err
    assert "the GPU ran out of memory" in result.err and "Tried to allocate 2.00 GiB" in result.err
    logs = workdir / "lipsync" / "logs"
    assert (logs / "attempt-1.stderr.log").exists()
    assert not (logs / "attempt-2.stderr.log").exists()
    assert manifest_of(workdir)["exit_status"]["code"] == ExitCode.LIPSYNC_FAILED


def test_the_shipped_examples_declare_the_output_their_command_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fixed ``output`` must be the ``{output}`` its argv passes; a glob must name no path in the argv."""
    monkeypatch.setenv("VIDAX_LIPSYNC_CONFIG", str(REPO_CONFIG / "lipsync.providers.json"))
    work = tmp_path / "lipsync" / "work"
    commands = {pid: p for pid, p in load_providers().items() if p.type == "command"}
    assert {"wav2lip", "latentsync", "musetalk", "sadtalker"} <= set(commands)
    problems = []
    for pid, provider in commands.items():
        values = {
            "video": str(tmp_path / "lipsync" / "input" / "video.mp4"),
            "image": str(tmp_path / "lipsync" / "input" / "image.png"),
            "audio": str(tmp_path / "lipsync" / "input" / "audio.wav"),
            "output": str(work / "output.mp4"),
            "workdir": str(work),
            "fps": "25",
            "seed": "7",
            "home": provider.settings.get("home", ""),
        }
        argv = [fill(part, values) for part in provider.settings["argv"]]
        told = values["output"] in argv
        if "output" in provider.settings:
            declared = fill(provider.settings["output"], values)
            if declared != values["output"] or not told:
                template = provider.settings["output"]
                problems.append(f"{pid}: output {template!r} is not the {{output}} passed in its argv")
        else:
            pattern = provider.settings["output_glob"]
            if told or any(fill(pattern, values) in part or pattern in part for part in argv):
                problems.append(f"{pid}: output_glob {pattern} names a file its argv tells the tool to write")
    assert not problems, "; ".join(problems)


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
        provider = http_provider(service.url)
        result, workdir = run(files, va_cli, providers_file(files.root, remote=provider), "remote")
    assert result.code == 0, result.err
    assert service.submits == 1
    assert_final(workdir)
    assert manifest_of(workdir)["phases"]["lipsync"]["provider"] == "remote"


@pytest.mark.parametrize(
    ("fault", "settings", "code", "needle"),
    [
        ("500", {}, ExitCode.LIPSYNC_UNAVAILABLE, "submit failed after 2 attempt(s): HTTP 500"),
        ("failed", {}, ExitCode.LIPSYNC_FAILED, "crashed"),
        ("stuck", {"timeout_seconds": 1}, ExitCode.LIPSYNC_TIMEOUT, "did not finish within 1 s"),
    ],
    ids=["submit-500", "job-failed", "never-finishes"],
)
def test_http_provider_failures(
    files: Media,
    va_cli: CliRunner,
    tmp_path: Path,
    fault: str,
    settings: dict[str, Any],
    code: int,
    needle: str,
) -> None:
    (tmp_path / "service").mkdir()
    with lipsync_service(tmp_path / "service") as service:
        service.fault = fault
        provider = http_provider(service.url, retries=1, **settings)
        result, workdir = run(files, va_cli, providers_file(files.root, remote=provider), "remote")
    assert result.code == code, result.err
    assert needle in result.err
    assert not (workdir / "final.mp4").exists()
    assert manifest_of(workdir)["exit_status"]["code"] == code


def test_http_download_cut_off_is_retried_and_lands_whole(
    files: Media, va_cli: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "service").mkdir()
    with lipsync_service(tmp_path / "service") as service:
        service.fault = "cut"
        provider = http_provider(service.url, retries=1)
        result, workdir = run(files, va_cli, providers_file(files.root, remote=provider), "remote")
    assert result.code == 0, result.err
    assert service.downloads == 2
    work = workdir / "lipsync" / "work"
    assert (work / "result.mp4").is_file() and not [p for p in work.iterdir() if p.name.endswith(".part")]
    assert_final(workdir)


@pytest.mark.parametrize(("held", "code"), [(25, ExitCode.OK), (23, ExitCode.LIPSYNC_FAILED)])
def test_a_tool_known_to_stop_early_has_its_last_frame_held(
    files: Media, va_cli: CliRunner, held: int, code: ExitCode
) -> None:
    # "short" writes 1 s where the padded audio lasts 2 s: 25 frames short at 25 fps. One frame is
    # always allowed; short_frames_held allows that many more.
    env = providers_file(files.root, early=command("short", short_frames_held=held))
    result, workdir = run(files, va_cli, env, "early")
    assert result.code == code, result.err
    if code == ExitCode.OK:
        assert_final(workdir)
        assert manifest_of(workdir)["phases"]["lipsync"]["passthrough"] is False
    else:
        assert "output lasts 1.000 s, the audio 2.000 s" in result.err
