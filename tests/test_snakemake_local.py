"""va.snakemake_local: a run on the local executor starts Snakemake without the cluster executor plugins
and without pandas; a named profile (which may choose a cluster executor) gets plain Snakemake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from va.runner import RunOptions, graph_argv

# In a process of its own: Snakemake's plugin registry collects once a process.
LOADED = """
import importlib.util, json, sys
from va.snakemake_local import hide_data_frames, load_local_executors
executors = load_local_executors()
hide_data_frames()
try:
    import pandas
    imported = True
except ModuleNotFoundError:
    imported = False
loaded = sorted(m for m in sys.modules if m.startswith(("snakemake_executor_plugin", "pandas.")))
print(json.dumps([executors, loaded, imported, importlib.util.find_spec("pandas") is None]))
"""


def test_a_local_snakemake_loads_no_cluster_plugin_and_no_pandas() -> None:
    done = subprocess.run([sys.executable, "-c", LOADED], capture_output=True, text=True, check=True)
    executors, loaded, imported, unfound = json.loads(done.stdout)
    assert sorted(executors) == ["dryrun", "local", "touch"]
    assert loaded == []
    assert imported is False and unfound is True  # as Snakemake asks before serializing a param


def test_only_a_run_without_a_profile_starts_the_local_snakemake(tmp_path: Path) -> None:
    local = graph_argv(tmp_path, RunOptions(tmp_path), "job=/j.json")
    assert local[1:3] == ["-m", "va.snakemake_local"]
    named = graph_argv(tmp_path, RunOptions(tmp_path, profile="slurm"), "job=/j.json")
    assert named[1:3] == ["-m", "snakemake"]
