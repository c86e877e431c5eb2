"""Whole ``va run``s with a ComfyUI stage, for what only a run proves: the graph wires the batches into
the final video and the manifest, a changed default checkpoint makes the batches again on a resume, a
clip template goes end to end, and a killed run resumes its batches. (Every step and fault path is in
test_stage.py, called in this process.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.comfyui.conftest import comfy_job
from tests.comfyui.test_stage import video_of
from tests.conftest import VA, CliRunner, Comfy, Media, ffprobe_streams, free_port, read_manifest
from va.errors import ExitCode
from va.events import read_events

#: Whole runs: tests/conftest.py runs the tests of this file before the in-process ones.
pytestmark = pytest.mark.whole_run


def manifest_of(workdir: Path) -> dict[str, Any]:
    return read_manifest(workdir)


def test_frames_path_end_to_end_and_a_changed_default_checkpoint_makes_the_batches_again(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frames path through the graph into the final and the manifest. Then, on the same workdir: the
    checkpoint a job does not name is vidax.json's, resolved when the run is planned, so it is in the
    batches' settings: changed there, a resume (the final deleted) makes every batch again with the new
    one, where it kept the frames of the old."""
    comfy.checkpoints("sd_xl_base_1.0.safetensors", "other.safetensors")
    repo_config = Path(__file__).resolve().parent.parent.parent / "config" / "vidax.json"
    settings = json.loads(repo_config.read_text())
    config = files.root / "vidax.json"
    config.write_text(json.dumps(settings))
    monkeypatch.setenv("VIDAX_CONFIG", str(config))
    comfy.faults(system_stats_404=1)  # the run's health check must accept the /health fallback
    job, workdir = comfy_job(files, comfy, batch_size=16), files.root / "w"  # 4 batches: 16, 16, 16, 2

    def checkpoints() -> set[str]:
        graphs = (workdir / "comfyui" / "graphs").glob("*.json")
        return {json.loads(graph.read_text())["4"]["inputs"]["ckpt_name"] for graph in graphs}

    result = va_cli("run", job, "--workdir", workdir, "-q")
    assert result.code == 0, result.err
    stats = comfy.stats()
    assert stats["health"] == 1
    video = ffprobe_streams(workdir / "final.mp4")["video"]
    assert int(video["nb_read_frames"]) == 50 and (video["width"], video["height"]) == (64, 48)
    assert sorted(p.name for p in (workdir / "frames").glob("0*.png")) == [
        f"{i:06d}.png" for i in range(1, 51)
    ]
    phase = manifest_of(workdir)["phases"]["comfyui"]
    assert phase["status"] == "done"
    assert phase["progress"]["batches_done"] == phase["progress"]["batches_total"] == 4
    assert phase["progress"]["frames_done"] == phase["progress"]["frames_total"] == 50
    assert phase["progress"]["last_step"]["max"] == 4
    assert phase["comfyui_version"] == "0.26.0"
    assert len(phase["prompt_ids"]) == 4 and set(phase["prompt_ids"]) <= set(stats["prompts"])
    assert phase["batch_seeds"]["0000"] == 7 and phase["batch_seeds"]["0003"] == 10
    assert phase["graphs"] == [f"comfyui/graphs/{i:04d}-a1.json" for i in range(4)]
    assert [a["outcome"] for a in phase["attempts"]].count("succeeded") == 4
    assert len(stats["prompts"]) == 4 and checkpoints() == {"sd_xl_base_1.0.safetensors"}

    config.write_text(
        json.dumps({**settings, "comfyui": {**settings["comfyui"], "ckpt_name": "other.safetensors"}})
    )
    (workdir / "final.mp4").unlink()
    resumed = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert resumed.code == 0, resumed.err
    assert len(comfy.stats()["prompts"]) == 8 and checkpoints() == {"other.safetensors"}
    assert int(ffprobe_streams(workdir / "final.mp4")["video"]["nb_read_frames"]) == 50
    assert "comfyui" in manifest_of(workdir)["last_attempt"]["plan_changes"]


def test_video_output_template_run(files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path) -> None:
    """A clip template, its picture through the stabilize phase (vidstab's two passes and deflicker)."""
    workdir, job = files.root / "w", comfy_job(files, comfy, "video_clip", params={"fps": 8})
    job.write_text(
        json.dumps({**json.loads(job.read_text()), "stabilize": {"enable": True, "method": "both"}})
    )
    result = va_cli("run", job, "--workdir", workdir, "-q")
    assert result.code == 0, result.err
    assert sorted(p.name for p in (workdir / "comfyui" / "clips").iterdir()) == ["0000.mp4", "0001.mp4"]
    streams = ffprobe_streams(workdir / "final.mp4")
    assert int(streams["video"]["nb_read_frames"]) == 50 and streams["video"]["r_frame_rate"] == "25/1"
    manifest = manifest_of(workdir)
    assert manifest["phases"]["comfyui"]["progress"]["batches_done"] == 2
    assert manifest["phases"]["stabilize"]["status"] == "done"
    assert manifest["phases"]["stabilize"]["outputs"] == ["stabilize/output.mp4"]
    assert int(video_of(workdir / "stabilize" / "output.mp4")["nb_read_frames"]) == 50


def test_unreachable_server_fails_before_any_work(files: Media, va_cli: CliRunner, workflows: Path) -> None:
    job = files.job(
        comfyui={"workflow_ids": ["vidax_text2img_frames"], "url": f"http://127.0.0.1:{free_port()}"}
    )
    workdir = files.root / "w"
    result = va_cli("run", job, "--workdir", workdir, "-q")
    assert result.code == ExitCode.COMFYUI_UNAVAILABLE == 40
    assert "not reachable" in result.err and "--no-comfyui" in result.err
    assert not workdir.exists()  # nothing started


def test_bad_binding_fails_validation_before_the_server_is_asked(
    files: Media, va_cli: CliRunner, workflows: Path
) -> None:
    (workflows / "bad_binding.json").write_text((workflows / "video_clip.json").read_text())
    bindings = {"frames": [{"node": "1", "input": "batch_size"}], "seed": [{"node": "99", "input": "seed"}]}
    (workflows / "bad_binding.bindings.json").write_text(
        json.dumps({"schema_version": 1, "bindings": bindings})
    )
    job = files.job(comfyui={"workflow_ids": ["bad_binding"], "url": f"http://127.0.0.1:{free_port()}"})
    result = va_cli("run", job, "--workdir", files.root / "w", "-q")
    assert result.code == ExitCode.VALIDATION_FAILED == 10, result.err
    assert "workflow bad_binding: binding 'seed' names node 99, which the graph does not have" in result.err


def test_batches_resume_after_sigkill(files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path) -> None:
    job, workdir = comfy_job(files, comfy, batch_size=16, params={"steps": 40}), files.root / "w"  # 4 batches
    process = subprocess.Popen(
        [*VA, "run", str(job), "--workdir", str(workdir), "--cores", "1", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    batches = workdir / "comfyui" / "batches"
    try:
        deadline = time.monotonic() + 90
        while len(list(batches.glob("*.json"))) < 2:
            assert time.monotonic() < deadline and process.poll() is None, "the run did not get to 2 batches"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    done_before = sorted(p.name for p in batches.glob("*.json"))
    assert 2 <= len(done_before) < 4  # killed mid-stage
    submitted_before = len(comfy.stats()["prompts"])
    resumed = va_cli("run", job, "--workdir", workdir, "--resume")
    assert resumed.code == 0, resumed.err
    resubmitted = len(comfy.stats()["prompts"]) - submitted_before
    assert resubmitted <= 4 - len(done_before) + 1  # only missing batches (plus the one cut off) again
    assert int(ffprobe_streams(workdir / "final.mp4")["video"]["nb_read_frames"]) == 50
    assert manifest_of(workdir)["phases"]["comfyui"]["progress"]["batches_done"] == 4
    # The console of the resumed run: its own events only (the killed run's prepare is not replayed), the
    # stage's progress lines counting the batches found done, and no error. The batches do not wait for
    # the padded audio: the killed run may not have padded it, or been killed after its rule recorded its
    # end but before Snakemake did (Snakemake then makes it again): the resumed run's lines name
    # prepare_audio exactly as often as the resumed attempt's own events do.
    events = read_events(workdir / "logs" / "events.jsonl")
    attempt = events[max(i for i, e in enumerate(events) if e["kind"] == "run_started") :]
    padded = sum(e["kind"] == "rule_started" and e.get("rule") == "prepare_audio" for e in attempt)
    assert resumed.err.count("prepare_audio started") == padded and "error" not in resumed.err
    assert (
        1 <= resumed.err.count("comfyui: ") <= resubmitted  # a line a batch this run made
        and "comfyui: 4 of 4 batches, 50 of 50 frames" in resumed.err
    )
    status = va_cli("status", workdir)
    assert status.code == 0 and re.search(
        r"^comfyui\s+done\s+[\d.]+\s+4 of 4 batches, 50 of 50 frames$", status.out, re.MULTILINE
    ), status.out
