"""The ComfyUI stage against a test double speaking ComfyUI's recorded protocol, as a real server process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import VA, CliRunner, Media, ffprobe_streams
from va.comfyui.health import check_health
from va.errors import ExitCode
from va.events import read_events

DOUBLE = Path(__file__).with_name("comfyui_double.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Comfy:
    """A running double: its URL, fault switches and what it saw."""

    def __init__(self, url: str) -> None:
        self.url = url

    def faults(self, **faults: int) -> None:
        requests.post(f"{self.url}/__double__/faults", json=faults, timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = requests.get(f"{self.url}/__double__/stats", timeout=5).json()
        return data


@pytest.fixture
def comfy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Comfy]:
    port = free_port()
    root = tmp_path_factory.mktemp("comfy")
    process = subprocess.Popen(
        [sys.executable, str(DOUBLE), "--port", str(port), "--root", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/system_stats", timeout=1)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline and process.poll() is None, "the double did not start"
            time.sleep(0.1)
    yield Comfy(url)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def workflows(state_dir: Path) -> Path:
    """The shipped templates installed, plus weight-free test templates."""
    folder = state_dir / "comfyui" / "workflows"
    folder.mkdir(parents=True)
    for path in (Path(__file__).parent.parent / "assets" / "workflows").glob("*.json"):
        shutil.copy(path, folder / path.name)
    empty = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}},
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8}},
        "3": {"class_type": "SaveVideo",
              "inputs": {"video": ["2", 0], "filename_prefix": "clip", "format": "mp4", "codec": "h264"}},
    }  # fmt: skip
    (folder / "video_clip.json").write_text(json.dumps(empty))
    bindings = {
        "frames": [{"node": "1", "input": "batch_size"}],
        "seed": [{"node": "1", "input": "color"}],
        "fps": [{"node": "2", "input": "fps"}],
        "filename_prefix": [{"node": "3", "input": "filename_prefix"}],
    }
    (folder / "video_clip.bindings.json").write_text(json.dumps({"schema_version": 1, "bindings": bindings}))
    vhs = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}},
        "2": {"class_type": "VHS_VideoCombine",
              "inputs": {"images": ["1", 0], "frame_rate": 8, "loop_count": 0, "filename_prefix": "vhs",
                         "format": "video/h264-mp4", "pingpong": False, "save_output": True}},
    }  # fmt: skip
    (folder / "vhs_clip.json").write_text(json.dumps(vhs))
    vhs_bindings = {
        "frames": [{"node": "1", "input": "batch_size"}],
        "seed": [{"node": "1", "input": "color"}],
        "fps": [{"node": "2", "input": "frame_rate"}],
        "filename_prefix": [{"node": "2", "input": "filename_prefix"}],
    }
    (folder / "vhs_clip.bindings.json").write_text(
        json.dumps({"schema_version": 1, "bindings": vhs_bindings})
    )
    return folder


def other_clients_prompt(comfy: Comfy) -> str:
    """A prompt of another client of the same server (not ours to stop)."""
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "other"}},
    }
    answer = requests.post(
        f"{comfy.url}/prompt", json={"prompt": graph, "client_id": "someone-else"}, timeout=5
    )
    answer.raise_for_status()
    return str(answer.json()["prompt_id"])


def comfy_job(files: Media, comfy: Comfy, workflow: str = "vidax_text2img_frames", **comfyui: Any) -> Path:
    settings = {"workflow_ids": [workflow], "url": comfy.url, "batch_size": 8, "retries": 2, **comfyui}
    settings["params"] = {"width": 64, "height": 48, "steps": 4, **comfyui.get("params", {})}
    return files.job(comfyui=settings)


def run(va_cli: CliRunner, job: Path, workdir: Path) -> Any:
    return va_cli("run", job, "--workdir", workdir, "-q")


def manifest_of(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "manifest.json").read_text())
    return data


def test_frames_path_end_to_end(files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path) -> None:
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy), workdir)
    assert result.code == 0, result.err
    video = ffprobe_streams(workdir / "final.mp4")["video"]
    assert int(video["nb_read_frames"]) == 50 and (video["width"], video["height"]) == (64, 48)
    assert sorted(p.name for p in (workdir / "frames").glob("0*.png")) == [
        f"{i:06d}.png" for i in range(1, 51)
    ]
    phase = manifest_of(workdir)["phases"]["comfyui"]
    assert phase["status"] == "done"
    assert phase["progress"]["batches_done"] == phase["progress"]["batches_total"] == 7
    assert phase["progress"]["frames_done"] == 50
    assert phase["comfyui_version"] == "0.26.0"
    assert len(phase["prompt_ids"]) == 7 and set(phase["prompt_ids"]) <= set(comfy.stats()["prompts"])
    assert phase["batch_seeds"]["0000"] == 7 and phase["batch_seeds"]["0006"] == 13
    graph = json.loads((workdir / "comfyui" / "graphs" / "0003-a1.json").read_text())
    assert graph["3"]["inputs"]["seed"] == 10 and graph["5"]["inputs"]["batch_size"] == 8
    assert phase["graphs"] == [f"comfyui/graphs/{i:04d}-a1.json" for i in range(7)]
    assert json.loads((workdir / "comfyui" / "batches" / "0003.json").read_text())["graph"] == (
        "comfyui/graphs/0003-a1.json"
    )
    steps = [e for e in read_events(workdir / "logs" / "events.jsonl") if e.get("kind") == "progress"]
    assert steps and steps[0]["max"] == 4


def test_fewer_generated_frames_are_held_to_the_output_rate(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path
) -> None:
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy, params={"fps": 4}), workdir)
    assert result.code == 0, result.err
    assert len(list((workdir / "frames").glob("0*.png"))) == 8  # 2 s at 4 fps
    assert int(ffprobe_streams(workdir / "final.mp4")["video"]["nb_read_frames"]) == 50


def test_start_image_template_uploads_the_still(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path
) -> None:
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy, "held_start_batch", batch_size=25), workdir)
    assert result.code == 0, result.err
    assert comfy.stats()["uploads"] == 2
    assert int(ffprobe_streams(workdir / "final.mp4")["video"]["nb_read_frames"]) == 50


def test_video_output_template(files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path) -> None:
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy, "video_clip", params={"fps": 8}), workdir)
    assert result.code == 0, result.err
    assert sorted(p.name for p in (workdir / "comfyui" / "clips").iterdir()) == ["0000.mp4", "0001.mp4"]
    assert int(ffprobe_streams(workdir / "final.mp4")["video"]["nb_read_frames"]) == 50


def test_videohelpersuite_gifs_output(files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path) -> None:
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy, "vhs_clip", params={"fps": 8}), workdir)
    assert result.code == 0, result.err
    assert sorted(p.name for p in (workdir / "comfyui" / "clips").iterdir()) == ["0000.mp4", "0001.mp4"]
    assert not list((workdir / "frames").glob("0*.png"))
    video = ffprobe_streams(workdir / "final.mp4")["video"]
    assert int(video["nb_read_frames"]) == 50 and video["r_frame_rate"] == "25/1"


def test_health_falls_back_to_the_health_endpoint(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path
) -> None:
    comfy.faults(system_stats_404=1000)
    health = check_health(comfy.url)
    assert health.ok and health.endpoint == "/health" and health.version is None
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy, params={"fps": 4}), workdir)
    assert result.code == 0, result.err
    assert comfy.stats()["health"] >= 2  # our check and the run's
    assert manifest_of(workdir)["phases"]["comfyui"]["comfyui_version"] is None


def test_without_websocket_history_polling_completes(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path
) -> None:
    comfy.faults(ws_refuse=1000)
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy, poll_interval_ms=100), workdir)
    assert result.code == 0, result.err
    stats = comfy.stats()
    assert stats["ws_connections"] == 0 and stats["ws_refused"] >= 7
    assert int(ffprobe_streams(workdir / "final.mp4")["video"]["nb_read_frames"]) == 50
    assert manifest_of(workdir)["phases"]["comfyui"]["progress"]["batches_done"] == 7


def test_transient_faults_are_retried(files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path) -> None:
    comfy.faults(prompt_500=2, drop_ws=2)
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy), workdir)
    assert result.code == 0, result.err
    attempts = manifest_of(workdir)["phases"]["comfyui"]["attempts"]
    assert [a for a in attempts if a["outcome"] == "transient"]
    assert comfy.stats()["prompt_posts"] == 7 + 2


def test_unavailable_after_retries(files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path) -> None:
    comfy.faults(prompt_500=100)
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy, retries=1), workdir)
    assert result.code == ExitCode.COMFYUI_UNAVAILABLE, result.err
    assert "failed 2 time(s)" in result.err and "HTTP 500" in result.err
    assert not (workdir / "final.mp4").exists()


def test_refused_connections_mid_run_are_retried_then_unavailable(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path
) -> None:
    comfy.faults(refuse_after_prompts=2)  # the server goes away while the second batch runs
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy, retries=2), workdir)
    assert result.code == ExitCode.COMFYUI_UNAVAILABLE, result.err
    failed = re.search(r"batch (\d{4}) failed 3 time\(s\); last: .*ConnectionError", result.err)
    assert failed, result.err
    assert len(list((workdir / "comfyui" / "batches").glob("*.json"))) == 1  # the batch done before
    stats = comfy.stats()
    assert len(stats["prompts"]) == 2 and stats["refused"] >= 3
    attempts = manifest_of(workdir)["phases"]["comfyui"]["attempts"]
    retried = [a["attempt"] for a in attempts if a["batch"] == failed[1] and a["outcome"] == "transient"]
    assert retried == [1, 2, 3]


def test_unreachable_server_fails_before_any_work(files: Media, va_cli: CliRunner, workflows: Path) -> None:
    job = files.job(
        comfyui={"workflow_ids": ["vidax_text2img_frames"], "url": f"http://127.0.0.1:{free_port()}"}
    )
    result = run(va_cli, job, files.root / "w")
    assert result.code == ExitCode.COMFYUI_UNAVAILABLE
    assert "not reachable" in result.err and "--no-comfyui" in result.err


def test_rejected_prompt_shows_node_errors(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path
) -> None:
    workdir = files.root / "w"
    result = run(va_cli, comfy_job(files, comfy, params={"ckpt_name": "missing.safetensors"}), workdir)
    assert result.code == ExitCode.COMFYUI_REJECTED, result.err
    assert "node 4 (CheckpointLoaderSimple) input ckpt_name: Value not in list" in result.err
    assert comfy.stats()["prompt_posts"] == 1  # a 400 is not retried


def test_binding_to_a_missing_node_names_workflow_and_node(
    files: Media, va_cli: CliRunner, workflows: Path
) -> None:
    shutil.copy(workflows / "video_clip.json", workflows / "bad_binding.json")
    bindings = {"frames": [{"node": "1", "input": "batch_size"}], "seed": [{"node": "99", "input": "seed"}]}
    (workflows / "bad_binding.bindings.json").write_text(
        json.dumps({"schema_version": 1, "bindings": bindings})
    )
    job = files.job(comfyui={"workflow_ids": ["bad_binding"], "url": f"http://127.0.0.1:{free_port()}"})
    result = run(va_cli, job, files.root / "w")
    assert result.code == ExitCode.VALIDATION_FAILED == 10, result.err
    assert "workflow bad_binding: binding 'seed' names node 99, which the graph does not have" in result.err


def test_execution_error(files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path) -> None:
    comfy.faults(execution_error=1)
    result = run(va_cli, comfy_job(files, comfy), files.root / "w")
    assert result.code == ExitCode.COMFYUI_FAILED, result.err
    assert "node 3 (KSampler)" in result.err and "out of memory" in result.err


def test_lost_prompt_is_a_timeout_and_interrupted(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path
) -> None:
    comfy.faults(lose=1)
    result = run(va_cli, comfy_job(files, comfy, stall_seconds=1.5), files.root / "w")
    assert result.code == ExitCode.COMFYUI_TIMEOUT, result.err
    assert "not in ComfyUI's queue" in result.err
    stats = comfy.stats()
    assert stats["interrupts"] == stats["prompts"][:1]  # one interrupt, scoped to our prompt id
    assert stats["interrupted"] == [] and stats["deleted"] == []  # nothing of ours ran or waited


def test_hanging_prompt_times_out(files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path) -> None:
    comfy.faults(hang=1)
    result = run(va_cli, comfy_job(files, comfy, timeout_seconds=2), files.root / "w")
    assert result.code == ExitCode.COMFYUI_TIMEOUT, result.err
    assert "not finished within 2 s" in result.err
    stats = comfy.stats()
    ours = stats["prompts"][0]
    assert f"prompt {ours} cancelled" in result.err
    assert stats["interrupts"] == [ours] and stats["interrupted"] == [ours] and stats["deleted"] == []


def test_timeout_while_queued_deletes_only_our_prompt(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path
) -> None:
    comfy.faults(hang=1)
    other = other_clients_prompt(comfy)  # runs (hangs) ahead of ours
    result = run(va_cli, comfy_job(files, comfy, timeout_seconds=2), files.root / "w")
    assert result.code == ExitCode.COMFYUI_TIMEOUT, result.err
    stats = comfy.stats()
    ours = stats["prompts"][1]
    assert stats["deleted"] == [ours]
    assert stats["interrupts"] == [] and stats["interrupted"] == []  # the other client's prompt is left alone
    queue = requests.get(f"{comfy.url}/queue", timeout=5).json()
    assert [item[1] for item in queue["queue_running"]] == [other] and queue["queue_pending"] == []


def test_per_retry_seeds_are_all_recorded(
    files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path
) -> None:
    comfy.faults(prompt_500=1)
    job = comfy_job(files, comfy)
    document = json.loads(job.read_text())
    document["determinism"] = {"fps": 25, "seed_policy": "per_retry", "seed": 100}
    job.write_text(json.dumps(document))
    workdir = files.root / "w"
    result = run(va_cli, job, workdir)
    assert result.code == 0, result.err
    phase = manifest_of(workdir)["phases"]["comfyui"]
    batch = phase["attempts"][0]["batch"]
    first = [a for a in phase["attempts"] if a["batch"] == batch]
    assert first[0]["outcome"] == "transient" and first[0]["seed"] != first[-1]["seed"]
    # every attempt keeps its graph, each with its own seed, and the manifest lists them all
    graphs = [f"comfyui/graphs/{batch}-a{n}.json" for n in (1, 2)]
    assert set(graphs) <= set(phase["graphs"])
    seeds = [json.loads((workdir / name).read_text())["3"]["inputs"]["seed"] for name in graphs]
    assert seeds == [first[0]["seed"], first[-1]["seed"]]


def test_batches_resume_after_sigkill(files: Media, va_cli: CliRunner, comfy: Comfy, workflows: Path) -> None:
    job, workdir = comfy_job(files, comfy, batch_size=4, params={"steps": 40}), files.root / "w"
    process = subprocess.Popen(
        [*VA, "run", str(job), "--workdir", str(workdir), "--cores", "1", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    batches = workdir / "comfyui" / "batches"
    deadline = time.monotonic() + 120
    while len(list(batches.glob("*.json"))) < 3:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = sorted(p.name for p in batches.glob("*.json"))
    submitted_before = len(comfy.stats()["prompts"])
    resumed = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert resumed.code == 0, resumed.err
    resubmitted = len(comfy.stats()["prompts"]) - submitted_before
    assert resubmitted <= 13 - len(done_before) + 1  # only missing batches (plus the one cut off) again
    assert int(ffprobe_streams(workdir / "final.mp4")["video"]["nb_read_frames"]) == 50
    assert manifest_of(workdir)["phases"]["comfyui"]["progress"]["batches_done"] == 13
