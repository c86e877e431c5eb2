"""Snakemake for a run on this machine: Snakemake's own command line, without the cluster executor plugins
and without pandas.

Snakemake imports every installed executor plugin when it starts, to offer their options. The Slurm
plugin's import starts ``which`` twice and ``scontrol show config``, which waits up to 10 s where Slurm is
installed but its controller does not answer. And where pandas is installed (the Slurm plugin needs it),
Snakemake imports it for every job with a script, to store and hash a param that might be a data frame:
about 0.3 s of CPU a start. A run on the local executor (no profile named: profiles/default) uses none of
it, and va's params are strings and numbers, so ``va`` starts Snakemake through this module there, and
Snakemake runs as it does where pandas is not installed (it checks, and serializes params as plain
values). With a named profile, which may choose a cluster executor, ``va`` starts plain
``python -m snakemake``.

Usage: ``python -m va.snakemake_local SNAKEMAKE-ARGS...``
"""

from __future__ import annotations

import pkgutil
import sys
from collections.abc import Iterator

from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

#: The module names of the executor plugins a local run leaves out (a prefix: the plugin and its job step).
CLUSTER_PLUGINS = "snakemake_executor_plugin_slurm"

#: What Snakemake imports only to handle data frames, which no param of va's rules is.
DATA_FRAME_MODULES = ("pandas",)


def load_local_executors() -> list[str]:
    """Collect Snakemake's executor plugins (its registry collects once a process) without the cluster
    ones; returns the names of those it has."""
    real = pkgutil.iter_modules

    def without_cluster(*args: object, **kwargs: object) -> Iterator[pkgutil.ModuleInfo]:
        return (found for found in real(*args, **kwargs) if not found.name.startswith(CLUSTER_PLUGINS))  # type: ignore[arg-type]

    pkgutil.iter_modules = without_cluster
    try:
        names: list[str] = ExecutorPluginRegistry().get_registered_plugins()
        return names
    finally:
        pkgutil.iter_modules = real


def hide_data_frames() -> None:
    """This process imports no pandas from now on: an import of it fails as if it were not installed, and
    ``importlib.util.find_spec`` finds nothing (what Snakemake asks before it serializes a param)."""
    for name in DATA_FRAME_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]


def main() -> None:
    """Entry point of ``python -m va.snakemake_local``: Snakemake's main with the local executors only."""
    load_local_executors()
    hide_data_frames()
    # Only now: importing Snakemake's scheduler collects the executor plugins.
    from snakemake.cli import main as snakemake_main  # noqa: PLC0415

    snakemake_main()


if __name__ == "__main__":
    main()
