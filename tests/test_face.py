"""va/face.py and the face check of the start at planning: OpenCV's Haar cascade on the start as the held
still shows it; a provider that needs a face refuses a start without one with exit 52 before anything
runs (``va validate``, ``va run``), naming the file and the frame; the box is in the plan."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FACE_PHOTO, REPO, CliRunner, Media, calls_of, ffmpeg
from tests.lipsync.fakes import command, providers_file
from va import face, media
from va.job import load_job
from va.plan import load_plan, plan_job, write_plan


def needs_face(folder: Path, *, needs: bool = True) -> dict[str, str]:
    """The environment of a provider ``p`` that needs a face (the fake tool as LatentSync)."""
    return providers_file(folder, p=command("needs_face", needs_face=needs))


def face_job(files: Media, start: str, **lipsync: object) -> Path:
    return files.job(
        input={"audio": "voice.wav", "start": start}, lipsync={"enable": True, "provider": "p", **lipsync}
    )


@pytest.mark.parametrize(
    ("size", "fit", "expected"),
    [
        (None, "contain", (87, 31, 52)),  # the photo's own size
        ((640, 360), "contain", (262, 44, 73)),  # scaled to 360 px, 140 px in from the left
        ((160, 256), "cover", (39, 31, 52)),  # 48 px cut from each side
    ],
)
def test_the_face_box_is_in_the_pixels_of_the_output_picture(
    size: tuple[int, int] | None, fit: str, expected: tuple[int, int, int]
) -> None:
    width, height = size or (None, None)
    geometry = media.plan_geometry(256, 256, width, height, fit)
    found = face.search_start(media.probe_visual(FACE_PHOTO), [0], geometry, "black")
    assert found.faceless_frame is None and found.frames == (0,) and found.box is not None
    x, y, side = expected
    box = found.box
    # The cascade's box of one face moves by a few pixels with the scale it is found at.
    assert abs(box.x - x) <= 6 and abs(box.y - y) <= 6
    assert abs(box.width - side) <= 8 and box.width == box.height


def test_the_face_box_is_in_the_plan(files: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copyfile(FACE_PHOTO, files.root / "face.jpg")
    for name, value in needs_face(files.root).items():
        monkeypatch.setenv(name, value)
    plan = plan_job(load_job(face_job(files, "face.jpg")))
    assert plan.lipsync is not None and plan.lipsync.face is not None
    box = plan.lipsync.face.box
    assert box is not None and abs(box.x - 87) <= 6 and abs(box.y - 31) <= 6
    assert plan.lipsync.face.file == str(files.root / "face.jpg")
    assert box.as_text() == f"{box.x},{box.y},{box.width},{box.height}"


@pytest.mark.parametrize(
    "start",
    ["portrait", "testsrc", "plain"],
    ids=["the-sample-portrait", "ffmpeg-testsrc", "plain-colour"],
)
def test_a_start_without_a_face_is_refused_with_exit_52(
    files: Media, va_cli: CliRunner, tmp_path: Path, start: str
) -> None:
    if start == "portrait":  # the bundled sample: a drawn figure, no face a detector knows
        shutil.copyfile(REPO / "assets" / "samples" / "portrait.png", files.root / "none.png")
    elif start == "testsrc":
        shutil.copyfile(files.image("other.png", "640x360"), files.root / "none.png")
    else:
        ffmpeg(
            "-f", "lavfi", "-i", "color=c=0x336699:s=320x240", "-frames:v", "1", str(files.root / "none.png")
        )
    job = face_job(files, "none.png")
    env = needs_face(tmp_path)
    for command_line in (("validate", job), ("run", job, "--workdir", tmp_path / "w", "-q")):
        result = va_cli(*command_line, env=env)
        assert result.code == 52, result.err
        assert result.err.count("\n") == 1 and "Traceback" not in result.err
        assert f"no face found in frame 0 of {files.root / 'none.png'}" in result.err
        assert "lip-sync provider p needs one" in result.err
    assert not (tmp_path / "w" / "lipsync").exists()  # nothing ran


def test_a_provider_that_needs_no_face_is_not_checked(
    files: Media, va_cli: CliRunner, tmp_path: Path
) -> None:
    job = face_job(files, "start.png")  # ffmpeg's testsrc2: no face
    env = needs_face(tmp_path, needs=False)
    assert va_cli("validate", job, env=env).code == 0


def test_a_start_video_is_checked_at_frames_spread_over_it(
    files: Media, va_cli: CliRunner, tmp_path: Path
) -> None:
    video = files.face_video("talk.mp4", face_seconds=2.0, blank_seconds=1.0)  # frames 0-74
    result = va_cli("validate", face_job(files, "talk.mp4"), env=needs_face(tmp_path))
    assert result.code == 52
    # Eight frames spread over 75: 0, 11, 21, 32, 42, 53, ...; frame 53 is the first grey one of them.
    assert f"no face found in frame 53 of {video}" in result.err


@pytest.mark.parametrize("start", ["face.jpg", "talk.mp4"])
def test_planning_a_face_check_probes_the_start_once(
    files: Media, start: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The face search decodes the start as the plan probed it: one ffprobe of the start, the plan's (a
    start video's frames are counted from its MP4 boxes)."""
    if start == "face.jpg":
        shutil.copyfile(FACE_PHOTO, files.root / start)
    else:
        files.face_video(start, face_seconds=2.0, blank_seconds=0.0)
    for name, value in needs_face(files.root).items():
        monkeypatch.setenv(name, value)
    job = load_job(face_job(files, start))
    runs = calls_of(monkeypatch, media.subprocess, "run")
    plan = plan_job(job)
    assert plan.lipsync is not None and plan.lipsync.face is not None and plan.lipsync.face.box is not None
    probes = [argv for (argv, *_) in runs if Path(argv[0]).name == "ffprobe" and str(job.start) in argv[-1]]
    assert len(probes) == 1


def test_a_faceless_start_with_passthrough_is_planned_for_the_stage_to_pass_through(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in needs_face(files.root).items():
        monkeypatch.setenv(name, value)
    plan = plan_job(load_job(face_job(files, "start.png", allow_passthrough=True)))
    assert plan.lipsync is not None and plan.lipsync.face is not None
    assert plan.lipsync.face.faceless_frame == 0 and plan.lipsync.face.box is None


def test_the_face_check_survives_the_plans_json(files: Media, monkeypatch: pytest.MonkeyPatch) -> None:

    shutil.copyfile(FACE_PHOTO, files.root / "face.jpg")
    for name, value in needs_face(files.root).items():
        monkeypatch.setenv(name, value)
    plan = plan_job(load_job(face_job(files, "face.jpg")))
    write_plan(plan, files.root / "plan.json")
    assert load_plan(files.root / "plan.json") == plan


def test_validate_says_where_the_face_is(files: Media, va_cli: CliRunner, tmp_path: Path) -> None:
    shutil.copyfile(FACE_PHOTO, files.root / "face.jpg")
    found = va_cli("validate", face_job(files, "face.jpg"), env=needs_face(tmp_path))
    assert found.code == 0
    line = next(line for line in found.out.splitlines() if line.startswith("  face "))
    assert line.endswith("(frame 0 of the start looked at)") and " at 8" in line  # x about 87
    passed = va_cli(
        "validate", face_job(files, "start.png", allow_passthrough=True), env=needs_face(tmp_path)
    )
    assert passed.code == 0
    assert "  face      none in frame 0: the un-synced picture will be used" in passed.out


def test_a_later_plan_of_the_same_start_takes_the_earlier_check(
    files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every Snakemake process of a run plans anew (a cluster job, a resume): with the earlier plan of the
    # same start in the same picture, OpenCV is not even loaded.

    shutil.copyfile(FACE_PHOTO, files.root / "face.jpg")
    for name, value in needs_face(tmp_path).items():
        monkeypatch.setenv(name, value)
    job, earlier = face_job(files, "face.jpg"), tmp_path / "plan.json"
    replan = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; from va.job import load_job; "
        "from va.plan import plan_job, previous_plan; "
        f"plan = plan_job(load_job(Path({str(job)!r})), previous_plan(Path({str(earlier)!r}))); "
        "print(plan.lipsync.face.box.as_text(), 'cv2' in sys.modules)",
    ]
    box, loaded = subprocess.run(replan, capture_output=True, text=True, check=True).stdout.split()
    assert loaded == "True"  # no earlier plan: the start was looked at
    write_plan(plan_job(load_job(job)), earlier)
    assert subprocess.run(replan, capture_output=True, text=True, check=True).stdout.split() == [box, "False"]
    files.image("face.jpg", "256x256")  # another picture under the same name: looked at again, refused
    refused = subprocess.run(replan, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "no face found in frame 0" in refused.stderr
