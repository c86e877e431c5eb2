"""The three configs (vidax, lipsync.providers, assets): where each is found, validated on load.

Resolution, first hit wins: the config's environment variable, then
``$VA_STATE_DIR/state/config/<name>.json``, then the repository's ``config/<name>.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from va import schema
from va.state import state_dir

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"

#: Config name -> environment variable that names its file.
CONFIG_ENV = {
    "vidax": "VIDAX_CONFIG",
    "lipsync.providers": "VIDAX_LIPSYNC_CONFIG",
    "assets": "VIDAX_ASSETS_CONFIG",
}
CONFIG_NAMES = tuple(CONFIG_ENV)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config (defaults filled in) and the file it came from."""

    name: str
    path: Path
    origin: str
    data: dict[str, Any]


def user_config_dir() -> Path:
    """``$VA_STATE_DIR/state/config``, where ``va install`` puts the example configs."""
    return state_dir() / "config"


def config_candidates(name: str) -> list[tuple[str, Path]]:
    """Where config ``name`` is looked for, in order, with the origin of each place."""
    candidates = []
    env = CONFIG_ENV[name]
    if os.environ.get(env):
        candidates.append((f"${env}", Path(os.environ[env]).expanduser()))
    named = _state_dir_of_vidax() if name != "vidax" else None
    if named is not None:
        candidates.append(("state_dir of vidax.json", named / "config" / f"{name}.json"))
    candidates.append(("state dir", user_config_dir() / f"{name}.json"))
    candidates.append(("repository", REPO_CONFIG / f"{name}.json"))
    return candidates


def _state_dir_of_vidax() -> Path | None:
    """The ``state_dir`` that vidax.json names, if any (an unreadable vidax.json names none here;
    loading it reports the problem)."""
    _, path = resolve_config("vidax")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    named = data.get("state_dir") if isinstance(data, dict) else None
    return Path(named).expanduser() if isinstance(named, str) and named else None


def resolve_config(name: str) -> tuple[str, Path]:
    """The file config ``name`` comes from; an environment variable naming a missing file is an error."""
    candidates = config_candidates(name)
    origin, path = candidates[0]
    if origin.startswith("$"):
        return origin, path  # named explicitly: a missing file must not silently fall through
    for origin, path in candidates:
        if path.is_file():
            return origin, path
    return candidates[-1]


def load_config(name: str) -> LoadedConfig:
    """Load and validate config ``name``; problems name the file and the field."""
    origin, path = resolve_config(name)
    data = schema.validate(schema.load_json_file(path, f"{name} config"), name, str(path))
    return LoadedConfig(name, path.absolute(), origin, data)
