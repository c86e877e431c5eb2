"""va doctor: required parts fail with exit 20, optional parts warn."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CliRunner
from tests.fileserver import serve
from va.doctor import check_feature_filters
from va.errors import ExitCode


def test_doctor_on_this_machine_is_ready(va_cli: CliRunner) -> None:
    result = va_cli("doctor", "--json")
    report = json.loads(result.out)
    checks = {check["name"]: check for check in report["checks"]}
    assert result.code == 0 and report["ok"] is True
    assert checks["ffmpeg"]["status"] == "ok" and "version" in checks["ffmpeg"]["detail"]
    assert checks["encoders"]["detail"] == "libx264 and aac present"
    assert checks["comfyui"]["status"] in ("ok", "warn")


def test_doctor_exit_20_with_ffmpeg_hidden_from_path(va_cli: CliRunner) -> None:
    only_python = str(Path(sys.executable).parent)
    result = va_cli("doctor", env={"PATH": only_python})
    assert result.code == ExitCode.DEPENDENCY_MISSING
    assert "FAIL  ffmpeg" in result.out and "not ready (DEPENDENCY_MISSING)" in result.out


def test_doctor_reports_a_reachable_comfyui_version(va_cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "system_stats").write_text(
        json.dumps({"system": {"comfyui_version": "0.26.0"}, "devices": []})
    )
    with serve(tmp_path) as served:
        config = tmp_path / "vidax.json"
        config.write_text(json.dumps({"schema_version": 1, "comfyui": {"url": served.url}}))
        result = va_cli("doctor", "--json", env={"VIDAX_CONFIG": str(config)})
    checks = {check["name"]: check for check in json.loads(result.out)["checks"]}
    assert checks["comfyui"]["status"] == "ok" and "0.26.0" in checks["comfyui"]["detail"]


def test_a_state_dir_through_a_file_fails(va_cli: CliRunner, tmp_path: Path) -> None:
    """VA_STATE_DIR naming a file: every run is refused (exit 34), so the doctor is not ready."""
    blocking = tmp_path / "va-home"
    blocking.write_text("a file\n")
    result = va_cli("doctor", env={"VA_STATE_DIR": str(blocking)})
    assert result.code == ExitCode.VALIDATION_FAILED
    line = next(line for line in result.out.splitlines() if "state dir" in line)
    assert line.startswith("FAIL") and f"{blocking} is a file, not a folder" in line


def test_an_invalid_config_is_named_with_its_field(va_cli: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "vidax.json"
    config.write_text(json.dumps({"schema_version": 1, "server": {"port": "eighty"}}))
    result = va_cli("doctor", env={"VIDAX_CONFIG": str(config)})
    assert result.code == ExitCode.VALIDATION_FAILED
    line = next(line for line in result.out.splitlines() if "config vidax" in line)
    assert line.startswith("FAIL") and "vidax.json" in line and "server.port" in line


def test_doctor_warns_of_features_whose_filters_the_build_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ffmpeg build without vidstab and libass, as some distributions ship it.
    real = shutil.which("ffmpeg")
    assert real is not None
    listing = subprocess.run(
        [real, "-hide_banner", "-filters"], capture_output=True, text=True, check=True
    ).stdout
    kept = "\n".join(
        line
        for line in listing.splitlines()
        if not any(f" {name} " in line for name in ("vidstabdetect", "subtitles"))
    )
    (tmp_path / "filters.txt").write_text(kept)
    fake = tmp_path / "ffmpeg"
    fake.write_text(
        "#!/bin/sh\n"
        f'for a; do [ "$a" = -filters ] && exec cat {tmp_path / "filters.txt"}; done\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("FFMPEG", str(fake))
    check = check_feature_filters()
    assert check.status == "warn"
    assert (
        "stabilize (vidstab) needs vidstabdetect" in check.detail
        and "captions needs subtitles" in check.detail
    )
    assert "camera motion" not in check.detail


@pytest.mark.parametrize(
    ("scontrol", "status", "words"),
    [
        (None, "ok", "not installed"),
        ('echo "Slurmctld(primary) at head is UP"', "ok", "the controller answers"),
        # As a real scontrol does while slurmctld is down: it retries until its message timeout.
        ("exec /bin/sleep 30", "warn", "waits up to 10 s"),
    ],
)
def test_doctor_says_whether_slurms_controller_answers(
    va_cli: CliRunner, tmp_path: Path, scontrol: str | None, status: str, words: str
) -> None:
    """A Slurm installed with its controller down slows every Snakemake start: the doctor warns of it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ffmpeg", "ffprobe"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    if scontrol is not None:
        (bin_dir / "scontrol").write_text(f"#!/bin/sh\n{scontrol}\n")
        (bin_dir / "scontrol").chmod(0o755)
    path = f"{bin_dir}:{Path(sys.executable).parent}"  # not /bin: this machine may have a real Slurm
    result = va_cli("doctor", "--json", env={"PATH": path})
    checks = {check["name"]: check for check in json.loads(result.out)["checks"]}
    assert checks["slurm"]["status"] == status and words in checks["slurm"]["detail"], checks["slurm"]
    assert result.code == 0, result.out
