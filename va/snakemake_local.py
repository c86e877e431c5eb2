"""Snakemake for a run on this machine: Snakemake's own command line, without the cluster executor plugins.

Snakemake imports every installed executor plugin when it starts, to offer their options. The Slurm
plugin's import costs a run about 0.4 s of CPU (it loads pandas for its efficiency report), starts
``which`` twice and ``scontrol show config``, and that waits up to 10 s where Slurm is installed but its
controller does not answer. A run on the local executor (no profile named: profiles/default) uses none
of it, so ``va`` starts Snakemake through this module there; with a named profile, which may choose a
cluster executor, it starts plain ``python -m snakemake``.

Usage: ``python -m va.snakemake_local SNAKEMAKE-ARGS...``
"""

from __future__ import annotations

import pkgutil
from collections.abc import Iterator

from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

#: The module names of the executor plugins a local run leaves out (a prefix: the plugin and its job step).
CLUSTER_PLUGINS = "snakemake_executor_plugin_slurm"


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


def main() -> None:
    """Entry point of ``python -m va.snakemake_local``: Snakemake's main with the local executors only."""
    load_local_executors()
    # Only now: importing Snakemake's scheduler collects the executor plugins.
    from snakemake.cli import main as snakemake_main  # noqa: PLC0415

    snakemake_main()


if __name__ == "__main__":
    main()
