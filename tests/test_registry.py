"""The run registry under concurrency: every run registered, none lost."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import VA, Media


def test_twenty_concurrent_runs_all_register(files: Media, state_dir: Path) -> None:
    job = files.job()

    def run(index: int) -> tuple[int, str]:
        done = subprocess.run(
            [*VA, "run", str(job), "--workdir", str(files.root / f"w{index:02d}"), "--cores", "1", "-q"],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=600,
            check=False,
        )
        return done.returncode, done.stderr

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(run, range(20)))
    assert [code for code, _ in results] == [0] * 20, [err for _, err in results if err]

    runs = json.loads((state_dir / "runs.json").read_text())["runs"]
    workdirs = sorted(Path(entry["workdir"]).name for entry in runs.values())
    assert workdirs == [f"w{index:02d}" for index in range(20)]
    assert {entry["run_status"] for entry in runs.values()} == {"succeeded"}
    ids = {json.loads((files.root / f"w{i:02d}" / "manifest.json").read_text())["run_id"] for i in range(20)}
    assert ids == set(runs)
