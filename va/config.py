"""The three configs (vidax, lipsync.providers, assets): where each is found, validated on load.

Resolution, first hit wins: the config's environment variable, then
``$VA_STATE_DIR/state/config/<name>.json``, then the repository's ``config/<name>.json``.
"""

from __future__ import annotations

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
    candidates.append(("state dir", user_config_dir() / f"{name}.json"))
    candidates.append(("repository", REPO_CONFIG / f"{name}.json"))
    return candidates


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
