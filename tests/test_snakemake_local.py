"""va.snakemake_local: a run on the local executor starts Snakemake without the cluster executor plugins;
a named profile (which may choose a cluster executor) gets plain Snakemake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from va.runner import RunOptions, graph_argv

LOADED = (
    "import json, sys; from va.snakemake_local import load_local_executors; "
    "print(json.dumps([load_local_executors(), sorted(m for m in sys.modules if m.startswith(('pandas', "
    "'snakemake_executor_plugin')))]))"
)


def test_a_local_snakemake_loads_no_cluster_plugin() -> None:
    # In a process of its own: Snakemake's plugin registry collects once a process.
    done = subprocess.run([sys.executable, "-c", LOADED], capture_output=True, text=True, check=True)
    executors, loaded = json.loads(done.stdout)
    assert sorted(executors) == ["dryrun", "local", "touch"]
    assert loaded == []


def test_only_a_run_without_a_profile_starts_the_local_snakemake(tmp_path: Path) -> None:
    local = graph_argv(tmp_path, RunOptions(tmp_path), "job=/j.json")
    assert local[1:3] == ["-m", "va.snakemake_local"]
    named = graph_argv(tmp_path, RunOptions(tmp_path, profile="slurm"), "job=/j.json")
    assert named[1:3] == ["-m", "snakemake"]
