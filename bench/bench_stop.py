"""Benchmark: stopping a run. Figures only; nothing is asserted (tests/test_processes.py asserts).

A ``va run`` whose lip-sync tool hangs (and has a worker in a session of its own) is stopped while the
tool runs, once a way: SIGTERM and SIGINT of ``va`` (Ctrl-C, VIDAX cancel), SIGKILL of ``va``. Printed:
how long ``va`` took to exit after the signal, and how long until no process of the run was left (found
by a marker in their environment). Then what the guardian costs a run: one scan of ``/proc`` for its
record (it scans once a second) and its start-up.

The load average is printed with each figure: on a shared machine other work skews them.
Run: .venv/bin/python bench/bench_stop.py [--ways SIGTERM SIGINT SIGKILL] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from va.processes import descendants

HERE = Path(__file__).resolve().parent
SCRATCH = HERE / "out" / "stop"
MARKER = "VA_BENCH_MARKER"
# The tool: a worker in a session of its own, then it waits for ever (as a model that never answers).
HANG = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
    "open(sys.argv[1], 'w').write('running')\n"
    "time.sleep(600)\n"
)


def marked(marker: str) -> int:
    """How many running processes carry the marker."""
    needle, count = f"{MARKER}={marker}".encode(), 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes().split(b"\0"):
                count += (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            continue
    return count


def prepare(root: Path) -> tuple[Path, dict[str, str]]:
    """A job with a 2 s tone and a still, and the environment whose provider ``hang`` never ends."""
    root.mkdir(parents=True)
    ffmpeg = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"]
    subprocess.run(
        [*ffmpeg, "sine=frequency=220:sample_rate=16000:duration=2", str(root / "voice.wav")], check=True
    )
    subprocess.run(
        [*ffmpeg, "testsrc2=size=320x240:rate=1", "-frames:v", "1", str(root / "start.png")], check=True
    )
    job = {
        "schema_version": 1,
        "input": {"audio": "voice.wav", "start": "start.png"},
        "determinism": {"fps": 25, "seed_policy": "fixed", "seed": 7},
        "lipsync": {"enable": True, "provider": "hang"},
    }
    (root / "job.json").write_text(json.dumps(job))
    provider = {
        "type": "command",
        "argv": [sys.executable, "-c", HANG, str(root / "started")],
        "output": "{output}",
        "input": {"fps": 25},
    }
    (root / "providers.json").write_text(json.dumps({"schema_version": 1, "providers": {"hang": provider}}))
    env = {
        **os.environ,
        "VIDAX_LIPSYNC_CONFIG": str(root / "providers.json"),
        "VA_STATE_DIR": str(root / "state"),
    }
    return root / "job.json", env


def stop_once(way: str) -> dict[str, Any]:
    root = SCRATCH / way
    shutil.rmtree(root, ignore_errors=True)
    job, env = prepare(root)
    marker = uuid.uuid4().hex
    argv = [sys.executable, "-m", "va", "run", str(job), "--workdir", str(root / "w"), "-q"]
    process = subprocess.Popen(
        argv,
        env={**env, MARKER: marker},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not (root / "started").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{way}: the run ended or hung before its tool started")
        time.sleep(0.05)
    time.sleep(0.5)  # the worker is up too
    running = marked(marker)
    sent = time.monotonic()
    process.send_signal(getattr(signal, way))
    process.wait(timeout=120)
    exited = time.monotonic() - sent
    while marked(marker):
        if time.monotonic() - sent > 120:
            raise SystemExit(f"{way}: processes of the run still run after 120 s")
        time.sleep(0.02)
    gone = time.monotonic() - sent
    return {
        "way": way,
        "processes": running,
        "va_exit_seconds": round(exited, 2),
        "all_gone_seconds": round(gone, 2),
        "exit_code": process.returncode,
        "load": os.getloadavg()[0],
    }


def guardian_costs() -> dict[str, Any]:
    scans = 50
    began = time.perf_counter()
    for _ in range(scans):
        descendants(1)
    scan_ms = (time.perf_counter() - began) / scans * 1000
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import va.guardian"], check=True)
    start_ms = (time.perf_counter() - began) * 1000
    processes = sum(1 for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return {
        "scan_ms": round(scan_ms, 2),
        "processes_on_machine": processes,
        "guardian_start_ms": round(start_ms),
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ways", nargs="+", default=["SIGTERM", "SIGINT", "SIGKILL"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [stop_once(way) for way in args.ways]
    costs = guardian_costs()
    if args.json:
        print(json.dumps({"stops": rows, "guardian": costs}))
        return
    print(f"{'signal to va':<13} {'processes':>9} {'va exited':>10} {'all gone':>9} {'exit':>5} {'load':>5}")
    for row in rows:
        figures = f"{row['va_exit_seconds']:>9.2f}s {row['all_gone_seconds']:>8.2f}s"
        print(f"{row['way']:<13} {row['processes']:>9} {figures} {row['exit_code']:>5} {row['load']:>5.1f}")
    print(
        f"guardian: one /proc scan {costs['scan_ms']} ms ({costs['processes_on_machine']} processes; once a "
        f"second while a run runs), start-up {costs['guardian_start_ms']} ms, load {costs['load']:.1f}"
    )


if __name__ == "__main__":
    main()
