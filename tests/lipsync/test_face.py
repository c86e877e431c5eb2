"""The face check in the lip-sync stage (va/lipsync/stage.py) with the fake tool in its LatentSync mode
(``needs_face``: it looks for a face in the frames it gets and fails with "Face not detected"): the tool
gets the plan's face box as ``{face_box}``; a visual stage's picture without a face is refused with exit 52
before the tool starts; without ``needs_face`` the same input fails only inside the tool. The whole run
of a voice in chunks through a tool that needs a face is in test_chunked_runs.py (that tool also refuses
audio over 4 s and works in windows of 16 frames)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FACE_PHOTO, Media
from tests.lipsync.conftest import UseProviders, prepare_lipsync_inputs
from tests.lipsync.fakes import command
from va.errors import ExitCode, VaError
from va.job import Job, load_job
from va.lipsync.stage import run_lipsync
from va.plan import load_plan
from va.rule_settings import lipsync_settings
from va.workdir import Workdir


def staged(
    files: Media, use_providers: UseProviders, provider: dict[str, Any], start: str, **lipsync: Any
) -> tuple[Job, Workdir]:
    """The job (2 s tone, ``start``, 25 fps) with provider ``p``, its lip-sync rule's inputs made."""
    use_providers(p=provider)
    job = load_job(
        files.job(
            input={"audio": "voice.wav", "start": start}, lipsync={"enable": True, "provider": "p", **lipsync}
        )
    )
    return job, prepare_lipsync_inputs(job, files.root / "w")


def lipsync(job: Job, run: Workdir, visual: Path | None = None) -> dict[str, Any]:
    return run_lipsync(
        lipsync_settings(load_plan(run.plan)), run.still, run.padded_audio, run.lipsync_output, visual=visual
    )


def test_the_tool_gets_the_face_box_of_the_plan(files: Media, use_providers: UseProviders) -> None:
    shutil.copyfile(FACE_PHOTO, files.root / "face.jpg")
    dump = files.root / "told.json"
    provider = command("needs_face", "--dump", str(dump), "--box", "{face_box}", needs_face=True)
    job, run = staged(files, use_providers, provider, "face.jpg")
    result = lipsync(job, run)
    assert result["passthrough"] is False  # the fake found the face in every second's frame
    lipsync_plan = load_plan(run.plan).lipsync
    assert lipsync_plan is not None and lipsync_plan.face is not None and lipsync_plan.face.box is not None
    argv = json.loads(dump.read_text())["argv"]
    assert argv[argv.index("--box") + 1] == lipsync_plan.face.box.as_text()
    assert result["face"]["box"] == {
        "x": lipsync_plan.face.box.x,
        "y": lipsync_plan.face.box.y,
        "width": lipsync_plan.face.box.width,
        "height": lipsync_plan.face.box.height,
    }
    assert json.loads(run.lipsync_result.read_text())["face"] == result["face"]


def test_a_visual_without_a_face_is_refused_before_the_tool_starts(
    files: Media, use_providers: UseProviders
) -> None:
    # The start has a face; the visual stage's picture (as ComfyUI might make it) loses it after 1 s.
    shutil.copyfile(FACE_PHOTO, files.root / "face.jpg")
    visual = files.face_video("generated.mp4", face_seconds=1.0, blank_seconds=1.0)
    dump = files.root / "told.json"
    job, run = staged(
        files, use_providers, command("needs_face", "--dump", str(dump), needs_face=True), "face.jpg"
    )
    with pytest.raises(VaError) as refused:
        lipsync(job, run, visual=visual)
    assert refused.value.code == ExitCode.LIPSYNC_INPUT_REJECTED
    # Eight frames spread over 50: 0, 7, 14, 21, 28, ...; 28 is the first grey one among them.
    assert f"no face found in frame 28 of {visual}" in refused.value.message
    assert not dump.exists()  # the tool never started
    assert not (run.root / "lipsync" / "logs").exists()
    result = json.loads(run.lipsync_result.read_text())
    assert result["error"]["code"] == 52


def test_each_chunk_checks_the_frames_its_tool_gets(files: Media, use_providers: UseProviders) -> None:
    # Two chunks of 1 s (frames 0-24 and 25-49); the visual stage's picture loses the face after 1.5 s.
    shutil.copyfile(FACE_PHOTO, files.root / "face.jpg")
    visual = files.face_video("generated.mp4", face_seconds=1.5, blank_seconds=0.5)
    dump = files.root / "told.json"
    provider = command("needs_face", "--dump", str(dump), needs_face=True)
    _, run = staged(files, use_providers, provider, "face.jpg", chunk_seconds=1.0)
    stage = load_plan(run.plan).lipsync
    assert stage is not None and [c.first for c in stage.chunks] == [0, 25]
    first, second = (run.lipsync_chunk(chunk.name) for chunk in stage.chunks)
    done = run_lipsync(
        lipsync_settings(load_plan(run.plan), "0000"), run.still, run.padded_audio, first, visual=visual
    )
    assert done["passthrough"] is False and done["face"]["faceless_frame"] is None
    assert dump.exists()
    dump.unlink()
    with pytest.raises(VaError) as refused:
        run_lipsync(
            lipsync_settings(load_plan(run.plan), "0001"), run.still, run.padded_audio, second, visual=visual
        )
    assert refused.value.code == ExitCode.LIPSYNC_INPUT_REJECTED
    # The second chunk's 25 frames, 8 of them looked at: frames 25, 28, 32, 35, 39, ... of the visual
    # picture, whose face ends at frame 37.
    assert f"no face found in frame 39 of {visual}" in refused.value.message
    assert not dump.exists()


def test_without_needs_face_the_tool_fails_late_as_latentsync_does(
    files: Media, use_providers: UseProviders
) -> None:
    failures = [{"pattern": "Face not detected", "kind": "input", "message": "no face found"}]
    dump = files.root / "told.json"
    provider = command("needs_face", "--dump", str(dump), failures=failures)  # needs_face: false
    job, run = staged(files, use_providers, provider, "start.png")  # testsrc2: no face
    with pytest.raises(VaError) as failed:
        lipsync(job, run)
    assert failed.value.code == ExitCode.LIPSYNC_INPUT_REJECTED
    assert "Face not detected in frame 0" in failed.value.message
    assert dump.exists()  # the tool started, loaded its model and looked itself


def test_passthrough_passes_a_faceless_start_through_without_starting_the_tool(
    files: Media, use_providers: UseProviders
) -> None:
    dump = files.root / "told.json"
    provider = command("needs_face", "--dump", str(dump), needs_face=True)
    job, run = staged(files, use_providers, provider, "start.png", allow_passthrough=True)
    result = lipsync(job, run)
    assert result["passthrough"] is True and result["error"]["code"] == 52
    assert "no face found in frame 0" in result["error"]["message"]
    assert not dump.exists()
    assert run.lipsync_output.exists()
