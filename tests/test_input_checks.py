"""va/input_checks.py: what ``va`` checked, recorded in the workdir and read by the graph, which then probes
no input (and searches no face) again; a file changed since is checked anew, and a record that is
corrupt or of another va, ffmpeg or ffprobe is ignored."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FACE_PHOTO, Media, calls_of
from tests.test_face import face_job, needs_face
from va import media, plan
from va.graph import check_job
from va.input_checks import record_checks, seed_checks
from va.job import CHECKED_AUDIO, CHECKED_VISUAL, Job, check_inputs, load_job
from va.workdir import Workdir


def forget_checks() -> None:
    """What a new process knows: no check made yet."""
    for memo in (CHECKED_AUDIO, CHECKED_VISUAL, plan.FACE_SEARCHES, media.TOOL_VERSIONS, media.COLOUR_NAMES):
        memo.clear()
    plan.tool_versions.cache_clear()


def recorded(job: Job, folder: Path) -> Path:
    """``job`` checked as ``va run`` checks it, the record written where ``va run`` writes it, and what
    the checks found forgotten (as the graph's own process starts)."""
    forget_checks()
    check_job(job)
    path = Workdir(folder).input_checks
    record_checks(path, [job])
    forget_checks()
    return path


def test_the_graph_seeded_from_the_record_starts_no_process(
    files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeded, planning the job (its inputs' probes, the colour names, ffmpeg's version) runs nothing."""
    job = load_job(files.job())
    expected = plan.plan_job(job)
    path = recorded(job, tmp_path / "w")
    assert seed_checks(path) == 4  # the voice, the start, ffmpeg's version and its colour names
    started = calls_of(monkeypatch, subprocess, "run")
    planned = plan.plan_job(job)
    assert started == []
    assert planned == expected
    assert planned.tools["ffmpeg"].startswith("ffmpeg version ")


def test_a_file_changed_since_the_record_is_checked_anew(
    files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load_job(files.job())
    path = recorded(job, tmp_path / "w")
    files.tone("voice.wav", 3.0)  # rewritten: another size, another mtime
    seed_checks(path)
    probed = calls_of(monkeypatch, media, "probe_audio")
    assert plan.plan_job(job).audio_input_duration_seconds == pytest.approx(3.0, abs=1e-3)
    assert probed == [(job.audio,)]


def _replace_width(document: dict[str, Any]) -> None:
    document["visual"][0]["width"] = "320"


def _another_ffprobe(document: dict[str, Any]) -> None:
    document["tools"]["ffprobe"]["inode"] += 1


@pytest.mark.parametrize(
    "spoil",
    [
        lambda path: path.write_text('{"kind": "va input ch'),  # cut short
        lambda path: path.write_bytes(b"\x00\xff"),
        lambda path: path.write_text("[]"),
        lambda path: _edit(path, lambda document: document.update(kind="something else")),
        lambda path: _edit(path, lambda document: document.update(va="0.0.1")),
        lambda path: _edit(path, _another_ffprobe),
        lambda path: _edit(path, _replace_width),
        lambda path: _edit(path, lambda document: document.pop("audio")),
    ],
    ids=["cut-short", "not-text", "not-an-object", "another-kind", "another-va", "another-ffprobe",
         "a-mistyped-entry", "a-section-missing"],
)  # fmt: skip
def test_a_corrupt_or_foreign_record_is_ignored(
    files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spoil: Callable[[Path], object]
) -> None:
    job = load_job(files.job())
    path = recorded(job, tmp_path / "w")
    spoil(path)
    assert seed_checks(path) == 0
    probed = calls_of(monkeypatch, media, "probe_audio")
    check_inputs(job)
    assert len(probed) == 1


def test_no_record_seeds_nothing(tmp_path: Path) -> None:
    """Plain ``snakemake`` in a folder that ``va`` never ran in: everything is checked as it always was."""
    assert seed_checks(Workdir(tmp_path).input_checks) == 0


def _edit(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_the_face_search_round_trips(files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The face `va run` found is the plan's without another search, under another name of the same file
    too (named as that job names it); another picture, or another OpenCV, is searched anew."""
    shutil.copyfile(FACE_PHOTO, files.root / "face.jpg")
    (files.root / "link.jpg").symlink_to(files.root / "face.jpg")
    for name, value in needs_face(files.root).items():
        monkeypatch.setenv(name, value)
    job = load_job(face_job(files, "face.jpg"))
    found = plan.plan_job(job).lipsync
    assert found is not None and found.face is not None and found.face.box is not None
    path = recorded(job, tmp_path / "w")
    record = json.loads(path.read_text())
    assert seed_checks(path) == 5  # and the face
    searched = calls_of(monkeypatch, plan, "search_start")
    stage = plan.plan_job(job).lipsync
    assert stage is not None and stage.face == found.face
    linked = plan.plan_job(load_job(face_job(files, "link.jpg"))).lipsync
    assert linked is not None and linked.face is not None
    assert (linked.face.box, linked.face.file) == (found.face.box, str(files.root / "link.jpg"))
    assert searched == []
    wide = files.job(
        "wide.json",
        input={"audio": "voice.wav", "start": "face.jpg"},
        lipsync={"enable": True, "provider": "p"},
        output={"width": 640, "height": 360},
    )
    plan.plan_job(load_job(wide))
    assert len(searched) == 1  # another picture: the face is elsewhere in it

    forget_checks()
    record["opencv"] = "opencv-python-headless 3.0.0"
    path.write_text(json.dumps(record))
    assert seed_checks(path) == 4  # all but the face
    plan.plan_job(job)
    assert len(searched) == 2
