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


#: What to do with a registry file va cannot read (not JSON, no ``runs`` object).
_REPAIR = "move it away (va starts a new, empty registry; the runs' workdirs keep their manifests)"


def _load(path: Path) -> tuple[Registry, dict[str, str]]:
    """The registry, and what is wrong with each entry of the wrong shape (by its key). A file that is no
    registry at all is ``VALIDATION_FAILED``; an entry of the wrong shape is kept in the file as it is
    (a writer never loses what a user put there) and left out by readers (``read_runs``)."""
    if not path.exists():
        return {"runs": {}}, {}
    try:
        data = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{path}: not valid JSON ({exc}); {_REPAIR}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise VaError(ExitCode.VALIDATION_FAILED, f"{path}: not a va run registry; {_REPAIR}")
    wrong = {str(key): reason for key, entry in data["runs"].items() if (reason := _wrong_in_entry(entry))}
    return cast(Registry, data), wrong  # entries as va wrote them; a field a reader needs is read with .get


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
        data, wrong = _load(path)
        now = utc_now()
        for run_id, fields in runs.items():
            entry = data["runs"].get(run_id) if run_id not in wrong else None  # not va's: this run's now
            entry = entry or RunEntry(run_id=run_id, registered_at=now)
            data["runs"][run_id] = {**entry, **fields, "updated_at": now}
        write_json_atomic(path, data)


def check_registry() -> None:
    """Refuse a registry file that is no registry (``VALIDATION_FAILED``) before a run writes anything: a
    run registers itself only once Snakemake started, after its workdir is written."""
    path = registry_path()
    with _state_dir_errors(path):
        if path.exists():
            with _lock(path):
                _load(path)


def read_runs() -> tuple[list[RunEntry], str | None]:
    """Every registered run, oldest first, and one line naming the entries left out because they are not
    of the shape va writes (None: none is)."""
    path = registry_path()
    with _state_dir_errors(path):
        if not path.exists():
            refuse_file_in_the_way(path.parent)  # no registry because a file is in its way: said so
            return [], None
        with _lock(path):
            data, wrong = _load(path)
    runs = [entry for key, entry in data["runs"].items() if key not in wrong]
    skipped = None
    if wrong:
        named = "; ".join(f"runs[{key!r}]: {reason}" for key, reason in wrong.items())
        skipped = (
            f"{path}: {len(wrong)} entry(ies) not of the shape va writes, not listed ({named}); delete "
            "them from the file (the runs' workdirs keep their manifests)"
        )
    return sorted(runs, key=lambda run: str(run.get("registered_at", ""))), skipped


def list_runs() -> list[RunEntry]:
    """Every registered run of the shape va writes, oldest first."""
    return read_runs()[0]


def find_run(run_id: str) -> RunEntry | None:
    """The registry entry of ``run_id``, if any."""
    return next((run for run in list_runs() if run["run_id"] == run_id), None)
