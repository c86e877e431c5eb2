"""Benchmark: batches. Figures only; nothing is asserted.

(a) Graph construction: 1,000 (``--sizes``) small job files, all on one tiny tone and one tiny still, and
    the Snakemake command ``va batch`` starts for them (the same argv, with the selection file it writes),
    plus ``--dry-run --quiet``: parse the workflow, load every job and its plan, build the DAG.
    Printed beside it: the planning ``va batch`` does itself before it starts Snakemake (schema, then
    every job planned, its inputs probed, in a thread pool, and its plan written for the graph, as
    ``va batch`` does; with ``--skip-checks`` none, and the graph plans every job itself, as a plain
    ``snakemake`` does), the dry run of a workflow of the same shape without va
    (Snakemake's own share), and a pure-Python loop's time (the machine's speed that day: the same dry
    run took 5.3 s one morning and 18.4 s that afternoon). Goal: the 1,000-job dry run under 5 s.
    With ``--instructions JOBS``: the instructions of the dry run of JOBS jobs and of Snakemake alone,
    counted by valgrind's callgrind, which the machine's speed does not move (several minutes for 200).
(b) Parallelism: two jobs, each a 1920x1080 still held over ~60 s of audio, run with
    ``va batch DIR --out OUT --cores 1`` and then ``--cores 2``; the wall times and their ratio.
(c) Scaling: ``va batch --cores 2`` of 20 and of 200 tiny jobs (a 1 s tone, a 64x64 still held), the
    wall time and the CPU time (of va and everything it started) per job; then ``va run`` of the same
    job, one after the other, ``--sequential`` times, per job. Goals: the 200-job batch's time per job
    within 1.1x of the 20-job one's, and the 200-job batch at least 1.7x faster than 200 ``va run``s.

(d) With ``--slurm``: the same 8 varied jobs (held stills, camera moves, the audiogram's lip-sync,
    buffers, 24/25/30 fps; a 3 s voice, a 640x360 still) as ``va batch --cores 2`` on this machine and as
    ``va batch --profile slurm`` on the Slurm whose node is this machine (tests/slurm/start-slurm.sh),
    each into a fresh OUT, interleaved ``--repeat`` times; the median walls and their ratio. Goal: Slurm
    within 1.5x of the local batch.

The load average is printed with each figure: on a shared machine another run skews the wall times
(the CPU times much less). So is whether Slurm is installed here and its controller answers: where it
does not, every Snakemake start waits up to 10 s (va doctor's slurm check).
Run: .venv/bin/python bench/bench_batch.py [--parts a b c] [--sizes 1000] [--scale 20 200] [--sequential 10]
     [--repeat N] [--skip-checks] [--instructions JOBS] [--slurm] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from va.batch import SELECTION, job_name, load_batch
from va.plan import plan_jobs, publish_plan
from va.runner import SNAKEFILE
from va.slurm import controller_answers
from va.workdir import Workdir

HERE = Path(__file__).resolve().parent
SCRATCH = HERE / "out" / "batch"
# Runs of the benchmark register in a state dir of their own, not in the user's. Python writes its
# bytecode caches, as it does for a user: without them every rule's process compiles va and Snakemake.
ENV = {**os.environ, "VA_STATE_DIR": str(SCRATCH / "state")}
ENV.pop("PYTHONDONTWRITEBYTECODE", None)
ENCODE_SIZE = "1920x1080"
ENCODE_SECONDS = 60.0
#: What a Slurm installed on this machine means for every figure: each Snakemake start (every dry run, every
#: va run) waits up to 10 s where the controller does not answer (va doctor's slurm check).
SLURM_STATES = {
    None: "not installed",
    True: "the controller answers",
    False: "installed, the controller does not answer: each Snakemake start waits up to 10 s for it",
}
# Far above a normal run (~15 s): a run that takes this long has hung, and its figure would mean nothing.
BATCH_TIMEOUT = 300
# A 200-job batch of tiny jobs takes a few minutes on two cores; one that takes this long has hung.
SCALE_TIMEOUT = 1800


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


def children_cpu() -> float:
    """CPU seconds of every finished child process of this one (and of theirs, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run_argv(folder: Path, out: Path) -> list[str]:
    """The Snakemake command of ``va batch`` (see ``va.runner.run_batch``) as a dry run: with the plans
    ``va batch`` writes when they are there, else the graph plans the jobs itself."""
    planned = any(out.glob("*/prepare/plan.json"))
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(out)]
    argv += ["--config", f"batch={folder}", *(["planned=True"] if planned else []), "--cores", "2"]
    argv += ["--rerun-incomplete"]
    return [*argv, "--dry-run", "--quiet"]


def dry_run(folder: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the dry run of ``va batch``'s Snakemake command."""
    cpu, began = children_cpu(), time.perf_counter()
    done = subprocess.run(dry_run_argv(folder, out), capture_output=True, text=True, env=ENV, check=False)
    seconds, cpu = time.perf_counter() - began, children_cpu() - cpu
    if done.returncode != 0 or "skipped" in done.stderr:
        sys.exit(f"bench_batch: the dry run failed or skipped jobs:\n{done.stderr[-2000:]}")
    return seconds, cpu


#: A workflow of the shape of a batch of held stills, without va: per job three rules (two on an input
#: file, one joining their outputs), each with a log, a benchmark, params and a group from functions of
#: the wildcards, and a script that does nothing. Its dry run is what Snakemake alone takes for the
#: graph; the rest of va's dry run is va's.
SHAPE = """
NAMES = [f"job-{{i:04d}}" for i in range({jobs})]


def of_name(wildcards):
    return wildcards.name


rule all:
    input:
        expand("{{name}}/final.mp4", name=NAMES),
"""
SHAPE_RULE = """

rule {rule}:
    input:
        {inputs},
    output:
        "{{name}}/{output}",
    log:
        "{{name}}/logs/{output}.log",
    benchmark:
        "{{name}}/benchmarks/{output}.tsv"
    group:
        of_name
    params:
        settings=of_name,
    script:
        "nothing.py"
"""
SHAPE_RULES = [
    ("audio", '"tone.wav"', "prepare/padded.wav"),
    ("still", '"still.png"', "frames/still.mp4"),
    ("encode", '"{name}/prepare/padded.wav", "{name}/frames/still.mp4"', "final.mp4"),
]


def shape(jobs: int) -> str:
    """The Snakefile of SHAPE for ``jobs`` jobs."""
    rules = (
        SHAPE_RULE.format(rule=rule, inputs=inputs, output=output) for rule, inputs, output in SHAPE_RULES
    )
    return SHAPE.format(jobs=jobs) + "".join(rules)


def shape_folder(jobs: int) -> Path:
    """A folder with the Snakefile of SHAPE for ``jobs`` jobs, its empty script and its two inputs."""
    folder = SCRATCH / f"shape-{jobs}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "Snakefile").write_text(shape(jobs), encoding="utf-8")
    (folder / "nothing.py").write_text("", encoding="utf-8")
    (folder / "tone.wav").touch()
    (folder / "still.png").touch()
    return folder


def alone_argv(folder: Path) -> list[str]:
    """The dry run of SHAPE in ``folder``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--directory",
        str(folder),
        "--cores",
        "2",
        "--dry-run",
        "--quiet",
    ]


def snakemake_alone(jobs: int) -> float:
    """Wall seconds of the dry run of SHAPE for ``jobs`` jobs (Snakemake's own share of part (a))."""
    folder = shape_folder(jobs)
    began = time.perf_counter()
    done = subprocess.run(
        alone_argv(folder), cwd=folder, capture_output=True, text=True, env=ENV, check=False
    )
    if done.returncode != 0:
        sys.exit(f"bench_batch: the dry run of Snakemake alone failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - began


def instructions(argv: list[str], what: str, cwd: Path | None = None) -> int:
    """Instructions the command's own process executed, counted by valgrind's callgrind (its child
    processes, such as the Slurm plugin's scontrol, are not counted). The same for the same code and
    inputs however fast the machine runs that minute; about 50 times slower than the command itself."""
    counted = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv]
    done = subprocess.run(counted, cwd=cwd, capture_output=True, text=True, env=ENV, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"bench_batch: {what} under callgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def batch_of(size: int, checks: bool) -> tuple[Path, Path, float | None]:
    """The folder of ``size`` tiny jobs and a fresh OUT for it, as ``va batch`` leaves them before it
    starts Snakemake (the selection file, and with ``checks`` the record of its checks); also the
    seconds those checks took (None without them)."""
    audio = make_tone(SCRATCH / "tiny.wav", 1.0)
    still = make_still(SCRATCH / "tiny.png", "64x64", ("0x1d3557", "0xe9c46a"))
    folder = write_jobs(SCRATCH / f"jobs-{size}", [f"job-{i:04d}" for i in range(size)], audio, [still])
    out = SCRATCH / f"graph-{size}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    checked = None
    if checks:  # what run_batch does before it starts Snakemake: plan every job, write its plan
        began = time.perf_counter()
        batch = load_batch(folder)
        plans, problems = plan_jobs(batch.jobs, lambda name: Workdir(out / name))
        for name, plan in plans.items():
            publish_plan(plan, Workdir(out / name).plan)
        checked = round(time.perf_counter() - began, 2)
        if problems or batch.problems:
            sys.exit(f"bench_batch: jobs failed the checks: {sorted({**problems, **batch.problems})[:3]}")
    names = sorted(job_name(path) for path in folder.glob("*.json"))
    (out / SELECTION).write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    return folder, out, checked


def measure_instructions(size: int) -> dict[str, Any]:
    """Part (a) counted: the instructions of the dry run of ``size`` jobs and of Snakemake alone."""
    if shutil.which("valgrind") is None:
        sys.exit("bench_batch: --instructions needs valgrind (apt-get install valgrind)")
    folder, out, _ = batch_of(size, checks=True)
    dry = instructions(dry_run_argv(folder, out), "the dry run")
    shape_dir = shape_folder(size)
    alone = instructions(alone_argv(shape_dir), "the dry run of Snakemake alone", cwd=shape_dir)
    return {"jobs": size, "dry_run_instructions": dry, "snakemake_alone_instructions": alone}


def python_reference() -> float:
    """Seconds of a fixed pure-Python loop (10 million additions): how fast this machine runs Python
    today, to compare figures taken on different days (the same code's dry run has differed 3.5x)."""
    began = time.perf_counter()
    total = 0
    for number in range(10_000_000):
        total += number
    return time.perf_counter() - began


def measure_graph(sizes: list[int], repeat: int, checks: bool) -> list[dict[str, Any]]:
    """Part (a): for each size, the median dry run and (with ``checks``) the time of va batch's own checks."""
    rows = []
    for size in sizes:
        began_load = load()
        folder, out, checked = batch_of(size, checks)
        # One after the other, so that both see the machine at the same speed (it has swung 3x in minutes).
        runs, alone = [], []
        for _ in range(repeat):
            runs.append(dry_run(folder, out))
            alone.append(snakemake_alone(size))
        times = [wall for wall, _ in runs]
        rows.append(
            {
                "jobs": size,
                "dry_run_seconds": round(statistics.median(times), 2),
                "dry_run_cpu_seconds": round(statistics.median(cpu for _, cpu in runs), 2),
                "dry_run_all_seconds": [round(t, 2) for t in times],
                "va_batch_checks_seconds": checked,
                "snakemake_alone_seconds": round(statistics.median(alone), 2),
                "python_reference_seconds": round(min(python_reference() for _ in range(3)), 2),
                "load_before": began_load,
                "load_after": load(),
            }
        )
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
        "job_seconds": {row["job"]: row["wall_seconds"] for row in jobs},
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


def timed(argv: list[str], what: str) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall and CPU seconds of one command, which must succeed."""
    cpu, began = children_cpu(), time.perf_counter()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=ENV, check=False, timeout=SCALE_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        sys.exit(f"bench_batch: {what} hung (over {SCALE_TIMEOUT} s)")
    wall, cpu = time.perf_counter() - began, children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"bench_batch: {what} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, cpu, done


def measure_scale(sizes: list[int], sequential: int) -> dict[str, Any]:
    """Part (c): va batch of each size, then va run of the same tiny job ``sequential`` times."""
    audio = make_tone(SCRATCH / "tiny.wav", 1.0)
    still = make_still(SCRATCH / "tiny.png", "64x64", ("0x1d3557", "0xe9c46a"))
    batches = []
    for size in sizes:
        folder = write_jobs(
            SCRATCH / f"scale-jobs-{size}", [f"job-{i:04d}" for i in range(size)], audio, [still]
        )
        out = SCRATCH / f"scale-out-{size}"
        shutil.rmtree(out, ignore_errors=True)
        began_load = load()
        argv = [sys.executable, "-m", "va", "batch", str(folder), "--out", str(out), "--cores", "2", "--json"]
        wall, cpu, done = timed(argv, f"va batch of {size} jobs")
        rows = json.loads(done.stdout)["jobs"]
        batches.append(
            {
                "jobs": size,
                "wall_seconds": round(wall, 2),
                "wall_per_job": round(wall / size, 3),
                "cpu_per_job": round(cpu / size, 3),
                "work_per_job": round(sum(row["work_seconds"] or 0 for row in rows) / size, 3),
                "load_before": began_load,
                "load_after": load(),
            }
        )
    job = write_jobs(SCRATCH / "scale-one", ["one"], audio, [still]) / "one.json"
    runs = SCRATCH / "scale-runs"
    shutil.rmtree(runs, ignore_errors=True)
    began_load, walls, cpus = load(), [], []
    for index in range(sequential):
        argv = [sys.executable, "-m", "va", "run", str(job), "--workdir", str(runs / f"{index}"), "-q"]
        wall, cpu, _ = timed(argv, "va run")
        walls.append(wall)
        cpus.append(cpu)
    run = {
        "runs": sequential,
        "wall_per_job": round(statistics.mean(walls), 3),
        "cpu_per_job": round(statistics.mean(cpus), 3),
        "load_before": began_load,
        "load_after": load(),
    }
    figures: dict[str, Any] = {"batches": batches, "sequential": run}
    if len(batches) >= 2:
        small, large = batches[0], batches[-1]
        figures["per_job_ratio"] = round(large["wall_per_job"] / small["wall_per_job"], 2)
        figures["cpu_per_job_ratio"] = round(large["cpu_per_job"] / small["cpu_per_job"], 2)
    if batches:
        largest = batches[-1]
        figures["speedup_over_sequential"] = round(
            run["wall_per_job"] * largest["jobs"] / largest["wall_seconds"], 2
        )
        figures["cpu_saving_over_sequential"] = round(run["cpu_per_job"] / largest["cpu_per_job"], 2)
    return figures


#: The varied jobs of part (d): name, then the sections that differ from a held still at 25 fps.
VARIED: dict[str, dict[str, Any]] = {
    "still-25": {},
    "still-24-buffers": {"determinism": {"fps": 24}, "buffer": {"pre_seconds": 0.5, "post_seconds": 1.0}},
    "still-30": {"determinism": {"fps": 30}},
    "push-in-25": {"motion": {"strength": 0.5, "camera": "push_in"}},
    "pan-left-30": {"determinism": {"fps": 30}, "motion": {"strength": 0.5, "camera": "pan_left"}},
    "lipsync-25": {"lipsync": {"enable": True, "provider": "audiogram"}},
    "lipsync-30-buffers": {
        "determinism": {"fps": 30},
        "buffer": {"pre_seconds": 1.0, "post_seconds": 0.5},
        "lipsync": {"enable": True, "provider": "audiogram"},
    },
    "pull-out-24": {"determinism": {"fps": 24}, "motion": {"strength": 0.3, "camera": "pull_out"}},
}


def varied_jobs() -> Path:
    """The folder of part (d)'s 8 job files."""
    audio = make_tone(SCRATCH / "varied.wav", 3.0)
    still = make_still(SCRATCH / "varied.png", "640x360", ("0x1d3557", "0xe9c46a"))
    folder = SCRATCH / "jobs-varied"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, sections in VARIED.items():
        document: dict[str, Any] = {
            "schema_version": 1,
            "input": {"audio": str(audio), "start": str(still)},
            "determinism": {"fps": 25, "seed_policy": "fixed", "seed": 1},
            "comfyui": {"workflow_ids": [], "params": {}},
            "lipsync": {"enable": False},
        }
        for key, value in sections.items():
            document[key] = {**document.get(key, {}), **value}
        (folder / f"{name}.json").write_text(json.dumps(document), encoding="utf-8")
    return folder


def varied_batch(folder: Path, where: str) -> dict[str, Any]:
    """One ``va batch`` of part (d), ``where`` ``local`` (--cores 2) or ``slurm`` (--profile slurm)."""
    out = SCRATCH / f"varied-out-{where}"
    shutil.rmtree(out, ignore_errors=True)
    how = ["--cores", "2"] if where == "local" else ["--profile", "slurm"]
    began_load = load()
    argv = [sys.executable, "-m", "va", "batch", str(folder), "--out", str(out), *how, "--json"]
    wall, cpu, done = timed(argv, f"va batch {' '.join(how)}")
    rows = json.loads(done.stdout)["jobs"]
    return {
        "where": where,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "work_seconds": round(sum(row["work_seconds"] or 0 for row in rows), 2),
        "load_before": began_load,
        "load_after": load(),
    }


def measure_slurm(repeat: int) -> dict[str, Any]:
    """Part (d): the 8 varied jobs locally and on Slurm, interleaved; the medians and their ratio."""
    if controller_answers() is not True:
        sys.exit("bench_batch: --slurm needs a Slurm whose controller answers (tests/slurm/start-slurm.sh)")
    folder = varied_jobs()
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "slurm": []}
    for _ in range(repeat):
        for where in ("local", "slurm"):
            runs[where].append(varied_batch(folder, where))
    local = statistics.median(run["wall_seconds"] for run in runs["local"])
    slurm = statistics.median(run["wall_seconds"] for run in runs["slurm"])
    return {
        "jobs": len(VARIED),
        "local_seconds": round(local, 2),
        "slurm_seconds": round(slurm, 2),
        "ratio_slurm_to_local": round(slurm / local, 2),
        "runs": runs["local"] + runs["slurm"],
        "cpus_asked": cpus_asked(SCRATCH / "varied-out-slurm"),
    }


def cpus_asked(out: Path) -> dict[str, int]:
    """The CPUs each Slurm job of the last Slurm batch in ``out`` asked for, by the job's comment (the
    video's group, or the rule and its wildcards), as ``scontrol`` still knows them (``MinJobAge``)."""
    shown = subprocess.run(
        ["scontrol", "--oneliner", "show", "job"], capture_output=True, text=True, check=False
    ).stdout
    jobs = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in shown.splitlines()]
    ours = [job for job in jobs if job.get("WorkDir") == str(out)]
    latest: dict[str, tuple[int, int]] = {}
    for job in ours:  # a comment submitted again (an earlier repeat) counts once, at its latest
        job_id, comment = int(job.get("JobId", 0)), job.get("Comment", "")
        if comment not in latest or latest[comment][0] < job_id:
            latest[comment] = (job_id, int(job.get("NumCPUs", 0)))
    return {comment: cpus for comment, (_, cpus) in sorted(latest.items())}


def print_table(figures: dict[str, Any]) -> None:
    print(f"machine: {figures['cpus']} cores; load average at start {figures['load_at_start']}")
    print(f"slurm: {figures['slurm']}")
    if "graph" in figures:
        print("\n(a) graph construction: snakemake --config batch=DIR --dry-run --quiet (median)")
        print(
            f"{'jobs':>6} {'dry run s':>10} {'cpu s':>6} {'va batch checks s':>18} "
            f"{'snakemake alone s':>18} {'python ref s':>13} {'load':>11}"
        )
        for row in figures["graph"]:
            loads = f"{row['load_before']}-{row['load_after']}"
            checks = "" if row["va_batch_checks_seconds"] is None else f"{row['va_batch_checks_seconds']:.2f}"
            print(
                f"{row['jobs']:>6} {row['dry_run_seconds']:>10.2f} {row['dry_run_cpu_seconds']:>6.2f} "
                f"{checks:>18} {row['snakemake_alone_seconds']:>18.2f} "
                f"{row['python_reference_seconds']:>13.2f} {loads:>11}"
            )
        print("goal: the 1,000-job dry run under 5 s")
        print(
            "snakemake alone: the dry run of a workflow of the same shape without va (three rules a job, "
            "each with a log, a benchmark, a params and a group function, and an empty script)"
        )
        print("python ref: 10 million additions in a Python loop, the machine's speed today")
    if "instructions" in figures:
        row = figures["instructions"]
        dry, alone = row["dry_run_instructions"], row["snakemake_alone_instructions"]
        print(
            f"\n(a) counted by callgrind, {row['jobs']} jobs: instructions of the dry run, of Snakemake alone"
        )
        print(
            f"{'jobs':>6} {'dry run G':>10} {'snakemake alone G':>18} {'the rest (va) G':>16} {'va share':>9}"
        )
        print(
            f"{row['jobs']:>6} {dry / 1e9:>10.2f} {alone / 1e9:>18.2f} {(dry - alone) / 1e9:>16.2f} "
            f"{(dry - alone) / dry:>9.0%}"
        )
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
    if "slurm_batch" in figures:
        par = figures["slurm_batch"]
        print(f"\n(d) {par['jobs']} varied jobs: va batch --cores 2 here, and --profile slurm on this node")
        print(f"{'where':>6} {'wall s':>8} {'cpu s':>7} {'work s':>7} {'load':>11}")
        for run in par["runs"]:
            loads = f"{run['load_before']}-{run['load_after']}"
            print(
                f"{run['where']:>6} {run['wall_seconds']:>8.2f} {run['cpu_seconds']:>7.2f} "
                f"{run['work_seconds']:>7.2f} {loads:>11}"
            )
        print(
            f"median: local {par['local_seconds']:.2f} s, Slurm {par['slurm_seconds']:.2f} s, "
            f"ratio {par['ratio_slurm_to_local']:.2f}x (goal: at most 1.5x)"
        )
        asked = ", ".join(
            f"{comment.removeprefix('rule_')}: {cpus}" for comment, cpus in par["cpus_asked"].items()
        )
        print(f"CPUs each Slurm job asked for: {asked}")
    if "scale" in figures:
        scale = figures["scale"]
        print("\n(c) scaling: va batch --cores 2 of tiny jobs, then va run of one such job after the other")
        print(
            f"{'jobs':>6} {'wall s':>8} {'wall s/job':>11} {'cpu s/job':>10} {'work s/job':>11} {'load':>11}"
        )
        for row in scale["batches"]:
            loads = f"{row['load_before']}-{row['load_after']}"
            print(
                f"{row['jobs']:>6} {row['wall_seconds']:>8.2f} {row['wall_per_job']:>11.3f} "
                f"{row['cpu_per_job']:>10.3f} {row['work_per_job']:>11.3f} {loads:>11}"
            )
        run = scale["sequential"]
        loads = f"{run['load_before']}-{run['load_after']}"
        print(
            f"va run x{run['runs']}: {run['wall_per_job']:.3f} s/job wall, "
            f"{run['cpu_per_job']:.3f} s/job cpu (load {loads})"
        )
        if "per_job_ratio" in scale:
            print(
                f"per job, largest batch / smallest: {scale['per_job_ratio']:.2f}x wall, "
                f"{scale['cpu_per_job_ratio']:.2f}x cpu (goal: at most 1.1x)"
            )
        if "speedup_over_sequential" in scale:
            speedup, saving = scale["speedup_over_sequential"], scale["cpu_saving_over_sequential"]
            print(
                f"largest batch against as many va runs: {speedup:.2f}x faster (goal: at least 1.7x), "
                f"{saving:.2f}x less cpu a job"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000], help="jobs in part (a)")
    parser.add_argument("--scale", type=int, nargs="+", default=[20, 200], help="jobs of the batches in (c)")
    parser.add_argument("--sequential", type=int, default=10, help="va runs one after the other in (c)")
    parser.add_argument("--parts", nargs="+", choices=["a", "b", "c"], default=["a", "b", "c"])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement (median)")
    parser.add_argument("--skip-checks", action="store_true", help="in (a), time only the dry runs")
    parser.add_argument(
        "--instructions",
        type=int,
        metavar="JOBS",
        help="in (a), also count the instructions of the dry run of JOBS jobs and of Snakemake alone",
    )
    parser.add_argument(
        "--slurm", action="store_true", help="only part (d): 8 varied jobs locally and on this node's Slurm"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()
    if args.slurm:
        args.parts = []
    SCRATCH.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_at_start": load(),
        "repeat": args.repeat,
        "slurm": SLURM_STATES[controller_answers()],
    }
    if "a" in args.parts:
        figures["graph"] = measure_graph(args.sizes, args.repeat, not args.skip_checks)
        if args.instructions:
            figures["instructions"] = measure_instructions(args.instructions)
    if "b" in args.parts:
        figures["parallel"] = measure_parallel(args.repeat)
    if "c" in args.parts:
        figures["scale"] = measure_scale(args.scale, args.sequential)
    if args.slurm:
        figures["slurm_batch"] = measure_slurm(args.repeat)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_table(figures)


if __name__ == "__main__":
    main()
