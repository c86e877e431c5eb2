"""Benchmark: the ComfyUI stage's own overhead. Figures only; nothing is asserted.

A whole ``va run`` (Snakemake, the rule scripts, ffmpeg) against the ComfyUI double of the tests, whose
prompts run for a fixed time (``--prompt-seconds``, default 1 s: sampler steps of a fixed length). The job
makes 288 frames in 18 batches of 16 at 25 fps (128x72 PNGs), as the run of issue 12 did.

Printed: the stage's wall time (from the moment the batches' inputs, plan and still, exist to the last
batch's result), the time ComfyUI executed prompts (the double's own sum), ComfyUI's share of the stage,
and va's own time per batch: (stage - executing) / batches, which holds Snakemake's job starts, the
rule scripts' imports, submitting, watching, downloading and recording. Goal (issue 12): under 0.3 s a
batch, and ComfyUI at least 75 % of the stage for 1 s prompts.

The load average is printed with the figures: on a shared machine another run skews them.
Run: .venv/bin/python bench/bench_comfyui.py [--prompt-seconds 1] [--batches 18] [--batch-size 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRATCH = HERE / "out" / "comfyui"
DOUBLE = REPO / "tests" / "comfyui_double.py"
STEPS = 4
FPS = 25
# Far above a normal run (~30 s): a run that takes this long has hung, and its figure would mean nothing.
RUN_TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_double(prompt_seconds: float) -> tuple[subprocess.Popen[bytes], str]:
    """The double on a free port, each sampler step ``prompt_seconds / STEPS`` long."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(DOUBLE), "--port", str(port), "--root", str(SCRATCH / "double"),
         "--step-delay", str(prompt_seconds / STEPS)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/system_stats", timeout=1).raise_for_status()
            return process, url
        except requests.RequestException:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the ComfyUI double did not start") from None
            time.sleep(0.1)


def write_job(url: str, batches: int, batch_size: int) -> Path:
    """A tone long enough for ``batches`` full batches, a start image, the sampler template."""
    seconds = batches * batch_size / FPS
    audio, start = SCRATCH / "tone.wav", SCRATCH / "start.png"
    for argv in (
        ["-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}", "-ac", "1", str(audio)],
        ["-f", "lavfi", "-i", "testsrc=s=128x72", "-frames:v", "1", str(start)],
    ):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *argv], check=True)
    job = {
        "schema_version": 1,
        "input": {"audio": str(audio), "start": str(start)},
        "determinism": {"fps": FPS, "seed_policy": "fixed", "seed": 1},
        "comfyui": {"workflow_ids": ["vidax_text2img_frames"], "url": url, "batch_size": batch_size,
                    "params": {"width": 128, "height": 72, "steps": STEPS}},
        "lipsync": {"enable": False},
    }  # fmt: skip
    path = SCRATCH / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    return path


def seconds_of(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def stage_window(events: list[dict[str, Any]]) -> tuple[float, float, int]:
    """(start, end, batches): from the last of the batches' inputs finished to the last batch finished."""
    finished = [e for e in events if e.get("kind") == "rule_finished"]
    inputs = [seconds_of(e["ts"]) for e in finished if e.get("rule") in ("prepare_audio", "hold_start_frame")]
    batches = [seconds_of(e["ts"]) for e in finished if e.get("rule") == "comfyui_batch"]
    done = [e for e in events if e.get("kind") == "comfyui_batch_done"]
    if not batches and done:  # several batches a Snakemake job: one event a batch
        batches = [seconds_of(e["ts"]) for e in done]
    return max(inputs), max(batches), max(len(batches), len(done))


def measure(prompt_seconds: float, batches: int, batch_size: int) -> dict[str, Any]:
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    state = SCRATCH / "state"
    (state / "comfyui" / "workflows").mkdir(parents=True)
    for template in (REPO / "assets" / "workflows").glob("*.json"):
        shutil.copy(template, state / "comfyui" / "workflows" / template.name)
    env = {**os.environ, "VA_STATE_DIR": str(state)}
    process, url = start_double(prompt_seconds)
    try:
        job = write_job(url, batches, batch_size)
        workdir = SCRATCH / "run"
        began = time.monotonic()
        ran = subprocess.run(
            [sys.executable, "-m", "va", "run", str(job), "--workdir", str(workdir), "--quiet"],
            env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
        )  # fmt: skip
        run_seconds = time.monotonic() - began
        if ran.returncode != 0:
            raise SystemExit(f"va run failed ({ran.returncode}): {ran.stderr.strip()}")
        stats = requests.get(f"{url}/__double__/stats", timeout=5).json()
    finally:
        process.terminate()
        process.wait(timeout=10)
    lines = (workdir / "logs" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    start, end, count = stage_window([json.loads(line) for line in lines])
    stage = end - start
    executing = float(stats["executing_seconds"])
    return {
        "prompt_seconds": prompt_seconds,
        "batches": count,
        "frames": batches * batch_size,
        "run_seconds": round(run_seconds, 2),
        "stage_seconds": round(stage, 2),
        "comfyui_executing_seconds": round(executing, 2),
        "comfyui_share": round(executing / stage, 3),
        "va_seconds_per_batch": round((stage - executing) / count, 3),
        "system_stats_requests": stats["system_stats"],
        "uploads": stats["uploads"],
        "load": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-seconds", type=float, default=1.0)
    parser.add_argument("--batches", type=int, default=18)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure(args.prompt_seconds, args.batches, args.batch_size)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"ComfyUI stage: {figures['frames']} frames in {figures['batches']} batches, prompts of "
        f"{figures['prompt_seconds']:g} s (load {figures['load']})\n"
        f"  run {figures['run_seconds']} s, stage {figures['stage_seconds']} s, ComfyUI executing "
        f"{figures['comfyui_executing_seconds']} s: ComfyUI's share {figures['comfyui_share']:.0%} "
        "(goal 75 %)\n"
        f"  va's own time per batch {figures['va_seconds_per_batch']} s (goal under 0.3 s); "
        f"/system_stats asked {figures['system_stats_requests']} times, {figures['uploads']} upload(s)"
    )


if __name__ == "__main__":
    main()
