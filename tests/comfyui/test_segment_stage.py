"""va/comfyui/segment_stage.py and the plan of segments in this process, as rule comfyui_segment calls them,
against the shared ComfyUI double: a segment's voice, context and clip, the check of a clip, a take kept,
which segments an edit or a retake touches, and the double's audio and video nodes as a real ComfyUI 0.26
answered them (seen on one in this session)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.comfyui.conftest import comfy_job
from tests.conftest import Comfy, Media, ffmpeg
from tests.prepared import hold_start_frame_once, prepare_audio_once
from va.comfyui.client import ComfyClient
from va.comfyui.pool import PoolServer, PoolSettings
from va.comfyui.segment_stage import SegmentFiles, check_segment_clip, run_segment, segment_inputs
from va.comfyui.workflow import load_workflow
from va.errors import ExitCode, VaError
from va.events import read_events
from va.job import load_job
from va.plan import Plan, plan_job, write_plan
from va.rule_settings import (
    assemble_settings,
    audio_settings,
    encode_settings,
    segment_settings,
    settings_json,
    still_settings,
)
from va.segments import Retake
from va.workdir import Workdir


def samples(path: Path) -> np.ndarray:
    """A file's audio as 16 kHz mono floats."""
    raw = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-ar",
            "16000",
            "-ac",
            "1",
            "-f",
            "f32le",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32)


def frames(path: Path) -> np.ndarray:
    """Every frame of a 64x48 video (frames, height, width, rgb)."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 48, 64, 3).astype(float)


def figures(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames,duration,sample_rate,channels",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def run_prompt(comfy: Comfy, graph: dict[str, Any]) -> dict[str, Any]:
    client = ComfyClient(comfy.url)
    prompt_id = client.submit(graph)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entry = client.history(prompt_id)
        if entry is not None:
            return entry
        time.sleep(0.05)
    raise AssertionError("the prompt did not end")


def test_the_double_loads_audio_and_video_and_cuts_a_clips_audio_to_its_frames(
    files: Media, comfy: Comfy
) -> None:
    """As ComfyUI 0.26 did: LoadVideo -> GetVideoComponents gives the uploaded video's frames,
    ImageFromBatch counts a negative index from the end, ImageBatch appends (scaled to the first's size),
    and CreateVideo with LoadAudio's audio saves an MP4 whose AAC audio is cut to the video's length
    (1.32 s for 33 frames at 25 fps from a 2 s voice: seen on the real server)."""
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:sample_rate=16000:duration=2", str(files.root / "v.wav"))
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=25:duration=0.48",
        "-pix_fmt",
        "yuv420p",
        str(files.root / "c.mp4"),
    )
    client = ComfyClient(comfy.url)
    voice, context = client.upload_image(files.root / "v.wav"), client.upload_image(files.root / "c.mp4")
    assert voice.endswith(".wav") and context.endswith(".mp4")
    graph = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": context}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "ImageFromBatch", "inputs": {"image": ["2", 0], "batch_index": -9, "length": 9}},
        "4": {
            "class_type": "EmptyImage",
            "inputs": {"width": 32, "height": 24, "batch_size": 33, "color": 255},
        },
        "5": {
            "class_type": "ImageFromBatch",
            "inputs": {"image": ["4", 0], "batch_index": 9, "length": 4096},
        },
        "6": {"class_type": "ImageBatch", "inputs": {"image1": ["3", 0], "image2": ["5", 0]}},
        "7": {"class_type": "LoadAudio", "inputs": {"audio": voice}},
        "8": {"class_type": "CreateVideo", "inputs": {"images": ["6", 0], "fps": 25, "audio": ["7", 0]}},
        "9": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["8", 0], "filename_prefix": "probe/seg", "format": "mp4", "codec": "h264"},
        },
    }
    entry = run_prompt(comfy, graph)
    item = entry["outputs"]["9"]["images"][0]
    assert entry["outputs"]["9"]["animated"] == [True] and item["subfolder"] == "probe"
    clip = files.root / "clip.mp4"
    client.download(item, clip)
    streams = figures(clip)
    assert int(streams["video"]["nb_read_frames"]) == 33
    assert float(streams["audio"]["duration"]) == pytest.approx(1.32, abs=0.001)
    assert (int(streams["audio"]["sample_rate"]), streams["audio"]["channels"]) == (16000, 1)
    picture, source = frames(clip), frames(files.root / "c.mp4")
    assert np.abs(picture[:9] - source[-9:]).mean() < 4  # the context, first
    assert np.abs(picture[9:].mean(axis=(0, 1, 2)) - np.array([0, 0, 255])).max() < 12  # then blue frames
    # A file the input folder does not have: 400 before anything runs, as ComfyUI's validate_inputs says.
    missing = {**graph, "7": {"class_type": "LoadAudio", "inputs": {"audio": "nope.wav"}}}
    answer = requests.post(f"{comfy.url}/prompt", json={"prompt": missing, "client_id": "x"}, timeout=5)
    assert answer.status_code == 400
    error = answer.json()["node_errors"]["7"]
    assert error["class_type"] == "LoadAudio" and error["dependent_outputs"] == ["9"]
    assert error["errors"][0]["details"] == "audio - Invalid audio file: nope.wav"


def chained_plan(files: Media, comfy: Comfy, **sections: Any) -> tuple[Plan, Workdir]:
    """A 3 s voice planned for colour_segments (33 frames, 9 of context and head), its audio padded and its
    still held (once per test process for the same inputs: tests/prepared.py)."""
    files.tone(seconds=3.0)
    path = comfy_job(files, comfy, "colour_segments", poll_interval_ms=50)
    if sections:
        document = json.loads(path.read_text())
        path.write_text(json.dumps({**document, **sections}))
    plan, run = plan_job(load_job(path)), Workdir(files.root / "w")
    run.plan.parent.mkdir(parents=True, exist_ok=True)
    write_plan(plan, run.plan)
    prepare_audio_once(audio_settings(plan), run.padded_audio, run.padded_aac)
    run.still.parent.mkdir(parents=True, exist_ok=True)
    hold_start_frame_once(still_settings(plan), run.still, run.still_loop)
    return plan, run


def files_of(run: Workdir, name: str, previous: str | None = None) -> SegmentFiles:
    return SegmentFiles(
        still=run.still,
        audio=run.padded_audio,
        previous=run.segment_clip(previous) if previous else None,
        clip=run.segment_clip(name),
        record=run.segment_record(name),
    )


def make(plan: Plan, run: Workdir, comfy: Comfy, name: str, previous: str | None = None) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    document = run_segment(
        segment_settings(plan, name),
        files=files_of(run, name, previous),
        workdir=run,
        report=lambda message, **fields: events.append({"message": message, **fields}),
        pool=PoolSettings((PoolServer(comfy.url, 1),)),
        logs=run.root / "logs" / "segment.log",
    )
    return {**document, "events": events}


def test_a_segments_voice_has_its_head_frames_silence_and_its_context_the_held_start(
    files: Media, comfy: Comfy, workflows: Path
) -> None:
    plan, run = chained_plan(files, comfy)
    generation = plan.comfyui
    assert generation is not None and generation.contract is not None and generation.chained
    first, second = generation.segments[:2]
    shipped = load_workflow("colour_segments")
    # As an image-to-video template binds it too: the previous clip's last frame, made in the same ffmpeg.
    workflow = dataclasses.replace(shipped, bindings={**shipped.bindings, "last_frame": []})
    made = segment_inputs(first, generation.contract, workflow, files_of(run, "0000"))
    assert made["last_frame"] == run.still  # the first segment's: the start frame
    voice = samples(made["audio"])
    assert len(voice) == round(first.frames / 25 * 16000)  # 33 frames' worth, at 16 kHz
    assert np.abs(voice[: 9 * 640 - 16]).max() < 1e-3  # the head frames' 0.36 s: silence before the voice
    assert np.abs(voice[9 * 640 + 160 :]).max() > 0.1
    held = figures(made["previous_frames"])["video"]  # the start frame held nine frames (at its own size)
    assert int(held["nb_read_frames"]) == 9
    # The second segment's voice starts nine frames before its new frames, under the first's last frames.
    assert second.audio_start_seconds == pytest.approx((second.first - 9) / 25)
    make(plan, run, comfy, "0000")
    later = segment_inputs(second, generation.contract, workflow, files_of(run, "0001", "0000"))
    assert np.abs(frames(later["previous_frames"]) - frames(run.segment_clip("0000"))[-9:]).mean() < 3
    assert np.abs(frames(later["last_frame"])[0] - frames(run.segment_clip("0000"))[-1]).mean() < 3


def test_a_clip_that_is_not_its_plan_fails_the_segment_naming_what_came(
    files: Media, comfy: Comfy, workflows: Path
) -> None:
    plan, _ = chained_plan(files, comfy)
    assert plan.comfyui is not None and plan.comfyui.contract is not None
    segment = plan.comfyui.segments[0]
    clip = files.root / "0000.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=1.24", "-pix_fmt", "yuv420p", str(clip))
    with pytest.raises(VaError) as raised:
        check_segment_clip(clip, segment, plan.comfyui.contract, (64, 48))
    assert raised.value.code == ExitCode.COMFYUI_FAILED
    assert raised.value.message == (
        "segment 0000: clip 0000.mp4 has 31 frames of 64x48 where 33 frames of 64x48 at 25 fps (1.320 s) "
        "were planned"
    )


def test_a_take_made_before_is_kept_without_asking_comfyui(
    files: Media, comfy: Comfy, workflows: Path
) -> None:
    plan, run = chained_plan(files, comfy)
    made = make(plan, run, comfy, "0000")
    assert [e["outcome"] for e in made["events"] if e.get("kind") == "comfyui_attempt"] == [
        "submitted",
        "succeeded",
    ]
    assert made["frames"] == 33 and made["audio_seconds"] == pytest.approx(1.32, abs=0.001)
    assert made["own_seconds"] >= 0  # va's own time, printed by bench/bench_comfyui.py
    prompts = len(comfy.stats()["prompts"])
    run.segment_clip("0000").unlink()  # as Snakemake removes the outputs of a step it reruns
    run.segment_record("0000").unlink()
    again = make(plan, run, comfy, "0000")
    assert len(comfy.stats()["prompts"]) == prompts
    assert [e["outcome"] for e in again["events"]] == ["kept"] and run.segment_clip("0000").is_file()
    assert again["prompt_id"] == made["prompt_id"]


def segment_params(plan: Plan) -> dict[str, str]:
    assert plan.comfyui is not None
    return {s.name: settings_json(segment_settings(plan, s.name)) for s in plan.comfyui.segments}


def test_an_edit_or_a_retake_changes_only_the_segments_it_touches(
    files: Media, comfy: Comfy, workflows: Path
) -> None:
    plan, _ = chained_plan(files, comfy)
    job = load_job(Path(plan.job))
    before = segment_params(plan)
    assert len(before) == 4
    # A timeline prompt over 1.2-1.5 s: only the segment whose new frames' middle lies there changes.
    document = json.loads(job.path.read_text())
    job.path.write_text(json.dumps({**document, "timeline": [{"start": 1.2, "end": 1.5, "prompt": "smile"}]}))
    edited = plan_job(load_job(job.path))
    after = segment_params(edited)
    assert [name for name in before if before[name] != after[name]] == ["0001"]
    assert edited.comfyui is not None and edited.comfyui.segments[1].prompt == "smile"
    # A retake: that segment alone (Snakemake then remakes the ones after it in a chain: their input is new).
    retaken = plan_job(load_job(job.path), retakes={"0002": Retake(take=1, prompt="laugh")})
    assert retaken.comfyui is not None
    changed = [name for name, text in segment_params(retaken).items() if text != after[name]]
    assert changed == ["0002"]
    segment = retaken.comfyui.segments[2]
    assert (segment.take, segment.prompt, segment.seed) == (1, "laugh", 7 + 2 + 2_000_003)


def test_a_crossfade_changes_the_join_alone_and_more_than_the_head_frames_is_refused(
    files: Media, comfy: Comfy, workflows: Path
) -> None:
    plan, _ = chained_plan(files, comfy)
    job = load_job(Path(plan.job))
    document = json.loads(job.path.read_text())
    document["comfyui"]["crossfade_frames"] = 4
    job.path.write_text(json.dumps(document))
    faded = plan_job(load_job(job.path))
    assert segment_params(faded) == segment_params(plan)  # no segment is remade
    joined, before = assemble_settings(faded), assemble_settings(plan)
    assert joined is not None and before is not None
    assert (before.crossfade_frames, joined.crossfade_frames) == (0, 4)
    document["comfyui"]["crossfade_frames"] = 10  # colour_segments has 9 head frames
    job.path.write_text(json.dumps(document))
    with pytest.raises(VaError) as raised:
        plan_job(load_job(job.path))
    assert raised.value.code == ExitCode.VALIDATION_FAILED
    assert raised.value.message == (
        "comfyui.crossfade_frames: 10 is more than the 9 head frames of workflow colour_segments (a seam "
        "blends the previous segment's last frames with the next one's head)"
    )


def test_a_template_that_lip_syncs_in_the_model_runs_no_lipsync_stage_unless_named(
    files: Media, comfy: Comfy, workflows: Path
) -> None:
    plan, _ = chained_plan(files, comfy)
    assert plan.comfyui is not None and plan.comfyui.lipsync_in_model
    assert plan.stages.lipsync is None and plan.lipsync is None
    assert plan.stages.visual.value == "comfyui_segments"
    # The sync check is on for its picture: before the encode, each segment's new frames judged alone.
    model = encode_settings(plan).model_sync
    assert model is not None and model.settings.enabled and model.template == plan.comfyui.workflow_ids[0]
    assert [window.name for window in model.segments] == [segment.name for segment in plan.comfyui.segments]
    ends = [window.first + window.frames for window in model.segments]
    assert [window.first for window in model.segments] == [0, *ends[:-1]] and ends[-1] == plan.target_frames


def test_the_run_of_a_segment_is_recorded_as_an_event(files: Media, comfy: Comfy, workflows: Path) -> None:
    """The stage reports each attempt with the segment's name (what the manifest lists)."""
    plan, run = chained_plan(files, comfy)
    made = make(plan, run, comfy, "0000")
    attempts = [e for e in made["events"] if e.get("kind") == "comfyui_attempt"]
    assert {e["segment"] for e in attempts} == {"0000"} and attempts[-1]["prompt_id"] == made["prompt_id"]
    assert not read_events(run.events)  # the reporter got them: the rule's step records them (rule_step)
