"""Where va keeps state across runs: ``$VA_STATE_DIR/state`` (``VA_STATE_DIR`` defaults to ``~/.va``)."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """The state directory, ``$VA_STATE_DIR/state``."""
    root = os.environ.get("VA_STATE_DIR") or str(Path.home() / ".va")
    return Path(root).expanduser().absolute() / "state"


def registry_path() -> Path:
    """The registry of every run, ``state/runs.json``."""
    return state_dir() / "runs.json"
