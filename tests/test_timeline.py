"""va/timeline.py: segments inline or from JSON/YAML/SRT/WebVTT files, checked when the job is validated;
captions on the video's frames as SRT, WebVTT and a subtitle track of the final video (or burnt in)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CliRunner, Media
from tests.test_stages import check_contract, render_held_still
from va import stages
from va.errors import ExitCode
from va.job import load_job
from va.plan import generation_document, plan_generation, plan_job, write_plan
from va.rule_settings import audio_settings, captions_settings, encode_settings, still_settings
from va.timeline import load_segments, render_captions
from va.workdir import Workdir

SRT = """1
00:00:00,000 --> 00:00:00,900
Hello there.

2
00:00:01,010 --> 00:00:01,800
Second line
in two rows.
"""
VTT = """WEBVTT

00:00.000 --> 00:00.900
Hello there.

00:01.010 --> 00:01.800
Second line
"""


@pytest.mark.parametrize("suffix", [".srt", ".vtt", ".json", ".yaml"])
def test_every_timing_file_gives_the_same_segments(files: Media, va_cli: CliRunner, suffix: str) -> None:
    path = files.root / f"timing{suffix}"
    items = [
        {"start": 0.0, "end": 0.9, "caption": "Hello there."},
        {"start": 1.01, "end": 1.8, "caption": "x"},
    ]
    text = {".srt": SRT, ".vtt": VTT, ".json": json.dumps(items), ".yaml": json.dumps(items)}[suffix]
    path.write_text(text, encoding="utf-8")
    job = files.job(timeline_file=path.name)
    segments = load_segments(load_job(job))
    assert [(s.start, s.end) for s in segments] == [(0.0, 0.9), (1.01, 1.8)]
    assert segments[0].caption == "Hello there."
    assert va_cli("validate", job).code == 0


@pytest.mark.parametrize(
    ("timeline", "needle"),
    [
        ([{"start": 1.0, "end": 0.5}], "segment 0 (1-0.5 s): start is not before end"),
        ([{"start": 0, "end": 1}, {"start": 0.8, "end": 1.5}], "segment 1 (0.8-1.5 s) overlaps segment 0"),
        ([{"start": 1, "end": 1.5}, {"start": 0, "end": 0.5}], "segment 1 (0-0.5 s) starts before segment 0"),
        ([{"start": 0, "end": 2.6}], "segment 0 (0-2.6 s): ends after the padded audio"),
        ([{"start": 0, "end": 1, "strength": 2}], "timeline.0.strength"),
    ],
)
def test_a_bad_timeline_names_the_segment(
    files: Media, va_cli: CliRunner, timeline: list[dict[str, float]], needle: str
) -> None:
    result = va_cli("validate", files.job(timeline=timeline, buffer={"post_seconds": 0.5}))
    assert result.code == ExitCode.VALIDATION_FAILED
    assert result.err.count("\n") == 1 and needle in result.err, result.err


def test_an_srt_error_names_the_file_line(files: Media, va_cli: CliRunner) -> None:
    (files.root / "late.srt").write_text(SRT.replace("00:00:01,800", "00:00:09,000"), encoding="utf-8")
    result = va_cli("validate", files.job(timeline_file="late.srt"))
    assert result.code == ExitCode.VALIDATION_FAILED
    assert "segment 1 (1.01-9 s, line 6)" in result.err, result.err


def captions_of(video: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "s",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "json",
            str(video),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data: dict[str, list[dict[str, object]]] = json.loads(out)
    return [*data["streams"], *data["packets"]]


def render_with_captions(job_path: Path, root: Path) -> Workdir:
    """prepare_audio, hold_start_frame, captions and encode, as the graph runs them for a job with
    captions."""
    run = Workdir(root)
    for folder in ("prepare", "frames"):
        (root / folder).mkdir(parents=True)
    job = load_job(job_path)
    plan = plan_job(job)
    write_plan(plan, run.plan)
    stages.prepare_audio(audio_settings(plan), run.padded_audio, run.padded_aac)
    stages.hold_start_frame(still_settings(plan), run.still, run.still_loop)
    render_captions(captions_settings(plan), run.captions_srt, run.captions_vtt)
    stages.encode(
        encode_settings(plan),
        run.still_loop,
        run.padded_aac,
        run.final(job.basename),
        captions=run.captions_srt,
    )
    return run


def test_soft_captions_follow_the_audio_to_the_frame(files: Media) -> None:
    """Captions shifted by the 0.5 s pre buffer, on 25 fps frame boundaries: as files and as mov_text."""
    (files.root / "timing.srt").write_text(SRT, encoding="utf-8")
    job_path = files.job(timeline_file="timing.srt", buffer={"pre_seconds": 0.5})
    run = render_with_captions(job_path, files.root / "w")
    job = load_job(job_path)

    srt = run.captions_srt.read_text(encoding="utf-8")
    assert "00:00:00,520 --> 00:00:01,400" in srt  # 0.5 + 0.0 s; 0.5 + 0.9 s
    assert "00:00:01,520 --> 00:00:02,320" in srt  # 1.51 s is on no frame: the next one, 1.52 s
    assert run.captions_vtt.read_text(encoding="utf-8").startswith("WEBVTT")
    check_contract(run.final(job.basename), 62, 25)
    stream, *packets = captions_of(run.final(job.basename))
    assert stream["codec_name"] == "mov_text"
    timed = [
        (float(p["pts_time"]), float(p["pts_time"]) + float(p["duration_time"]))
        for p in packets
        if float(p["duration_time"]) > 0
    ]
    assert (0.52, 1.4) in [(round(a, 3), round(b, 3)) for a, b in timed]


def test_burnt_captions_draw_into_the_picture(files: Media) -> None:
    timeline = [{"start": 0.0, "end": 2.0, "caption": "BURNT"}]
    plain, _ = render_held_still(
        files.job("plain.json", output={"basename": "plain.mp4"}), files.root / "plain"
    )
    job_path = files.job(timeline=timeline, output={"captions": "burn"})
    run = render_with_captions(job_path, files.root / "burn")
    job = load_job(job_path)
    check_contract(run.final(job.basename), 50, 25)
    from tests.test_motion import gray_frames  # noqa: PLC0415

    burnt, held = gray_frames(run.final(job.basename)), gray_frames(plain)
    bottom = slice(180, 240)
    assert abs(burnt[25, bottom] - held[25, bottom]).mean() > 2  # the caption's letters at the bottom
    assert abs(burnt[25, :120] - held[25, :120]).mean() < 2  # the rest of the picture as it was
    assert captions_of(run.final(job.basename)) == []


def test_burnt_captions_on_a_held_still_are_drawn_at_their_times(files: Media) -> None:
    """A held still (its 2 s loop padded to the length) with two captions after a 1.5 s pre buffer: each
    caption on the frames of its own time, none before, between or after (they were drawn on the loop, and
    its last frame held to the end: the first caption everywhere, or with a longer buffer none)."""
    files.tone(seconds=11.0)
    timeline = [{"start": 0, "end": 3, "caption": "FIRST"}, {"start": 5, "end": 10, "caption": "SECOND"}]
    job_path = files.job(
        timeline=timeline,
        determinism={"fps": 10},
        buffer={"pre_seconds": 1.5},
        output={"captions": "burn", "x264_preset": "ultrafast"},
    )
    run = render_with_captions(job_path, files.root / "burn")
    final = run.final(load_job(job_path).basename)
    check_contract(final, 125, 10)  # 1.5 + 11 s at 10 fps
    from tests.test_motion import gray_frames  # noqa: PLC0415

    frames = gray_frames(final)[:, 180:240]  # the bottom, where captions are drawn
    clean = frames[5]  # 0.5 s: the pre buffer, no caption

    def caption_at(seconds: float) -> float:
        return float(abs(frames[round(seconds * 10)] - clean).mean())

    outside = {s: caption_at(s) for s in (1.0, 5.0, 6.0, 12.0, 12.4)}
    inside = {s: caption_at(s) for s in (1.6, 3.0, 4.4, 6.6, 9.0, 11.4)}
    # A caption's letters change the band by about 2 levels on average, the encode's noise by 0.03.
    assert all(v < 0.5 for v in outside.values()), outside
    assert all(v > 1 for v in inside.values()), inside
    assert abs(frames[30] - frames[90]).mean() > 1  # FIRST and SECOND: two captions, not one held


def test_comfyui_batches_are_cut_at_segments_and_take_their_prompts(files: Media) -> None:
    """2 s of voice after a 0.5 s pre buffer at 25 fps (62 frames), batches of 16, two segments: no batch
    spans an edge, and each batch's parameters are its segment's."""
    timeline = [
        {"start": 0.0, "end": 0.9, "prompt": "sunrise", "strength": 0.2},
        {"start": 1.2, "end": 2.0, "prompt": "night", "negative": "blur"},
    ]
    comfy = {"workflow_ids": ["vidax_text2img_frames"], "batch_size": 16}
    job = load_job(
        files.job(timeline=timeline, comfyui=comfy, buffer={"pre_seconds": 0.5}, motion={"strength": 0.7})
    )
    generation = plan_generation(job, 2.5, 7)
    plan = generation_document(generation)
    cuts = [(b["first"], b["frames"], b["segment"]) for b in plan["batches"]]
    # edges at frames 12.5 -> 13 (0.5 s), 35 (1.4 s), 42.5 -> 43 (1.7 s), 62.5 -> 63 (2.5 s)
    assert cuts == [(0, 13, None), (13, 16, 0), (29, 6, 0), (35, 8, None), (43, 16, 1), (59, 4, 1)]
    assert sum(count for _, count, _ in cuts) == plan["frames"] == 63
    values = [generation.values(batch, batch.seed) for batch in generation.batches]
    assert [v["prompt"] for v in values] == ["", "sunrise", "sunrise", "", "night", "night"]
    assert [v["negative"] for v in values][4:] == ["blur", "blur"]
    assert [v["motion_strength"] for v in values][:3] == [0.7, 0.2, 0.2]


@pytest.mark.parametrize("inline", [True, False], ids=["timeline", "timeline_file"])
def test_a_timeline_over_the_limit_is_one_short_line(files: Media, va_cli: CliRunner, inline: bool) -> None:
    """10,001 segments (the limit is 10,000), inline or in a file: one line of what the list must be and
    its size, never the list itself (20,000 made a line of 1 MB)."""
    segments = [{"start": i * 0.0001, "end": i * 0.0001 + 0.00005} for i in range(10001)]
    (files.root / "long.json").write_text(json.dumps(segments), encoding="utf-8")
    job = files.job(timeline=segments) if inline else files.job(timeline_file="long.json")
    result = va_cli("validate", job)
    assert result.code == ExitCode.VALIDATION_FAILED
    assert result.err.count("\n") == 1 and len(result.err) < 300, result.err[:300]
    assert "at most 10000 items (it has 10001 items)" in result.err
