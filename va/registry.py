"""The registry of runs, ``$VA_STATE_DIR/state/runs.json``: safe under many concurrent runs.

Every change takes an exclusive file lock, re-reads the file and replaces it atomically, so no
writer's entry is lost and no reader ever sees a torn file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Required, TypedDict, Unpack, cast

from va.atomic import read_json, write_json_atomic
from va.errors import ExitCode, VaError, place_unusable
from va.events import utc_now
from va.locks import locked
from va.state import refuse_file_in_the_way, registry_path


class RunUpdate(TypedDict, total=False):
    """What a run registers about itself: where it runs, its job, its status, and how it ended."""

    workdir: str
    job: str
    run_status: str
    exit_code: int | None


class RunEntry(RunUpdate, total=False):
    """A run in the registry: its id, when it was registered and last updated, and what it registered."""

    run_id: Required[str]
    registered_at: str
    updated_at: str


class Registry(TypedDict):
    """The registry file: the runs by id."""

    runs: dict[str, RunEntry]


def _lock(path: Path) -> AbstractContextManager[None]:
    """The registry's lock (a file beside it: the lock makes the folder both are in)."""
    return locked(path.with_name(path.name + ".lock"), timeout=60)


def _load(path: Path) -> Registry:
    if not path.exists():
        return {"runs": {}}
    repair = "move it away (va starts a new, empty registry; the runs' workdirs keep their manifests)"
    try:
        data = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{path}: not valid JSON ({exc}); {repair}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise VaError(ExitCode.VALIDATION_FAILED, f"{path}: not a va run registry; {repair}")
    for key, entry in data["runs"].items():
        wrong = _wrong_in_entry(entry)
        if wrong:
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f"{path}: not a va run registry (runs[{key!r}]: {wrong}); {repair}",
            )
    return cast(Registry, data)  # entries as va wrote them; a field a reader needs is read with .get


#: The fields of an entry that are text when present (``run_id`` always is; ``exit_code``: a number or null).
_TEXT_FIELDS = ("workdir", "job", "run_status", "registered_at", "updated_at")


def _wrong_in_entry(entry: object) -> str | None:
    """What makes ``entry`` no registry entry va wrote (the readers index and format its fields), or None."""
    if not isinstance(entry, dict):
        return "not an object"
    if not isinstance(entry.get("run_id"), str):
        return "no run_id text"
    for name in _TEXT_FIELDS:
        if name in entry and not isinstance(entry[name], str):
            return f"{name} is not text"
    code = entry.get("exit_code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        return "exit_code is not a whole number or null"
    return None


@contextmanager
def _state_dir_errors(path: Path) -> Iterator[None]:
    """An OS error on the registry (a full or read-only disk, a file where the state dir should be) is
    ``STATE_DIR_UNUSABLE`` naming the state dir and the reason, not an internal error."""
    try:
        yield
    except OSError as exc:
        raise place_unusable(ExitCode.STATE_DIR_UNUSABLE, "state dir", path.parent, exc) from exc


def register_run(run_id: str, **fields: Unpack[RunUpdate]) -> None:
    """Add a run, or update the fields of one that is already registered."""
    register_runs({run_id: fields})


def register_runs(runs: Mapping[str, RunUpdate]) -> None:
    """Add (or update) many runs in one rewrite of the registry: a batch's start registers every job
    at once, where a rewrite each (of a registry growing by one each time) cost a time per job that grew
    with the batch."""
    if not runs:
        return
    path = registry_path()
    with _state_dir_errors(path), _lock(path):
        data = _load(path)
        now = utc_now()
        for run_id, fields in runs.items():
            entry = data["runs"].get(run_id) or RunEntry(run_id=run_id, registered_at=now)
            data["runs"][run_id] = {**entry, **fields, "updated_at": now}
        write_json_atomic(path, data)


def list_runs() -> list[RunEntry]:
    """Every registered run, oldest first."""
    path = registry_path()
    with _state_dir_errors(path):
        if not path.exists():
            refuse_file_in_the_way(path.parent)  # no registry because a file is in its way: said so
            return []
        with _lock(path):
            runs = list(_load(path)["runs"].values())
    return sorted(runs, key=lambda run: str(run.get("registered_at", "")))


def find_run(run_id: str) -> RunEntry | None:
    """The registry entry of ``run_id``, if any."""
    return next((run for run in list_runs() if run["run_id"] == run_id), None)
