"""Benchmark: batches. Figures only; nothing is asserted.

(a) Graph construction: 10, 100 and 1,000 small job files (all on one tiny tone and one tiny still) in a
    folder, and the Snakemake command ``va batch`` starts for them (the same argv, with the selection file
    ``va batch`` writes), plus ``--dry-run --quiet``: parse the workflow, load and check every job, build
    the DAG up to the ``prepare_audio`` checkpoint. Printed beside it: the checks ``va batch`` runs itself
    before it starts Snakemake (schema, then ffprobe of every input, in a thread pool).
(b) Parallelism: two jobs, each a 1920x1080 still held over ~60 s of audio, run with
    ``va batch DIR --out OUT --cores 1`` and then ``--cores 2``; the wall times and their ratio.

The load average is printed with each figure: on a shared machine another run skews them.
Run: .venv/bin/python bench/bench_batch.py [--sizes 10 100 1000] [--parts a b] [--repeat N] [--skip-checks]
     [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from va.batch import SELECTION, job_name, load_batch
from va.runner import SNAKEFILE, check_job

HERE = Path(__file__).resolve().parent
SCRATCH = HERE / "out" / "batch"
# Runs of the benchmark register in a state dir of their own, not in the user's.
ENV = {**os.environ, "VA_STATE_DIR": str(SCRATCH / "state")}
ENCODE_SIZE = "1920x1080"
ENCODE_SECONDS = 60.0
# Far above a normal run (~15 s): a run that takes this long has hung, and its figure would mean nothing.
BATCH_TIMEOUT = 300


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_tone(path: Path, seconds: float) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}", "-ac", "1", str(path))
    return path


def make_still(path: Path, size: str, colours: tuple[str, str]) -> Path:
    width, height = size.split("x")
    graph = f"gradients=s={size}:c0={colours[0]}:c1={colours[1]}:x0=0:y0=0:x1={width}:y1={height}"
    ffmpeg("-f", "lavfi", "-i", f"{graph},format=rgb24", "-frames:v", "1", str(path))
    return path


def write_jobs(folder: Path, names: list[str], audio: Path, stills: list[Path]) -> Path:
    """One job file a name, held still, no ComfyUI, no lip-sync; the stills are used in turn."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for index, name in enumerate(names):
        document = {
            "schema_version": 1,
            "input": {"audio": str(audio), "start": str(stills[index % len(stills)])},
            "determinism": {"fps": 25, "seed_policy": "fixed", "seed": 1},
            "comfyui": {"workflow_ids": [], "params": {}},
            "lipsync": {"enable": False},
        }
        (folder / f"{name}.json").write_text(json.dumps(document), encoding="utf-8")
    return folder


def load() -> float:
    return round(os.getloadavg()[0], 2)


def dry_run(folder: Path, out: Path) -> float:
    """Seconds of the Snakemake command of ``va batch`` (see ``va.runner.run_batch``) as a dry run."""
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(out)]
    argv += ["--config", f"batch={folder}", "--cores", "2", "--rerun-incomplete", "--dry-run", "--quiet"]
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0 or "skipped" in done.stderr:
        sys.exit(f"bench_batch: the dry run failed or skipped jobs:\n{done.stderr[-2000:]}")
    return seconds


def measure_graph(sizes: list[int], repeat: int, checks: bool) -> list[dict[str, Any]]:
    """Part (a): for each size, the median dry run and (with ``checks``) the time of va batch's own checks."""
    audio = make_tone(SCRATCH / "tiny.wav", 1.0)
    still = make_still(SCRATCH / "tiny.png", "64x64", ("0x1d3557", "0xe9c46a"))
    rows = []
    for size in sizes:
        folder = write_jobs(SCRATCH / f"jobs-{size}", [f"job-{i:04d}" for i in range(size)], audio, [still])
        out = SCRATCH / f"graph-{size}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        began_load = load()
        checked = None
        if checks:  # what run_batch does before it starts Snakemake
            began = time.perf_counter()
            batch = load_batch(folder, check=check_job)
            checked = round(time.perf_counter() - began, 2)
            if batch.problems:
                sys.exit(f"bench_batch: jobs failed the checks: {sorted(batch.problems)[:3]}")
        names = sorted(job_name(path) for path in folder.glob("*.json"))
        (out / SELECTION).write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
        times = [dry_run(folder, out) for _ in range(repeat)]
        rows.append({
            "jobs": size,
            "dry_run_seconds": round(statistics.median(times), 2),
            "dry_run_all_seconds": [round(t, 2) for t in times],
            "va_batch_checks_seconds": checked,
            "load_before": began_load,
            "load_after": load(),
        })  # fmt: skip
    return rows


def run_batch(folder: Path, cores: int) -> dict[str, Any]:
    """Part (b), one side: ``va batch`` into a fresh OUT with ``cores``; wall and per-job seconds."""
    out = SCRATCH / f"parallel-out-{cores}"
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "va", "batch", str(folder), "--out", str(out), "--cores", str(cores)]
    began_load = load()
    began = time.perf_counter()
    try:
        done = subprocess.run(
            [*argv, "--json"], capture_output=True, text=True, env=ENV, check=False, timeout=BATCH_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        sys.exit(f"bench_batch: va batch --cores {cores} hung (over {BATCH_TIMEOUT} s); see {out}/logs")
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"bench_batch: va batch --cores {cores} failed ({done.returncode}): {done.stderr[-2000:]}")
    jobs = json.loads(done.stdout)["jobs"]
    return {
        "cores": cores,
        "wall_seconds": round(wall, 2),
        "job_seconds": {row["job"]: row["seconds"] for row in jobs},
        "load_before": began_load,
        "load_after": load(),
    }


def measure_parallel(repeat: int) -> dict[str, Any]:
    """Part (b): two encoding jobs on one core, then on two; the medians and their ratio."""
    audio = make_tone(SCRATCH / "long.wav", ENCODE_SECONDS)
    stills = [
        make_still(SCRATCH / "big-a.png", ENCODE_SIZE, ("0x1d3557", "0xe9c46a")),
        make_still(SCRATCH / "big-b.png", ENCODE_SIZE, ("0x264653", "0xf4a261")),
    ]
    folder = write_jobs(SCRATCH / "jobs-parallel", ["a", "b"], audio, stills)
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for _ in range(repeat):
        for cores in (1, 2):  # interleaved, so a burst of load hits both sides alike
            runs[cores].append(run_batch(folder, cores))
    one = statistics.median(r["wall_seconds"] for r in runs[1])
    two = statistics.median(r["wall_seconds"] for r in runs[2])
    return {
        "size": ENCODE_SIZE,
        "audio_seconds": ENCODE_SECONDS,
        "jobs": 2,
        "cores_1_seconds": round(one, 2),
        "cores_2_seconds": round(two, 2),
        "ratio_1_to_2": round(one / two, 2),
        "runs": runs[1] + runs[2],
    }


def print_table(figures: dict[str, Any]) -> None:
    print(f"machine: {figures['cpus']} cores; load average at start {figures['load_at_start']}")
    if "graph" in figures:
        print("\n(a) graph construction: snakemake --config batch=DIR --dry-run --quiet (median)")
        print(f"{'jobs':>6} {'dry run s':>10} {'va batch checks s':>18} {'load':>11}")
        for row in figures["graph"]:
            loads = f"{row['load_before']}-{row['load_after']}"
            checks = "" if row["va_batch_checks_seconds"] is None else f"{row['va_batch_checks_seconds']:.2f}"
            print(f"{row['jobs']:>6} {row['dry_run_seconds']:>10.2f} {checks:>18} {loads:>11}")
    if "parallel" in figures:
        par = figures["parallel"]
        print(f"\n(b) two jobs, {par['size']} still, {par['audio_seconds']:.0f} s audio: va batch (median)")
        print(f"{'cores':>5} {'wall s':>8} {'job a s':>8} {'job b s':>8} {'load':>11}")
        for run in par["runs"]:
            jobs = run["job_seconds"]
            loads = f"{run['load_before']}-{run['load_after']}"
            print(f"{run['cores']:>5} {run['wall_seconds']:>8.2f} {jobs['a']:>8} {jobs['b']:>8} {loads:>11}")
        print(
            f"median: --cores 1 {par['cores_1_seconds']:.2f} s, --cores 2 {par['cores_2_seconds']:.2f} s, "
            f"ratio {par['ratio_1_to_2']:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="jobs in part (a)")
    parser.add_argument("--parts", nargs="+", choices=["a", "b"], default=["a", "b"])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement (median)")
    parser.add_argument("--skip-checks", action="store_true", help="in (a), time only the dry runs")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "load_at_start": load(), "repeat": args.repeat}
    if "a" in args.parts:
        figures["graph"] = measure_graph(args.sizes, args.repeat, not args.skip_checks)
    if "b" in args.parts:
        figures["parallel"] = measure_parallel(args.repeat)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_table(figures)


if __name__ == "__main__":
    main()
