"""Benchmark: the ComfyUI stage's own overhead. Figures only; nothing is asserted.

A whole ``va run`` (Snakemake, the rule scripts, ffmpeg) against the ComfyUI double of the tests, whose
prompts run for a fixed time (``--prompt-seconds``, default 1 s: sampler steps of a fixed length). The job
makes 288 frames in 18 batches of 16 at 25 fps (128x72 PNGs), as the run of issue 12 did.

Printed: the stage's wall time (from the moment the batches' inputs, plan and still, exist to the last
batch's result), the time ComfyUI executed prompts (the double's own sum), ComfyUI's share of the stage,
and va's own time per batch: (stage - executing) / batches, which holds Snakemake's job starts, the
rule scripts' imports, submitting, watching, downloading and recording. Goal (issue 12): under 0.3 s a
batch, and ComfyUI at least 75 % of the stage for 1 s prompts.

With ``--servers N`` (issue 25, a pool): a ``va batch`` of ``--videos`` (8) jobs of ``--batches`` (4)
batches each on a pool of N doubles, then the same batch on one double. Printed: each server's busy
share (the time it executed prompts, from its first prompt's start to its last prompt's end), the
ComfyUI window (first prompt's start to last prompt's end over all servers), the batch's wall time, and
how much faster the pool ended than one server. Goal: each server busy at least 90 %, and at least 1.8x
faster with two servers. ``--repeat N`` runs N rounds, the pool and one server interleaved (the order
swapped each round), and prints the medians. What it simulates: a rack of GPUs, each server a double
whose prompts sleep (``--prompt-seconds``: the GPU's time, which costs this machine no CPU), while
everything else runs for real on this machine's cores (Snakemake, the rule scripts, ffmpeg for the audio,
the still, the assembly and the encode). The whole batch can end 1.8x sooner with two servers only where
the GPUs' time dominates: with 1 s prompts on a machine of 2 busy cores, va's own CPU work outweighs the
32 s of prompts; longer prompts (``--prompt-seconds 8``; a 16-frame batch of a real model on a GPU
takes longer still) measure the pool where, as on a rack, the GPUs are the bottleneck.

With ``--segments N`` (issue 24, generation by segments): a ``va run`` of a voice cut into N segments of
the shipped chained template ``colour_segments`` (33 frames, 9 of context and head: 0.96 s of new frames a
segment), each prompt held 1 s by the double (``--prompt-seconds``), then the batch mode's run above for
comparison. Printed: va's own time a segment inside its step (its record's ``own_seconds``: making and
uploading its voice and context, submitting, collecting and checking its clip; ComfyUI's execution not
counted), and, as for batches, the stage's time a segment beyond ComfyUI's (which also holds the
Snakemake job each segment is). Goal (issue 24): va's own time a segment at most 0.3 s.

The load average is printed with the figures: on a shared machine another run skews them.
Run: .venv/bin/python bench/bench_comfyui.py [--prompt-seconds 1] [--batches 18] [--batch-size 16] [--json]
     .venv/bin/python bench/bench_comfyui.py --servers 2 [--videos 8] [--batches 4] [--cores N] [--repeat 3]
     .venv/bin/python bench/bench_comfyui.py --segments 24
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


def start_double(
    prompt_seconds: float, name: str = "double", *, whole_prompt: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """The double on a free port, each sampler step ``prompt_seconds / STEPS`` long (``whole_prompt``: each
    prompt held ``prompt_seconds`` before its nodes run, for a template without a sampler)."""
    port = free_port()
    timing = (
        ["--prompt-seconds", str(prompt_seconds)]
        if whole_prompt
        else ["--step-delay", str(prompt_seconds / STEPS)]
    )
    process = subprocess.Popen(
        [sys.executable, str(DOUBLE), "--port", str(port), "--root", str(SCRATCH / name), *timing],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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


def write_job(url: str | list[str], batches: int, batch_size: int, path: Path | None = None) -> Path:
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
        "comfyui": {
            "workflow_ids": ["vidax_text2img_frames"],
            "url": url,
            "batch_size": batch_size,
            "params": {"width": 128, "height": 72, "steps": STEPS},
        },
        "lipsync": {"enable": False},
    }
    path = path or SCRATCH / "job.json"
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


def timed_run(job: Path, workdir: Path, env: dict[str, str], url: str) -> tuple[float, dict[str, Any]]:
    """``va run`` of ``job`` in ``workdir``: its seconds, and what the double at ``url`` saw."""
    began = time.monotonic()
    ran = subprocess.run(
        [sys.executable, "-m", "va", "run", str(job), "--workdir", str(workdir), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - began
    if ran.returncode != 0:
        raise SystemExit(f"va run failed ({ran.returncode}): {ran.stderr.strip()}")
    return seconds, requests.get(f"{url}/__double__/stats", timeout=5).json()


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
        run_seconds, stats = timed_run(job, workdir, env, url)
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


def measure_segments(prompt_seconds: float, segments: int) -> dict[str, Any]:
    """A ``va run`` of ``segments`` segments of ``colour_segments`` on the double: va's own time a segment
    (the records' ``own_seconds``) and the stage's time a segment beyond ComfyUI's."""
    root = SCRATCH / "segments"
    state = root / "state"
    (state / "comfyui" / "workflows").mkdir(parents=True)
    env = {**os.environ, "VA_STATE_DIR": str(state)}
    process, url = start_double(prompt_seconds, "segments/double", whole_prompt=True)
    try:
        job = write_job(url, 1, 1, root / "job.json")
        seconds = segments * 24 / FPS  # 24 new frames a segment (33 with 9 of head)
        audio = root / "voice.wav"
        tone = f"sine=frequency=220:duration={seconds}"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", tone, "-ac", "1", str(audio)],
            check=True,
        )
        document = json.loads(job.read_text())
        document["input"]["audio"] = str(audio)
        document["comfyui"] = {
            "workflow_ids": ["colour_segments"],
            "url": url,
            "params": {"width": 64, "height": 48},
        }
        job.write_text(json.dumps(document))
        workdir = root / "run"
        run_seconds, stats = timed_run(job, workdir, env, url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    records = [json.loads(p.read_text()) for p in sorted((workdir / "comfyui" / "segments").glob("*.json"))]
    own = sorted(float(r["own_seconds"]) for r in records)
    events = [json.loads(line) for line in (workdir / "logs" / "events.jsonl").read_text().splitlines()]
    finished = [e for e in events if e.get("kind") == "rule_finished"]
    start = max(
        seconds_of(e["ts"]) for e in finished if e.get("rule") in ("prepare_audio", "hold_start_frame")
    )
    end = max(seconds_of(e["ts"]) for e in finished if e.get("rule") == "comfyui_segment")
    executing = float(stats["executing_seconds"])
    return {
        "prompt_seconds": prompt_seconds,
        "segments": len(records),
        "run_seconds": round(run_seconds, 2),
        "stage_seconds": round(end - start, 2),
        "comfyui_executing_seconds": round(executing, 2),
        "va_own_seconds_per_segment": round(sum(own) / len(own), 3),
        "va_own_seconds_median": round(own[len(own) // 2], 3),
        "va_own_seconds_max": round(own[-1], 3),
        "stage_seconds_per_segment_beyond_comfyui": round((end - start - executing) / len(records), 3),
        "uploads": stats["uploads"],
        "load": round(os.getloadavg()[0], 2),
    }


def main_segments(args: argparse.Namespace) -> None:
    """``--segments N``: the segments' run, then the batch mode's, side by side."""
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    segments = measure_segments(args.prompt_seconds, args.segments)
    batches = measure(args.prompt_seconds, args.batches or 18, args.batch_size)
    figures = {"segments": segments, "batches": batches}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    own = (
        segments["va_own_seconds_per_segment"],
        segments["va_own_seconds_median"],
        segments["va_own_seconds_max"],
    )
    print(
        f"Segments: {segments['segments']} segments of colour_segments, prompts of "
        f"{args.prompt_seconds:g} s (load {segments['load']})\n"
        f"  va's own time a segment {own[0]} s (median {own[1]} s, most {own[2]} s; goal at most 0.3 s)\n"
        f"  stage {segments['stage_seconds']} s, ComfyUI executing {segments['comfyui_executing_seconds']} "
        f"s: {segments['stage_seconds_per_segment_beyond_comfyui']} s a segment beyond ComfyUI's (a "
        f"Snakemake job each); run {segments['run_seconds']} s\n"
        f"Batches: {batches['batches']} batches of {args.batch_size} frames, prompts of "
        f"{args.prompt_seconds:g} s (load {batches['load']})\n"
        f"  va's own time per batch {batches['va_seconds_per_batch']} s (goal under 0.3 s); stage "
        f"{batches['stage_seconds']} s, ComfyUI's share {batches['comfyui_share']:.0%}"
    )


def measure_pool(
    servers: int, prompt_seconds: float, videos: int, batches: int, cores: int, *, round_: int = 0
) -> dict[str, Any]:
    """``va batch`` of ``videos`` jobs on a pool of ``servers`` doubles: each server's busy share, the
    ComfyUI window and the batch's wall time."""
    root = SCRATCH / f"pool-{servers}-{round_}"
    state = root / "state"
    (state / "comfyui" / "workflows").mkdir(parents=True)
    for template in (REPO / "assets" / "workflows").glob("*.json"):
        shutil.copy(template, state / "comfyui" / "workflows" / template.name)
    env = {**os.environ, "VA_STATE_DIR": str(state)}
    doubles = [start_double(prompt_seconds, f"pool-{servers}-{round_}/double-{n}") for n in range(servers)]
    try:
        jobs = root / "jobs"
        jobs.mkdir()
        for video in range(videos):
            write_job([url for _, url in doubles], batches, 16, jobs / f"video{video}.json")
        began, began_at = time.monotonic(), time.time()
        ran = subprocess.run(
            [
                sys.executable,
                "-m",
                "va",
                "batch",
                str(jobs),
                "--out",
                str(root / "out"),
                "--cores",
                str(cores),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        wall = time.monotonic() - began
        if ran.returncode != 0:
            raise SystemExit(f"va batch failed ({ran.returncode}): {ran.stderr.strip()}")
        stats = [requests.get(f"{url}/__double__/stats", timeout=5).json() for _, url in doubles]
    finally:
        for process, _ in doubles:
            process.terminate()
            process.wait(timeout=10)
    busy = [
        {
            "prompts": len(s["prompts"]),
            "executing_seconds": round(s["executing_seconds"], 2),
            "window_seconds": round(s["last_ended"] - s["first_began"], 2),
            "busy_share": round(s["executing_seconds"] / (s["last_ended"] - s["first_began"]), 3),
        }
        for s in stats
    ]
    first, last = min(s["first_began"] for s in stats), max(s["last_ended"] for s in stats)
    return {
        "servers": servers,
        "videos": videos,
        "batches_each": batches,
        "per_server": busy,
        "comfyui_window_seconds": round(last - first, 2),
        "batch_wall_seconds": round(wall, 2),
        # Before the first prompt (va batch's start, planning, Snakemake's, the first still, the first
        # ComfyUI job's start) and after the last (the last videos' assembly and encode): what the pool
        # does not shorten.
        "first_prompt_after_seconds": round(first - began_at, 2),
        "after_last_prompt_seconds": round(began_at + wall - last, 2),
        "load": round(os.getloadavg()[0], 2),
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main_pool(args: argparse.Namespace) -> None:
    """``--servers N``: the pool and one server, ``--repeat`` rounds interleaved (the pool first in even
    rounds, one server first in odd ones, so a change of the machine's load falls on both), and the
    medians of how they compare."""
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    load_before = round(os.getloadavg()[0], 2)
    pools: list[dict[str, Any]] = []
    singles: list[dict[str, Any]] = []
    for round_ in range(args.repeat):
        order = [(args.servers, pools), (1, singles)]
        for servers, into in order if round_ % 2 == 0 else reversed(order):
            figures_ = measure_pool(
                servers, args.prompt_seconds, args.videos, args.batches, args.cores, round_=round_
            )
            into.append(figures_)
            if not args.json:
                print(
                    f"  round {round_ + 1}: {servers} server(s): ComfyUI window "
                    f"{figures_['comfyui_window_seconds']} s, batch {figures_['batch_wall_seconds']} s "
                    f"(first prompt after {figures_['first_prompt_after_seconds']} s, "
                    f"{figures_['after_last_prompt_seconds']} s after the last), least busy server "
                    f"{min(s['busy_share'] for s in figures_['per_server']):.1%} "
                    f"(load {figures_['load']:.1f})",
                    flush=True,
                )
    windows = [
        one["comfyui_window_seconds"] / pool["comfyui_window_seconds"]
        for pool, one in zip(pools, singles, strict=True)
    ]
    walls = [
        one["batch_wall_seconds"] / pool["batch_wall_seconds"]
        for pool, one in zip(pools, singles, strict=True)
    ]
    figures = {
        "prompt_seconds": args.prompt_seconds,
        "pool": pools,
        "one_server": singles,
        "median_pool_wall_seconds": median([r["batch_wall_seconds"] for r in pools]),
        "median_one_server_wall_seconds": median([r["batch_wall_seconds"] for r in singles]),
        "median_speedup_comfyui_window": round(median(windows), 2),
        "median_speedup_batch_wall": round(median(walls), 2),
        "median_least_busy_share": round(
            median([min(s["busy_share"] for s in r["per_server"]) for r in pools]), 3
        ),
        "load": [load_before, round(os.getloadavg()[0], 2)],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"{args.videos} videos x {args.batches} batches of 16 frames, prompts of "
        f"{args.prompt_seconds:g} s, --cores {args.cores}, {args.repeat} round(s) "
        f"(load {figures['load'][0]} -> {figures['load'][1]})\n"
        f"  medians: {args.servers} servers: batch {figures['median_pool_wall_seconds']:.1f} s, least busy "
        f"server {figures['median_least_busy_share']:.1%} (goal 90 %); one server: batch "
        f"{figures['median_one_server_wall_seconds']:.1f} s\n"
        f"  {args.servers} servers end {figures['median_speedup_batch_wall']}x faster than one (the whole "
        f"batch; goal 1.8x), the ComfyUI window {figures['median_speedup_comfyui_window']}x"
    )


def compile_package() -> None:
    """The package's bytecode, as ``make bytecode`` writes it: where PYTHONDONTWRITEBYTECODE is set, each
    rule script would otherwise compile every module it imports again, a cost no installed va pays."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", str(REPO / "va"), str(REPO / "scripts")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-seconds", type=float, default=1.0)
    parser.add_argument("--batches", type=int, help="default 18; with --servers, 4 a video")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--servers", type=int, default=0, help="a pool of this many doubles (va batch)")
    parser.add_argument("--videos", type=int, default=8)
    # The machine's cores, as va batch takes by default: a ComfyUI job that only talks to its servers
    # holds none (rules/comfyui.smk), so more would only make the rules of several videos share them.
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=1, help="with --servers: rounds, interleaved")
    parser.add_argument("--segments", type=int, default=0, help="a run of this many segments, then batches")
    args = parser.parse_args()
    compile_package()
    if args.segments:
        main_segments(args)
        return
    if args.servers:
        args.batches = args.batches or 4
        main_pool(args)
        return
    args.batches = args.batches or 18
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
