"""The run registry under concurrency: every run registered, none lost, no torn file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from va import registry

# Each writer waits for the start signal (a file appearing), then registers its runs as fast as it can.
WRITER = """
import os, sys, time
from pathlib import Path
from va.registry import register_run
go, index = Path(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
for n in range(5):
    register_run(f"run-{index:02d}-{n}", workdir=f"/w{index:02d}/{n}", run_status="running")
    register_run(f"run-{index:02d}-{n}", run_status="succeeded")
"""


def test_twenty_concurrent_writers_lose_no_run(state_dir: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(go), str(index)], env=os.environ.copy())
        for index in range(20)
    ]
    go.touch()
    assert [writer.wait(timeout=90) for writer in writers] == [0] * 20

    runs = json.loads((state_dir / "runs.json").read_text())["runs"]
    expected = {f"run-{index:02d}-{n}" for index in range(20) for n in range(5)}
    assert set(runs) == expected
    assert {entry["run_status"] for entry in runs.values()} == {"succeeded"}
    assert all(entry["workdir"] == f"/w{run_id[4:6]}/{run_id[-1]}" for run_id, entry in runs.items())
    listed = registry.list_runs()
    assert {entry["run_id"] for entry in listed} == expected and len(listed) == 100
    stamps = [entry["registered_at"] for entry in listed]
    assert stamps == sorted(stamps)  # oldest first
    assert registry.find_run("run-07-3") == runs["run-07-3"]
    assert registry.find_run("run-nope") is None


def test_many_runs_are_registered_in_one_rewrite(state_dir: Path) -> None:
    """A batch's start registers every job at once; an entry already there keeps its first registration."""
    registry.register_run("run-a", workdir="/w/a", run_status="succeeded")
    first = registry.find_run("run-a")
    assert first is not None
    registry.register_runs(
        {
            "run-a": {"run_status": "running"},
            **{f"run-{n}": {"workdir": f"/w/{n}", "run_status": "running"} for n in range(3)},
        }
    )
    runs = json.loads((state_dir / "runs.json").read_text())["runs"]
    assert set(runs) == {"run-a", "run-0", "run-1", "run-2"}
    assert runs["run-a"]["registered_at"] == first["registered_at"] and runs["run-a"]["workdir"] == "/w/a"
    assert runs["run-a"]["run_status"] == "running" and runs["run-2"]["workdir"] == "/w/2"
    registry.register_runs({})
    assert json.loads((state_dir / "runs.json").read_text())["runs"] == runs
