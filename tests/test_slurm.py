"""A real single-node Slurm (munge, slurmctld, slurmd on 127.0.0.1): a batch through profiles/slurm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, CliRunner, Media, ffprobe_streams
from tests.test_batch import make_batch

START = Path(__file__).parent / "slurm" / "start-slurm.sh"

# `make test` runs these last (`make test-fast` leaves them out), Slurm started meanwhile in the background.
pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def slurm() -> None:
    # Installing Slurm from Debian's packages takes minutes on a fresh machine: a generous bound.
    done = subprocess.run(["bash", str(START)], capture_output=True, text=True, check=False, timeout=840)
    if done.returncode == 2:
        pytest.skip(f"SLURM TEST SKIPPED: Slurm cannot be installed here: {done.stderr.strip()}")
    assert done.returncode == 0, f"Slurm did not start: {done.stderr.strip()}"


def fast_profile(folder: Path) -> Path:
    """profiles/slurm, checking job status every few seconds instead of after 40 s (tests are short)."""
    profile = folder / "slurm-fast"
    profile.mkdir()
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    (profile / "config.yaml").write_text(text + "slurm-init-seconds-before-status-checks: 2\n")
    return profile


def slurm_jobs() -> list[dict[str, str]]:
    """Every job slurmctld still knows, as key=value fields."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True).stdout
    return [
        dict(f.split("=", 1) for f in line.split() if "=" in f) for line in out.splitlines() if line.strip()
    ]


def test_a_batch_runs_as_slurm_jobs(slurm: None, files: Media, va_cli: CliRunner, tmp_path: Path) -> None:
    folder = make_batch(files, ["first", "second"])
    out = files.root / "out"
    result = va_cli("batch", folder, "--out", out, "--profile", fast_profile(tmp_path), "--json")
    assert result.code == 0, result.err + (out / "logs" / "snakemake.log").read_text()[-3000:]
    jobs = slurm_jobs()
    for name in ("first", "second"):
        assert int(ffprobe_streams(out / name / "final.mp4")["video"]["nb_read_frames"]) == 50
        manifest = json.loads((out / name / "manifest.json").read_text())
        ids = manifest["phases"]["encode"]["slurm_job_ids"] + manifest["phases"]["prepare"]["slurm_job_ids"]
        assert len(ids) == 3  # encode, prepare_audio, hold_start_frame: one Slurm job each
        for job_id in ids:
            job = next(j for j in jobs if j["JobId"] == job_id)
            assert job["JobState"] == "COMPLETED" and job["Comment"].startswith("rule_")
            assert job["Comment"].endswith(f"_wildcards_{name}") or name in job["Comment"]


def test_snakemake_with_the_profile_directly(slurm: None, files: Media) -> None:
    job = files.job()
    out = files.root / "direct"
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--directory", str(out),
         "--config", f"job={job}", "--slurm-init-seconds-before-status-checks", "2"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_status"] == "succeeded"
    assert manifest["phases"]["encode"]["slurm_job_ids"]
