"""Whole ``va run``s with lip-sync, one per provider type: what only a run proves (the graph wires the
stage between the held still and the encode, a provider's process and a remote service work from inside a
Snakemake job, the manifest reports the phase, the sync check asked for runs in it and shows in
``va status`` and the report). The built-in audiogram goes end to end in
tests/test_resume.py, whose run is stopped in each phase on its way. Everything else is tested in-process
beside this file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRunner, Media, ffprobe_streams, read_manifest
from tests.lipsync.fakes import command, http_provider, providers_file
from tests.lipsync.lipsync_service import Service

#: Whole runs: tests/conftest.py runs the tests of this file before the in-process ones.
pytestmark = pytest.mark.whole_run


def run_job(files: Media, va_cli: CliRunner, job: Path, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``job``; it must succeed with a final video of the planned 50 frames, nothing said out of sync.
    Returns its lipsync phase."""
    result = va_cli("run", job, "--workdir", workdir, "-q", env=env)
    assert result.code == 0, result.err
    assert (workdir / "final.mp4").exists() and "out of sync" not in result.err
    assert int(ffprobe_streams(workdir / "final.mp4")["video"]["nb_read_frames"]) == 50
    manifest = read_manifest(workdir)
    lipsync: dict[str, Any] = manifest["phases"]["lipsync"]
    assert lipsync["status"] == "done" and lipsync["passthrough"] is False
    assert lipsync["outputs"] == ["lipsync/output.mp4"]
    return lipsync


def test_a_command_provider_end_to_end_in_paths_a_shell_would_break_its_sync_check_without_a_verdict(
    files: Media, va_cli: CliRunner
) -> None:
    """The tool in paths a shell would break; the sync check asked for (the tool needs no face) over a
    start without a face (testsrc2): no verdict, and the run ends 0 (test_sync_stage.py has the rest)."""
    odd = files.root / "it's a $(touch pwned) & `x`; dir"
    odd.mkdir()
    audio = (files.root / "voice.wav").rename(odd / "voice $HOME.wav")
    lipsync = {"enable": True, "provider": "fake", "sync_check": {"enable": True}}
    job = files.job(input={"audio": str(audio), "start": "start.png"}, lipsync=lipsync)
    dump, workdir = odd / "argv.json", odd / "work dir"
    env = providers_file(files.root, fake=command("ok", "--dump", str(dump)))
    phase = run_job(files, va_cli, job, workdir, env)
    assert phase["provider"] == "fake"
    argv = json.loads(dump.read_text())["argv"]
    assert argv[argv.index("--outfile") + 1] == str(workdir / "lipsync" / "work" / "output.mp4")
    assert argv[argv.index("--face") + 1] == str(workdir / "lipsync" / "input" / "video.mp4")
    assert not list(files.root.rglob("pwned"))

    record = phase["sync"]
    assert record["verdict"] == "no_verdict" and record["offset_frames"] is None
    assert (
        record["reason"] == f"a face large enough in 0 of {record['frames']} frames"
        and record["frames"] == 50
    )
    status = va_cli("status", workdir, env=env)
    assert "sync: no verdict (a face large enough in 0 of 50 frames)" in status.out
    # The report plots the track (no mouth line here: no face) under the verdict.
    report = va_cli("report", workdir, env=env)
    assert report.code == 0, report.err
    assert (workdir / "report" / "sync.png").exists() and "sync.png" in (workdir / "report.html").read_text()


def test_http_provider_end_to_end(files: Media, va_cli: CliRunner, service: Service) -> None:
    job = files.job(lipsync={"enable": True, "provider": "remote"})
    env = providers_file(files.root, remote=http_provider(service.url))
    assert run_job(files, va_cli, job, files.root / "w", env)["provider"] == "remote"
    assert service.submits == 1 and service.downloads == 1
