"""Benchmark: the cost of recording one event, and whether it grows with the events before it. Figures
only; nothing is asserted.

A workdir gets a run (the graph of a ComfyUI job, its plan with 32 batches), then 10,000 progress events
are recorded one by one through ``va.tracking.record``, as a ComfyUI batch reports its steps: each
appends to the event log and brings ``manifest.json`` up to date. Printed: the time per event over the
first and the last thousand, and their ratio (about 1 when the cost does not grow with the log).

Run: .venv/bin/python bench/bench_manifest.py [--events N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from va.atomic import write_json_atomic
from va.tracking import record
from va.workdir import Workdir

BATCHES = 32
GRAPH = {
    "final": "final.mp4",
    "rules": {
        "prepare": ["prepare_audio", "hold_start_frame"],
        "comfyui": ["comfyui_batch", "assemble_visual"],
        "lipsync": [],
        "encode": ["encode"],
    },
    "skipped": {"lipsync": "lipsync.enable is false"},
}


def start_run(workdir: Workdir) -> None:
    """A run as the Snakefile's start records it, with a plan of ``BATCHES`` batches."""
    batches = [
        {"index": i, "name": f"{i:04d}", "first": 16 * i, "frames": 16, "seed": i} for i in range(BATCHES)
    ]
    write_json_atomic(workdir.plan, {"comfyui": {"fps": 25, "frames": 16 * BATCHES, "batches": batches}})
    record(
        workdir,
        "run",
        "info",
        "started",
        kind="run_started",
        run_id="run-bench",
        pid=os.getpid(),
        host=None,
        job="job.json",
        graph=GRAPH,
    )
    record(
        workdir,
        "comfyui",
        "info",
        "batch 0000 started",
        kind="rule_started",
        rule="comfyui_batch",
        phase="comfyui",
        target="0000",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="va-bench-manifest-"))
    try:
        workdir = Workdir(root)
        start_run(workdir)
        seconds = []
        for step in range(args.events):
            began = time.perf_counter()
            record(
                workdir,
                "comfyui",
                "info",
                f"batch 0000: step {step}",
                kind="progress",
                rule="comfyui_batch",
                phase="comfyui",
                target="0000",
                batch="0000",
                value=step,
                max=args.events,
            )
            seconds.append(time.perf_counter() - began)
        block = min(1000, args.events)
        first, last = statistics.mean(seconds[:block]) * 1e3, statistics.mean(seconds[-block:]) * 1e3
        figures = {
            "events": args.events,
            "first_thousand_ms_per_event": round(first, 3),
            "last_thousand_ms_per_event": round(last, 3),
            "ratio_last_to_first": round(last / first, 2),
            "log_bytes": workdir.events.stat().st_size,
            "manifest_bytes": workdir.manifest.stat().st_size,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{figures['events']} progress events recorded (event log {figures['log_bytes'] / 1e6:.1f} MB)")
    print(f"  first {block}: {figures['first_thousand_ms_per_event']:.3f} ms per event")
    print(f"  last {block}:  {figures['last_thousand_ms_per_event']:.3f} ms per event")
    print(f"  ratio last/first: {figures['ratio_last_to_first']:.2f}")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
