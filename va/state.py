"""Where va keeps state across runs: ``$VA_STATE_DIR/state`` (``VA_STATE_DIR`` defaults to ``~/.va``)."""

from __future__ import annotations

import os
from pathlib import Path

from va.atomic import prove_writable
from va.errors import ExitCode, VaError, place_unusable


def state_dir() -> Path:
    """The state directory, ``$VA_STATE_DIR/state``."""
    root = os.environ.get("VA_STATE_DIR") or str(Path.home() / ".va")
    return Path(root).expanduser().absolute() / "state"


def refuse_file_in_the_way(
    root: Path, place: str = "state dir", hint: str = "set VA_STATE_DIR to a folder"
) -> None:
    """A state dir (or another ``place`` of the state, VIDAX's ``runs_root``) whose path runs through a
    file (``VA_STATE_DIR`` naming a file) is ``STATE_DIR_UNUSABLE``, saying so; checked without writing."""
    blocking = next((folder for folder in (root, *root.parents) if folder.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise VaError(
            ExitCode.STATE_DIR_UNUSABLE,
            f"{place} {root} unusable: {blocking} is a file, not a folder ({hint})",
        )


def check_state_dir() -> Path:
    """Make the state dir and prove it can be written (a byte written and synced): a path through a
    file, a read-only or full disk, or no permission is ``STATE_DIR_UNUSABLE``, one line naming the path
    and the reason."""
    root = state_dir()
    refuse_file_in_the_way(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        prove_writable(root)
    except OSError as exc:
        raise place_unusable(ExitCode.STATE_DIR_UNUSABLE, "state dir", root, exc) from exc
    return root


def registry_path() -> Path:
    """The registry of every run, ``state/runs.json``."""
    return state_dir() / "runs.json"
