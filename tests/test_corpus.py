"""The corpus of real-world media (tests/corpus.py) through what va makes of it: every start becomes the
held still through the plan (upright, at its displayed size, in the reference's colours), every voice
is checked as ``va validate`` checks it and padded (whole, not clipped, the WAV and the AAC alike), and
one whole run of a portrait phone photo with a 5.1 voice is checked in its final video."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import CliRunner, ffprobe_streams
from tests.corpus import (
    AUDIO_KINDS,
    COLOUR_TOLERANCE,
    VISUAL_KINDS,
    AudioKind,
    VisualKind,
    colour_errors,
    peak_db,
    reference_picture,
)
from va import job as jobs
from va import media
from va.errors import ExitCode, VaError
from va.plan import plan_geometry

#: The highest sample peak va's audio may have where the source's did not reach it (dBFS).
PEAK_LIMIT_DB = -1.0


def start_job(tmp_path: Path, start: Path, output: tuple[int, int] | None = None) -> jobs.Job:
    """A job of ``start`` with a voice beside it (and an ``output`` size), loaded as ``va`` loads it."""
    voice = tmp_path / "voice.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", str(voice)], check=True)
    document = {
        "schema_version": 1,
        "input": {"audio": str(voice), "start": str(start)},
        "lipsync": {"enable": False},
    }
    if output is not None:
        document["output"] = {"width": output[0], "height": output[1]}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return jobs.load_job(path)


@pytest.mark.parametrize("kind", VISUAL_KINDS, ids=[kind.name for kind in VISUAL_KINDS])
def test_a_start_from_the_corpus_becomes_an_upright_still_of_its_displayed_size_and_colours(
    tmp_path: Path, kind: VisualKind
) -> None:
    reference = tmp_path / "reference.png"
    reference_picture().save(reference)
    start = tmp_path / kind.file
    kind.make(reference, start)
    job = start_job(tmp_path, start)
    jobs.check_inputs(job)  # as va validate checks it
    geometry = plan_geometry(job)
    assert (geometry.source_width, geometry.source_height) == kind.display
    still = tmp_path / "still.png"
    frame = media.FrameGeometry(geometry.still_width, geometry.still_height, geometry.filter)
    media.render_still(start, still, frame, geometry.background)
    with Image.open(still) as picture:
        assert picture.size == media.even_size(*kind.display)
        errors = colour_errors(picture)
    assert max(errors) <= COLOUR_TOLERANCE, errors


@pytest.mark.parametrize("kind", AUDIO_KINDS, ids=[kind.name for kind in AUDIO_KINDS])
def test_a_voice_from_the_corpus_is_taken_whole_and_padded_without_clipping(
    tmp_path: Path, kind: AudioKind
) -> None:
    source = tmp_path / kind.file
    kind.make(source)
    checked = jobs._check_audio(source)  # as va validate checks it: no refusal
    assert checked.decoded_seconds == pytest.approx(kind.seconds, abs=0.06)
    padded, aac = tmp_path / "padded.wav", tmp_path / "padded.m4a"
    info = media.pad_audio(source, padded, 0.5, 0.5, aac=aac)
    assert info.duration_seconds == pytest.approx(checked.decoded_seconds + 1.0, abs=1e-3)
    assert peak_db(padded) <= PEAK_LIMIT_DB
    assert peak_db(aac) <= PEAK_LIMIT_DB
    assert abs(peak_db(aac) - peak_db(padded)) <= 0.5


def test_a_portrait_phone_photo_with_a_surround_voice_makes_an_upright_final_on_its_loudness(
    tmp_path: Path, va_cli: CliRunner
) -> None:
    """The corpus's one whole run: an EXIF-6 JPEG and a 5.1 AAC voice normalized to -16 LUFS."""
    reference = tmp_path / "reference.png"
    reference_picture().save(reference)
    start, voice = tmp_path / "portrait.jpg", tmp_path / "surround.m4a"
    next(kind for kind in VISUAL_KINDS if kind.name == "jpeg-exif-6-portrait").make(reference, start)
    next(kind for kind in AUDIO_KINDS if kind.name == "aac-5.1-broadcast").make(voice)
    workdir = tmp_path / "run"
    done = va_cli(
        "produce",
        "--audio",
        voice,
        "--start",
        start,
        "--prompt",
        "p",
        "--no-comfyui",
        "--lipsync",
        "off",
        "--loudness",
        "-16",
        "--workdir",
        workdir,
        "--quiet",
    )
    assert done.code == 0, done.err
    final = workdir / "fertig.mp4"
    streams = ffprobe_streams(final)
    video, audio = streams["video"], streams["audio"]
    assert (video["width"], video["height"]) == (320, 180)
    decoded = media.decoded_duration(voice)
    assert int(video["nb_read_frames"]) == pytest.approx(decoded * 25, abs=1)
    assert float(audio["duration"]) == pytest.approx(decoded, abs=0.05)
    frame = tmp_path / "frame.png"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(final), "-frames:v", "1", str(frame)], check=True)
    with Image.open(frame) as picture:
        errors = colour_errors(picture)
    assert max(errors) <= COLOUR_TOLERANCE, errors
    assert peak_db(final) <= PEAK_LIMIT_DB
    loudness, _ = media.measure_loudness(final, media.LoudnessTarget(-16.0, -1.5))
    assert loudness.integrated_lufs == pytest.approx(-16.0, abs=0.5)


def test_a_damaged_heic_start_is_refused_as_unsupported_in_one_line(tmp_path: Path) -> None:
    start = tmp_path / "IMG_0002.HEIC"
    _heic_kind().make(_reference(tmp_path), start)
    start.write_bytes(start.read_bytes()[:200])  # the header's boxes, cut before the picture
    with pytest.raises(VaError) as refused:
        jobs.check_inputs(start_job(tmp_path, start))
    assert refused.value.code == ExitCode.UNSUPPORTED_FORMAT
    assert "\n" not in refused.value.message and str(start) in refused.value.message


def _heic_kind() -> VisualKind:
    return next(kind for kind in VISUAL_KINDS if kind.file.lower().endswith(".heic"))


def _reference(tmp_path: Path) -> Path:
    reference = tmp_path / "reference.png"
    reference_picture().save(reference)
    return reference


@pytest.mark.parametrize(("output", "lowres"), [((640, 360), "2"), ((1280, 720), "1"), ((2560, 1440), None)])
def test_a_large_jpeg_start_is_decoded_scaled_down_to_a_still_in_its_colours(
    tmp_path: Path, output: tuple[int, int], lowres: str | None
) -> None:
    start = tmp_path / "start.jpg"
    reference_picture((2560, 1440)).save(start, quality=95)
    job = start_job(tmp_path, start, output)
    geometry = plan_geometry(job)
    frame = media.FrameGeometry(geometry.still_width, geometry.still_height, geometry.filter)
    decode = media._scaled_decode(media.probe_visual(start), frame)
    assert decode == (["-lowres", lowres] if lowres else [])
    still = tmp_path / "still.png"
    media.render_still(start, still, frame, geometry.background)
    with Image.open(still) as picture:
        assert picture.size == output
        errors = colour_errors(picture)
    assert max(errors) <= COLOUR_TOLERANCE, errors
