"""va report: Snakemake's HTML report of a finished run or batch, with the videos, a contact sheet and a
waveform embedded, and the runtime of every rule; it never redoes or re-records a run. The report of a
batch, into a .zip, is drawn from the batch of tests/test_batch.py (check_batch_report)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import CliRunner, FinishedRun, Media
from va.errors import ExitCode

#: Whole runs: tests/conftest.py runs the tests of this file before the in-process ones.
pytestmark = pytest.mark.whole_run

EMBEDDED = re.compile(r"data:([\w/]+);charset=[^;]+;filename=([^;]+);base64,([A-Za-z0-9+/=]+)")


def embedded(html: str) -> list[tuple[str, str, bytes]]:
    """The files a self-contained report carries: (mime type, file name, content)."""
    return [(mime, name, base64.b64decode(data)) for mime, name, data in EMBEDDED.findall(html)]


def picture(path: Path) -> tuple[str, int, int]:
    argv = ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json"]
    out = subprocess.run(
        [*argv, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    stream = json.loads(out)["streams"][0]
    return stream["codec_name"], stream["width"], stream["height"]


def test_report_of_a_run(finished_run: FinishedRun, files: Media, va_cli: CliRunner) -> None:
    workdir = finished_run.workdir
    final, manifest = workdir / "final.mp4", (workdir / "manifest.json").read_text()
    encoded_at = final.stat().st_mtime_ns

    result = va_cli("report", workdir)
    assert result.code == 0, result.err
    report = workdir / "report.html"
    assert result.out.strip() == str(report)

    # The figures: 12 frames of 320x240 in 4 columns and 3 rows (4 px between and around), and the waveform.
    sheet, waveform = workdir / "report" / "contact_sheet.png", workdir / "report" / "waveform.png"
    assert picture(sheet) == ("png", 4 * 320 + 5 * 4, 3 * 240 + 4 * 4)
    assert picture(waveform) == ("png", 1280, 240)

    html = report.read_text(encoding="utf-8")
    assert len(html) > 100_000
    files_in_report = {name: (mime, data) for mime, name, data in embedded(html)}
    assert files_in_report["final.mp4"] == ("video/mp4", final.read_bytes())
    assert files_in_report["contact_sheet.png"] == ("image/png", sheet.read_bytes())
    assert files_in_report["waveform.png"] == ("image/png", waveform.read_bytes())
    runtimes = re.search(r"var runtimes_spec = (\{.*?\});\n", html)
    assert runtimes is not None
    timed = {row["rule"] for row in json.loads(runtimes.group(1))["data"]["values"]}
    assert {"prepare_audio", "hold_start_frame", "encode", "report_contact_sheet", "report_waveform"} <= timed

    # The run is left as it was: its video not re-encoded, its record not touched.
    assert final.stat().st_mtime_ns == encoded_at
    assert (workdir / "manifest.json").read_text() == manifest

    # A report into a .zip (the page and the files beside it): check_batch_report.

    shutil.rmtree(workdir / "report")
    broken = va_cli("report", workdir, env={"FFMPEG": str(shutil.which("false"))})
    assert broken.code == ExitCode.ENCODE_FAILED
    assert len(broken.err.strip().splitlines()) == 1
    assert "drawing the figures failed: report_" in broken.err and "logs/report/" in broken.err

    wrong = va_cli("report", workdir, "--output", files.root / "report.pdf")
    assert wrong.code == ExitCode.USAGE
    assert wrong.err.strip().splitlines() == [
        f"va: error: --output {files.root / 'report.pdf'}: a report is an .html or a .zip file"
    ]

    # A file at the report's path that va did not write there, or that was changed since, stays as it is.
    assert str(report) in json.loads((workdir / "logs" / "reports.json").read_text())
    mine = files.root / "notes.html"
    mine.write_text("my notes\n")
    with report.open("a", encoding="utf-8") as edited:
        edited.write("<!-- my remark -->\n")
    kept = report.read_bytes()
    for argv, there in ((["--output", mine], mine), ([], report)):
        refused = va_cli("report", workdir, *argv)
        assert refused.code == ExitCode.OUTPUT_EXISTS, refused.err
        assert refused.err.strip().splitlines() == [
            f"va: error: {there} exists and is not a report va wrote there (or it was changed since); "
            "not overwriting it (choose another --output, or remove it)"
        ]
    assert mine.read_text() == "my notes\n" and report.read_bytes() == kept
    report.unlink()  # the shared run's report as a user would leave it: gone, not edited


def check_batch_report(
    files: Media, va_cli: CliRunner, out: Path, finished: list[str], unfinished: str
) -> None:
    """``va report`` of the batch in ``out`` (tests/test_batch.py makes it) into a .zip, the page and the
    files beside it (the self-contained page is test_report_of_a_run's): the ``finished`` jobs are in
    it, the ``unfinished`` one (its video deleted) is left out, not run and not recorded."""
    kept = (out / unfinished / "manifest.json").read_text()
    archive = files.root / "reports" / "batch.zip"  # in a folder the report makes
    result = va_cli("report", out, "--output", archive)
    assert result.code == 0, result.err
    assert result.out.strip() == str(archive)
    with zipfile.ZipFile(archive) as zipped:
        contents = {name: zipped.read(name) for name in zipped.namelist()}
    html = contents.pop("batch/report.html").decode("utf-8")
    beside: dict[str, list[bytes]] = {}
    for name, data in contents.items():
        beside.setdefault(Path(name).name, []).append(data)
    made = {
        "final.mp4": "final.mp4",
        "contact_sheet.png": "report/contact_sheet.png",
        "waveform.png": "report/waveform.png",
    }
    assert set(beside) == set(made)
    for name, path in made.items():
        assert sorted(beside[name]) == sorted((out / job / path).read_bytes() for job in finished), name
    assert all(f"{name}/report/contact_sheet.png" in html for name in finished)
    assert f"{unfinished}/" not in html
    assert picture(out / finished[0] / "report" / "waveform.png") == ("png", 1280, 240)

    assert not (out / unfinished / "final.mp4").exists() and not (out / unfinished / "report").exists()
    assert (out / unfinished / "manifest.json").read_text() == kept

    refused = va_cli("report", out / unfinished)
    assert refused.code == ExitCode.INPUT_NOT_FOUND
    assert len(refused.err.strip().splitlines()) == 1
    assert "no finished video in" in refused.err and "--resume" in refused.err


def test_report_of_a_cleaned_run(finished_run: FinishedRun, tmp_path: Path, va_cli: CliRunner) -> None:
    """``va clean`` removes prepare/padded.wav; the waveform is drawn from the final video's audio."""
    workdir = tmp_path / "w"
    shutil.copytree(finished_run.workdir, workdir, symlinks=True)
    (workdir / "report.html").unlink(missing_ok=True)
    shutil.rmtree(workdir / "report", ignore_errors=True)
    assert va_cli("clean", workdir).code == ExitCode.OK
    assert not (workdir / "prepare" / "padded.wav").exists()
    result = va_cli("report", workdir)
    assert result.code == ExitCode.OK, result.err
    assert picture(workdir / "report" / "waveform.png") == ("png", 1280, 240)
    assert (workdir / "report.html").stat().st_size > 100_000


def test_a_report_folder_through_a_file_is_one_line(
    finished_run: FinishedRun, tmp_path: Path, va_cli: CliRunner
) -> None:
    blocking = tmp_path / "notes"
    blocking.write_text("mine\n")
    result = va_cli("report", finished_run.workdir, "--output", blocking / "r.html")
    assert result.code == ExitCode.WORKDIR_UNUSABLE
    assert result.err.strip().splitlines() == [
        f"va: error: report folder {blocking} unusable: File exists: {blocking}"
    ]
    assert blocking.read_text() == "mine\n"


def test_report_of_nothing(files: Media, va_cli: CliRunner) -> None:
    missing = va_cli("report", files.root / "nowhere")
    assert missing.code == ExitCode.INPUT_NOT_FOUND
    assert missing.err.strip().splitlines() == [f"va: error: not found: {files.root / 'nowhere'}"]

    (files.root / "empty").mkdir()
    no_run = va_cli("report", files.root / "empty")
    assert no_run.code == ExitCode.INPUT_NOT_FOUND
    assert no_run.err.strip().splitlines() == [
        f"va: error: {files.root / 'empty'} is neither a run's workdir (va run) "
        "nor a batch's output folder (va batch)"
    ]
