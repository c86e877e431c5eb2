"""ComfyUI started inside a cluster job, on the real single-node Slurm of tests/slurm: a profile declares the
start (``comfyui_start``), the video's ComfyUI job starts its own server (the ComfyUI double) on a free
port of the node, makes its batches there and stops it; no server process is left after the job, nor
after a SIGTERM of ``va batch``. One test, one video: each Slurm job costs seconds on the test node."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import DOUBLE, REPO, Media, ffprobe_streams
from tests.test_slurm import batch_folder, slurm, slurm_jobs, start_batch, stop, summary, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]
__all__ = ["slurm"]  # the fixture, used by name

PROC = Path("/proc")


def servers_of(root: Path) -> list[int]:
    """The running doubles whose output folder is under ``root``: the servers the jobs started."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if str(DOUBLE) in argv and any(part.startswith(str(root)) for part in argv):
            found.append(int(entry.name))
    return found


def submitted(workdir: Path) -> bool:
    """Whether a prompt of the video was submitted (its ComfyUI job's server is up and working)."""
    events = workdir / "logs" / "events.jsonl"
    return events.exists() and any(
        json.loads(line).get("outcome") == "submitted" for line in events.read_text().splitlines() if line
    )


def farm_profile(folder: Path, root: Path, step_delay: float) -> Path:
    """profiles/slurm, plus a ComfyUI start: the double on ``{port}``, its files under ``root``."""
    profile = folder / "farm"
    profile.mkdir()
    settings = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    command = [
        sys.executable,
        str(DOUBLE),
        "--port",
        "{port}",
        "--root",
        str(root),
        "--step-delay",
        str(step_delay),
    ]
    settings["config"] = {
        "comfyui_start": {"command": command, "start_timeout_seconds": 60, "stop_seconds": 5}
    }
    (profile / "config.yaml").write_text(yaml.safe_dump(settings))
    return profile


def comfy_jobs(files: Media) -> dict[str, dict[str, object]]:
    """One video of two batches on the sampler template (the double answers it without weights)."""
    comfyui = {
        "workflow_ids": ["sampler_on_cpu"],
        "batch_size": 25,
        "params": {"width": 64, "height": 48, "steps": 4},
    }
    return {"one": {"comfyui": comfyui}}


def install_templates(state: Path) -> None:
    """The shipped templates, and ``sampler_on_cpu``: the sampler template declaring what a node without
    a GPU can give (the double needs no GPU)."""
    folder = state / "state" / "comfyui" / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    for template in (REPO / "assets" / "workflows").glob("*.json"):
        shutil.copy(template, folder / template.name)
    shutil.copy(folder / "vidax_text2img_frames.json", folder / "sampler_on_cpu.json")
    bindings = json.loads((folder / "vidax_text2img_frames.bindings.json").read_text())
    bindings["resources"] = {"cpus": 1, "mem_mb": 1000, "gpus": 0, "runtime": 30}
    (folder / "sampler_on_cpu.bindings.json").write_text(json.dumps(bindings))


def test_a_comfyui_job_starts_and_stops_its_own_server_also_when_the_batch_is_stopped(
    slurm: None, files: Media, state_dir: Path
) -> None:
    """SIGTERM of ``va batch`` while the job's server runs its prompts (1 s each): the Slurm job is
    cancelled and the server it started is gone. The same batch again: its job starts a server of its own,
    makes every batch there (recorded with the start) and stops it; nothing of it is left."""
    root = files.root / "node"
    install_templates(state_dir.parent)
    folder = batch_folder(files, comfy_jobs(files))
    out = files.root / "out"
    batch = start_batch(folder, out, state_dir.parent, "--profile", str(farm_profile(files.root, root, 0.25)))
    try:
        wait_for("a prompt on the server the ComfyUI job started", lambda: submitted(out / "one"), 400)
        assert servers_of(root)
        stop(batch, signal.SIGTERM, out)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.wait()
    wait_for("the server the job started gone", lambda: not servers_of(root), 30)

    batch = start_batch(folder, out, state_dir.parent, "--profile", str(files.root / "farm"))
    got, err = batch.communicate(timeout=600)
    assert batch.returncode == 0, err[-3000:]
    assert summary(got)["one"]["status"] == "succeeded"
    assert servers_of(root) == []
    manifest = json.loads((out / "one" / "manifest.json").read_text())
    phase = manifest["phases"]["comfyui"]
    start = phase["server_starts"][-1]
    assert len(phase["server_starts"]) == 2  # the stopped job's server, and this one's
    assert phase["server_starts"][0]["url"] != start["url"]
    assert start["seconds"] > 0 and start["comfyui_version"] == "0.26.0" and start["host"]
    assert {entry["url"] for entry in phase["batch_servers"].values()} == {start["url"]}
    assert ffprobe_streams(out / "one" / "final.mp4")["video"]["nb_read_frames"] == "50"
    assert (out / "one" / "logs" / "comfyui" / "server.log").exists()
    comfy = [job for job in slurm_jobs(out) if "comfyui_batch" in job.get("Comment", "")]
    assert {job["JobState"] for job in comfy} == {"CANCELLED", "COMPLETED"}, comfy
    assert {(job["NumCPUs"], job["MinMemoryNode"]) for job in comfy} == {("1", "1000M")}  # the template's
