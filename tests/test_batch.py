"""Batches: a folder of jobs as one graph; bad jobs reported by name, the others done; reruns do nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO, CliRunner, Media, ffprobe_streams
from tests.lipsync.fakes import command, providers_file
from va.errors import ExitCode


def make_batch(files: Media, names: list[str]) -> Path:
    folder = files.root / "jobs"
    folder.mkdir()
    for name in names:
        document = json.loads(files.job().read_text())
        document["input"] = {"audio": str(files.root / "voice.wav"), "start": str(files.root / "start.png")}
        (folder / f"{name}.json").write_text(json.dumps(document))
    return folder


def summary(result: Any) -> dict[str, dict[str, Any]]:
    return {row["job"]: row for row in json.loads(result.out)["jobs"]}


def test_a_batch_with_bad_jobs(files: Media, va_cli: CliRunner, state_dir: Path) -> None:
    folder = make_batch(files, ["intro", "main", "outro"])
    (folder / "broken.json").write_text(json.dumps({"schema_version": 1, "input": {"audio": "x.wav"}}))
    (files.root / "notes.wav").write_text("not audio")
    document = json.loads((folder / "main.json").read_text())
    document["input"]["audio"] = str(files.root / "notes.wav")
    (folder / "silent.json").write_text(json.dumps(document))
    out = files.root / "out"
    result = va_cli("batch", folder, "--out", out, "--cores", "2", "--json")
    assert result.code == ExitCode.BATCH_INCOMPLETE, result.err
    rows = summary(result)
    statuses = {name: row["status"] for name, row in rows.items()}
    assert statuses == {
        "broken": "invalid",
        "silent": "invalid",
        **dict.fromkeys(("intro", "main", "outro"), "succeeded"),
    }
    assert "'start' is a required property" in rows["broken"]["message"]
    assert "input.audio" in rows["silent"]["message"] and rows["silent"]["exit_code"] == 12
    for name in ("intro", "main", "outro"):
        assert int(ffprobe_streams(out / name / "final.mp4")["video"]["nb_read_frames"]) == 50
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["run_status"] == "succeeded" and rows[name]["output"] == str(out / name / "final.mp4")
    registry = json.loads((state_dir / "runs.json").read_text())["runs"]
    assert sorted(Path(entry["workdir"]).name for entry in registry.values()) == ["intro", "main", "outro"]
    assert "2 of 5 job(s) did not succeed" in result.err

    # A second call builds only what is missing: the finished videos are left as they are.
    before = {name: (out / name / "final.mp4").stat().st_mtime_ns for name in ("intro", "outro")}
    (out / "main" / "final.mp4").unlink()
    second = va_cli("batch", folder, "--out", out, "--json")
    assert second.code == ExitCode.BATCH_INCOMPLETE, second.err  # the two bad jobs are still bad
    assert {name: (out / name / "final.mp4").stat().st_mtime_ns for name in ("intro", "outro")} == before
    assert summary(second)["main"]["status"] == "succeeded"
    assert int(ffprobe_streams(out / "main" / "final.mp4")["video"]["nb_read_frames"]) == 50
    assert json.loads((out / "main" / "manifest.json").read_text())["attempts"] == 2


def test_keep_going_finishes_the_others(files: Media, va_cli: CliRunner) -> None:
    folder = make_batch(files, ["good", "lipfail"])
    document = json.loads((folder / "lipfail.json").read_text())
    document["lipsync"] = {"enable": True, "provider": "fake"}
    (folder / "lipfail.json").write_text(json.dumps(document))
    env = providers_file(files.root, fake=command("face"))
    result = va_cli(
        "batch", folder, "--out", files.root / "out", "--cores", "1", "--keep-going", "--json", env=env
    )
    assert result.code == ExitCode.BATCH_INCOMPLETE
    rows = summary(result)
    assert rows["good"]["status"] == "succeeded"
    assert rows["lipfail"]["status"] == "failed" and "Face not detected" in rows["lipfail"]["message"]


def test_plain_snakemake_runs_a_batch(files: Media) -> None:
    folder = make_batch(files, ["one", "two"])
    out = files.root / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "2",
            "--directory",
            str(out),
            "--config",
            f"batch={folder}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("one", "two"):
        assert json.loads((out / name / "manifest.json").read_text())["run_status"] == "succeeded"
