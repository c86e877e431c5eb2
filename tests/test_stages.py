"""The rule bodies of va/stages.py called in-process, in the graph's order: the output contract of the
held-still path for every kind of start and audio, checked with ffprobe."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO, Media, ffmpeg, ffmpeg_without_x264, ffprobe_streams
from va import media, stages
from va.errors import ExitCode, VaError
from va.job import load_job
from va.manifest import build_manifest
from va.plan import plan_job, write_plan
from va.rule_settings import audio_settings, encode_settings, still_settings
from va.tracking import record_run_started
from va.workdir import Workdir


def render_held_still(job_path: Path, root: Path) -> tuple[Path, dict[str, Any]]:
    """What the graph does for a job without ComfyUI and lip-sync, without Snakemake: prepare_audio,
    hold_start_frame, encode. Returns the final video and the plan."""
    job, run = load_job(job_path), Workdir(root)
    for folder in ("prepare", "frames"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    planned = plan_job(job)
    write_plan(planned, run.plan)
    stages.prepare_audio(audio_settings(planned), run.padded_audio, run.padded_aac)
    stages.hold_start_frame(still_settings(planned), run.still, run.still_loop)
    final = run.final(job.basename)
    stages.encode(encode_settings(planned), run.still_loop, run.padded_aac, final)
    plan: dict[str, Any] = json.loads(run.plan.read_text())
    return final, plan


def check_contract(final: Path, frames: int, fps: int) -> dict[str, dict[str, Any]]:
    """docs/OUTPUT_CONTRACT.md: H.264 yuv420p at a constant rate, the exact frame count, even size, AAC,
    audio and picture within a frame of each other, the index first (+faststart)."""
    streams = ffprobe_streams(final)
    video, audio = streams["video"], streams["audio"]
    assert int(video["nb_read_frames"]) == frames
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert video["r_frame_rate"] == video["avg_frame_rate"] == f"{fps}/1"
    assert video["width"] % 2 == 0 and video["height"] % 2 == 0
    assert audio["codec_name"] == "aac"
    assert abs(float(video["duration"]) - float(audio["duration"])) <= 1 / fps
    head = final.read_bytes()[:4096]
    assert head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head  # +faststart: index first
    return streams


@pytest.mark.parametrize(
    ("make", "expected_size"),
    [
        (lambda f: f.image("odd.png", "321x241"), (320, 240)),
        (lambda f: f.image("alpha.png", "200x100", "rgba"), (200, 100)),
        (lambda f: f.image("photo.jpg", "640x360", "yuvj420p"), (640, 360)),
        (lambda f: f.image("anim.gif", "161x99", "pal8"), (160, 98)),
        (lambda f: f.video("clip.mp4", "427x240"), (426, 240)),
        (lambda f: f.video("clip.webm", "320x180"), (320, 180)),
    ],
    ids=["odd-png", "alpha-png", "jpg", "gif", "video-mp4", "video-webm"],
)
def test_every_start_kind_becomes_an_even_exact_video(
    files: Media, make: Any, expected_size: tuple[int, int]
) -> None:
    start = make(files)
    job = files.job(input={"audio": "voice.wav", "start": start.name})
    final, plan = render_held_still(job, files.root / "w")
    assert plan["target_frames"] == 50
    streams = check_contract(final, 50, 25)
    assert (streams["video"]["width"], streams["video"]["height"]) == expected_size


@pytest.mark.parametrize(
    ("extra", "rate"),
    [((), 16000), (("-ac", "2"), 44100), (("-c:a", "pcm_u8"), 8000), (("-ac", "2"), 48000)],
    ids=["mono-16k", "stereo-44k", "8-bit-8k", "stereo-48k"],
)
def test_audio_layouts(files: Media, extra: tuple[str, ...], rate: int) -> None:
    files.tone("voice.wav", 1.3, rate, *extra)
    final, plan = render_held_still(files.job(), files.root / "w")
    assert plan["audio_input_duration_seconds"] == pytest.approx(1.3, abs=1e-3)
    check_contract(final, round(1.3 * 25), 25)


def test_buffers_extend_the_video_and_pad_the_audio(files: Media) -> None:
    job = files.job(buffer={"pre_seconds": 0.5, "post_seconds": 1.0}, determinism={"fps": 24, "seed": 3})
    final, plan = render_held_still(job, files.root / "w")
    assert plan["audio_input_duration_seconds"] == pytest.approx(2.0, abs=1e-3)
    assert plan["audio_duration_seconds"] == pytest.approx(3.5, abs=1e-3)
    assert plan["visual_target_duration_seconds"] == pytest.approx(3.5, abs=1e-3)
    assert plan["target_frames"] == 84
    assert plan["buffer"] == {"pre_seconds": 0.5, "post_seconds": 1.0}
    streams = check_contract(final, 84, 24)
    assert float(streams["video"]["duration"]) == pytest.approx(3.5, abs=1 / 24)
    assert float(streams["audio"]["duration"]) == pytest.approx(3.5, abs=1 / 24)


@pytest.mark.parametrize("fit", ["contain", "cover"])
def test_output_size_contain_and_cover(files: Media, fit: str) -> None:
    job = files.job(f"{fit}.json", output={"width": 128, "height": 128, "fit": fit, "basename": f"{fit}.mp4"})
    final, _ = render_held_still(job, files.root / fit)
    assert final.name == f"{fit}.mp4"
    streams = check_contract(final, 50, 25)
    assert (streams["video"]["width"], streams["video"]["height"]) == (128, 128)


def test_a_missing_encoder_fails_the_still_with_exit_60_and_leaves_nothing(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = ffmpeg_without_x264(files.root)
    monkeypatch.setenv("FFMPEG", str(fake))
    root = files.root / "w"
    with pytest.raises(VaError) as caught:
        render_held_still(files.job(), root)
    assert caught.value.code == ExitCode.ENCODE_FAILED and "libx264" in caught.value.message
    assert not (root / "frames" / "still.mp4").exists() and not (root / "final.mp4").exists()
    assert not [p for p in root.rglob("*") if p.name.startswith(".encode-")]


@pytest.mark.parametrize(("size", "expected"), [("1x1", (2, 2)), ("1x241", (2, 240)), ("2x2", (2, 2))])
def test_the_smallest_images_become_a_video_of_at_least_2x2(
    files: Media, size: str, expected: tuple[int, int]
) -> None:
    start = files.root / f"tiny-{size}.png"  # lavfi sources start at 2x2: a crop makes the smaller ones
    width, height = size.split("x")
    crop = f"format=rgb24,crop={width}:{height}"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=4x244", "-vf", crop, "-frames:v", "1", str(start))
    final, _ = render_held_still(
        files.job(input={"audio": "voice.wav", "start": start.name}), files.root / "w"
    )
    streams = check_contract(final, 50, 25)
    assert (streams["video"]["width"], streams["video"]["height"]) == expected


def test_a_final_that_appeared_while_encoding_is_kept(files: Media) -> None:
    """The workdir is checked before a run; a file that took the final's name since is never replaced."""
    root = files.root / "w"
    job = load_job(files.job())
    run = Workdir(root)
    for folder in ("prepare", "frames"):
        (root / folder).mkdir(parents=True)
    planned = plan_job(job)
    stages.prepare_audio(audio_settings(planned), run.padded_audio, run.padded_aac)
    stages.hold_start_frame(still_settings(planned), run.still, run.still_loop)
    run.final("final.mp4").write_text("the user's own video\n")
    with pytest.raises(VaError) as caught:
        stages.encode(encode_settings(planned), run.still_loop, run.padded_aac, run.final("final.mp4"))
    assert (
        caught.value.code == ExitCode.OUTPUT_EXISTS
        and "appeared while it was being made" in caught.value.message
    )
    assert run.final("final.mp4").read_text() == "the user's own video\n"
    assert not [p for p in root.iterdir() if p.name.startswith(".encode-")]


def ebur128(path: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBFS) of a file's audio, as ffmpeg's ebur128 filter
    measures them: the measurement a listener's tools make, not the one va normalizes with."""
    done = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-nostats",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-af",
            "ebur128=peak=true",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = done.stderr[done.stderr.rindex("Summary:") :]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary)
    assert integrated and peak, summary
    return float(integrated.group(1)), float(peak.group(1))


@pytest.mark.parametrize(
    ("target", "normalization"),
    [(-16.0, "limited"), (-23.0, "linear")],
    ids=["peaks-limited", "linear-gain"],
)
def test_a_loudness_job_final_measures_the_target(
    files: Media, tmp_path: Path, target: float, normalization: str
) -> None:
    # The sample voice is real speech at -20.7 LUFS with peaks at -1.1 dBTP: -23 is a plain gain, while
    # -16 needs 4.7 dB more, which would lift its peaks above -1.5 dBTP without the limiter.
    shutil.copyfile(REPO / "assets" / "samples" / "voice.wav", files.root / "voice.wav")
    job = load_job(
        files.job(
            buffer={"pre_seconds": 0.5, "post_seconds": 0.5}, audio={"loudness": {"target_lufs": target}}
        )
    )
    run = Workdir(tmp_path / "w")
    for folder in ("prepare", "frames"):
        (run.root / folder).mkdir(parents=True)
    planned = plan_job(job)
    write_plan(planned, run.plan)
    stages.prepare_audio(audio_settings(planned), run.padded_audio, run.padded_aac, run.loudness_record)
    stages.hold_start_frame(still_settings(planned), run.still, run.still_loop)
    final = run.final(job.basename)
    stages.encode(encode_settings(planned), run.still_loop, run.padded_aac, final)

    integrated, peak = ebur128(final)
    assert abs(integrated - target) <= 0.5
    assert peak <= -1.5 + 0.5  # the AAC encode may add a little to the true peak
    record = json.loads(run.loudness_record.read_text())
    assert record["normalization"] == normalization
    assert record["before"]["integrated_lufs"] == pytest.approx(-20.7, abs=0.1)
    assert abs(record["after"]["integrated_lufs"] - target) <= 0.2
    assert record["after"]["true_peak_db"] <= -1.5
    record_run_started(run, job)
    manifest = build_manifest(run)
    assert manifest is not None
    assert manifest["loudness"] == {"target_lufs": target, "true_peak_db": -1.5, **record}


def test_without_loudness_the_voice_is_kept_as_it_is(files: Media) -> None:
    shutil.copyfile(REPO / "assets" / "samples" / "voice.wav", files.root / "voice.wav")
    final, plan = render_held_still(files.job(), files.root / "w")
    assert plan["loudness"] is None
    assert ebur128(final)[0] == pytest.approx(-20.7, abs=0.3)


@pytest.mark.parametrize("seconds", [1.0, 0.3], ids=["shorter", "far-shorter"])
def test_a_voice_track_replaced_after_planning_is_named_by_prepare_audio(
    files: Media, seconds: float
) -> None:
    """The padded audio is checked against the plan at the stage's boundary: a voice track swapped for a
    shorter one after the graph was planned fails the stage, naming both lengths, instead of a final of
    the planned length with the audio running out. The stage pads the voice as the plan probed it: one
    far shorter than its planned header said is not taken for a damaged file."""
    job, run = load_job(files.job()), Workdir(files.root / "w")
    planned = plan_job(job)
    files.tone("voice.wav", seconds)
    with pytest.raises(VaError) as caught:
        stages.prepare_audio(audio_settings(planned), run.padded_audio, run.padded_aac)
    assert caught.value.code == ExitCode.UNSUPPORTED_FORMAT
    assert caught.value.message.startswith(
        f"input.audio: the padded audio lasts {seconds:.3f} s where the plan has 2.000 s"
    )
    assert "replaced after planning" in caught.value.message


def test_the_stages_read_the_inputs_as_the_plan_probed_them(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A voice and a start that need ffprobe (an MP3, a JPEG) are probed once, by the plan: padding the
    voice (normalized too) and rendering the still start no ffprobe; the final keeps the contract."""
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=220:duration=2", "-c:a", "libmp3lame", str(files.root / "v.mp3")
    )
    start = files.image("start.jpg")
    job = load_job(files.job(input={"audio": "v.mp3", "start": start.name}, audio={"loudness": {}}))
    run = Workdir(files.root / "w")
    for folder in ("prepare", "frames"):
        (run.root / folder).mkdir(parents=True)
    planned = plan_job(job)
    assert planned.start_probe is not None and planned.start_probe.codec == "mjpeg"
    probes: list[list[str]] = []
    real = subprocess.run

    def run_counted(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        probes.extend([argv] if Path(argv[0]).name == "ffprobe" else [])
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(media.subprocess, "run", run_counted)
    stages.prepare_audio(audio_settings(planned), run.padded_audio, run.padded_aac, run.loudness_record)
    stages.hold_start_frame(still_settings(planned), run.still, run.still_loop)
    assert probes == []
    final = run.final(job.basename)
    stages.encode(encode_settings(planned), run.still_loop, run.padded_aac, final)
    check_contract(final, planned.target_frames, 25)


def test_a_still_loop_of_another_size_than_planned_is_not_published(files: Media) -> None:
    """The boundary check of every encode: frames, rate and size against the plan; a mismatch names
    both and publishes nothing."""
    root = files.root / "w"
    planned = plan_job(load_job(files.job()))
    run = Workdir(root)
    stages.hold_start_frame(still_settings(planned), run.still, run.still_loop)
    with pytest.raises(VaError) as caught:
        media.loop_still(run.still_loop, None, run.final("final.mp4"), fps=25, frames=50, size=(100, 100))
    assert caught.value.code == ExitCode.ENCODE_FAILED
    assert caught.value.message == (
        "final.mp4: encoded 50 frames of 320x240 at 25 fps where 50 frames of 100x100 at 25 fps were planned"
    )
    assert not run.final("final.mp4").exists()


def rgb_pixels(path: Path) -> np.ndarray:
    """The first frame of an image or video, decoded to RGB as ffmpeg displays it (rotation applied)."""
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).astype(np.float32)


@pytest.mark.parametrize(("rotation", "size"), [(90, (240, 320)), (-90, (240, 320)), (180, (320, 240))])
def test_a_start_video_with_rotation_metadata_is_taken_as_displayed(
    files: Media, rotation: int, size: tuple[int, int]
) -> None:
    """A phone video is stored 320x240 with a display matrix that turns it: the plan, the still and the
    final have the size it is displayed at, and the still is its first frame the right way up."""
    stored = files.video("stored.mp4", "320x240")
    start = files.root / "turned.mp4"
    ffmpeg("-i", str(stored), "-c", "copy", "-metadata:s:v:0", f"rotate={rotation}", str(start))
    job = files.job(input={"audio": "voice.wav", "start": start.name})
    final, plan = render_held_still(job, files.root / "w")
    assert (plan["geometry"]["source_width"], plan["geometry"]["source_height"]) == size
    streams = check_contract(final, 50, 25)
    assert (streams["video"]["width"], streams["video"]["height"]) == size
    still = rgb_pixels(Workdir(files.root / "w").still)
    assert np.abs(still - rgb_pixels(start)).mean() < 3
    if rotation == 180:  # the same size either way: the picture itself is turned
        assert np.abs(still - rgb_pixels(stored)).mean() > 20


def test_a_full_disk_during_prepare_is_named_not_blamed_on_the_audio(files: Media) -> None:
    """ffmpeg writing the padded audio to a full disk (/dev/full answers every write with ENOSPC): exit
    32 naming the disk and the file, not 12 "cannot decode audio"."""
    run = Workdir(files.root / "w")
    planned = plan_job(load_job(files.job()))
    run.padded_audio.parent.mkdir(parents=True)
    run.padded_audio.symlink_to("/dev/full")
    with pytest.raises(VaError) as caught:
        stages.prepare_audio(audio_settings(planned), run.padded_audio, run.padded_aac)
    assert caught.value.code == ExitCode.WORKDIR_UNUSABLE
    assert caught.value.message.startswith("no space left on device: ffmpeg could not write ")
    assert str(run.root / "prepare") in caught.value.message
