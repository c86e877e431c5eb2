"""Benchmark: import time of every rule script. Figures only; nothing is asserted.

Each script in ``scripts/`` starts with the imports of the package it needs. For each, a fresh
interpreter runs just those import statements under ``python -X importtime``; the figure is the sum of
the cumulative times of the modules those statements load (what the interpreter loads for itself at
start-up is measured once without them and left out). The median of ``--repeat`` runs is printed, with
whether ``requests`` or ``websocket`` (the ComfyUI and lip-sync clients) were loaded. Goal: under 0.3 s
each; only the executors' own rules (comfyui_batch, lipsync) need an HTTP client.

Run: .venv/bin/python bench/bench_import.py [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parent / "scripts"
GOAL_SECONDS = 0.3
HEAVY = ("requests", "websocket")


def import_statements(script: Path) -> str:
    """The script's top-level import statements, as source to run on their own."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    nodes = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    return "\n".join(ast.unparse(node) for node in nodes)


def importtime(code: str) -> list[tuple[int, int, str]]:
    """(depth, cumulative microseconds, module) of every import ``code`` makes in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, int(cumulative), name.strip()))
    return rows


def measure(code: str, startup: int) -> tuple[float, list[str]]:
    """Seconds the statements' imports take, and the heavy modules among them."""
    rows = importtime(code)[startup:]
    seconds = sum(cumulative for depth, cumulative, _ in rows if depth == 0) / 1e6
    names = {name for _, _, name in rows}
    return seconds, [module for module in HEAVY if module in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    startup = len(importtime("pass"))
    figures = {}
    for script in sorted(SCRIPTS.glob("*.py")):
        code = import_statements(script)
        runs = [measure(code, startup) for _ in range(args.repeat)]
        figures[script.stem] = {
            "seconds": round(statistics.median(seconds for seconds, _ in runs), 3),
            "heavy_modules": runs[0][1],
        }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"import time of each rule script (median of {args.repeat}, goal under {GOAL_SECONDS} s)")
    for name, figure in figures.items():
        mark = "ok " if figure["seconds"] < GOAL_SECONDS else "SLOW"
        heavy = ", ".join(figure["heavy_modules"]) or "-"
        print(f"  {mark} {name:<22} {figure['seconds']:.3f} s   loads {heavy}")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
