"""Benchmark: long voice tracks through the chunked lip-sync path. Figures only; nothing is asserted.

Whole ``va run``s (Snakemake, the rule scripts, ffmpeg) of a 10-minute and a 60-minute voice (a tone that
pauses for 0.6 s every 5 s) over a 64x64 still at 25 fps, with a passthrough provider (``cp`` of the video
it is given) that takes at most ``--chunk-seconds`` of audio: the audio is cut into chunks at its pauses,
each chunk a Snakemake job, joined to the lip-sync output. The provider costs nothing, so what is measured
is va's own cost of a long track: planning the cuts, cutting the audio, encoding each chunk's input,
trimming and joining the outputs, recording the chunks, the final encode.

Printed for each length: the wall time of the run and the time per audio minute, and the peak memory of
the whole run: the largest sum of the resident set sizes (RSS) of the run's process tree (``va``,
Snakemake, the rule scripts, ffmpeg, the tool), sampled every 0.1 s from /proc, and the largest RSS of a
single process of it (getrusage of the children). Goal (issue 15): the longest run's peak memory and time
per audio minute within 1.3x of the shortest's.

The load average is printed with the figures: on a shared machine another run skews them.
Run: .venv/bin/python bench/bench_lipsync_long.py [--minutes 10 60] [--chunk-seconds 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRATCH = HERE / "out" / "lipsync_long"
FPS = 25
PAUSES = "volume='if(lt(mod(t,5),4.4),1,0)':eval=frame"
# Far above a 60-minute run (~5 minutes): a run that takes this long has hung.
RUN_TIMEOUT = 3600
SAMPLE_SECONDS = 0.1


def ffmpeg(*argv: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *argv], check=True)


def write_job(folder: Path, minutes: float, chunk_seconds: float) -> tuple[Path, dict[str, str]]:
    """The voice, the still, the passthrough provider and the job; returns the job and its environment."""
    folder.mkdir(parents=True)
    voice, start = folder / "voice.wav", folder / "start.png"
    tone = f"sine=frequency=220:sample_rate=16000:duration={minutes * 60:g}"
    ffmpeg("-f", "lavfi", "-i", tone, "-af", PAUSES, str(voice))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=1", "-frames:v", "1", str(start))
    provider = {
        "type": "command",
        "description": "passthrough: the un-synced video it is given",
        "argv": ["cp", "{video}", "{output}"],
        "output": "{output}",
        "input": {"fps": FPS, "max_seconds": chunk_seconds},
        "resources": {"cpus": 1, "mem_mb": 500, "gpus": 0, "runtime": 60},
    }
    providers = folder / "providers.json"
    providers.write_text(json.dumps({"schema_version": 1, "providers": {"passthrough": provider}}))
    job = folder / "job.json"
    job.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "input": {"audio": str(voice), "start": str(start)},
                "determinism": {"fps": FPS, "seed_policy": "fixed", "seed": 1},
                "lipsync": {"enable": True, "provider": "passthrough"},
            }
        )
    )
    env = {"VIDAX_LIPSYNC_CONFIG": str(providers), "VA_STATE_DIR": str(folder / "state")}
    return job, env


def tree_rss_bytes(root: int) -> int:
    """The summed RSS of ``root`` and every process descended from it (those readable in /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        rss[pid] = int(fields[21]) * page
    total, mine = 0, {root}
    changed = True
    while changed:  # the descendants, whatever order /proc listed them in
        changed = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                changed = True
    for pid in mine:
        total += rss.get(pid, 0)
    return total


def measure(minutes: float, chunk_seconds: float) -> dict[str, Any]:
    folder = SCRATCH / f"{minutes:g}min"
    shutil.rmtree(folder, ignore_errors=True)
    job, env = write_job(folder, minutes, chunk_seconds)
    workdir = folder / "run"
    peak = [0]
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "va", "run", str(job), "--workdir", str(workdir), "--quiet"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(process.pid))
            time.sleep(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate(timeout=RUN_TIMEOUT)
    run_seconds = time.monotonic() - began
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"va run failed ({process.returncode}): {err.strip()}")
    manifest = json.loads((workdir / "manifest.json").read_text(encoding="utf-8"))
    chunks = manifest["phases"]["lipsync"]["chunks"]
    return {
        "audio_minutes": minutes,
        "chunks": len(chunks),
        "frames": manifest["target_frames"],
        "run_seconds": round(run_seconds, 1),
        "seconds_per_audio_minute": round(run_seconds / minutes, 2),
        "lipsync_seconds": manifest["phases"]["lipsync"]["seconds"],
        "peak_tree_rss_mib": round(peak[0] / 2**20, 1),
        # ru_maxrss of the children waited for so far: the largest single process of the runs until now.
        "largest_process_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "load": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--chunk-seconds", type=float, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [measure(minutes, args.chunk_seconds) for minutes in sorted(args.minutes)]
    shortest, longest = runs[0], runs[-1]
    ratios = {
        "peak_memory": round(longest["peak_tree_rss_mib"] / shortest["peak_tree_rss_mib"], 2),
        "time_per_audio_minute": round(
            longest["seconds_per_audio_minute"] / shortest["seconds_per_audio_minute"], 2
        ),
    }
    if args.json:
        print(json.dumps({"chunk_seconds": args.chunk_seconds, "runs": runs, "ratios": ratios}, indent=2))
        return
    limit = f"chunks of at most {args.chunk_seconds:g} s"
    print(f"Chunked lip-sync, passthrough provider, {limit}, 64x64 at {FPS} fps")
    for run in runs:
        print(
            f"  {run['audio_minutes']:g} min: {run['chunks']} chunks, {run['frames']} frames; run "
            f"{run['run_seconds']} s = {run['seconds_per_audio_minute']} s per audio minute (lip-sync phase "
            f"{run['lipsync_seconds']} s); peak RSS of the run's processes {run['peak_tree_rss_mib']} MiB "
            f"(largest process so far {run['largest_process_rss_mib']} MiB); load {run['load']}"
        )
    print(
        f"  {longest['audio_minutes']:g} min / {shortest['audio_minutes']:g} min: peak memory "
        f"{ratios['peak_memory']}x, time per audio minute {ratios['time_per_audio_minute']}x (goal: both "
        "within 1.3x)"
    )


if __name__ == "__main__":
    main()
