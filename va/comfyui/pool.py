"""A pool of ComfyUI servers: which servers a stage may use, and a lease of one of them for each unit.

A unit (one batch's prompt) leases a place at a server before it submits and gives it back when the
prompt has ended: a server has its ``slots`` running and ``QUEUED_AHEAD`` more queued behind them. The
units of a run or a batch run in separate Snakemake jobs (on a cluster, on other nodes), so the leases
are file locks in one folder (the state dir's ``comfyui/pool``; the kernel gives a lock back when its
process dies, so a killed unit never leaves a lease taken), and a server that failed is marked there for
a few seconds, so that the next units go to the others until it answers again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from va.comfyui.protocol import ResourcesBlock
from va.locks import Flock
from va.state import state_dir

#: How long a server that failed is left out when a unit looks for a slot (it is then tried again: a
#: server that comes back is used again).
DOWN_SECONDS = 5.0
#: How often a unit waiting for a slot looks again.
LEASE_POLL_SECONDS = 0.02
#: How long a server may not answer while it runs our prompt before the unit is moved to another server
#: of the pool (a single server is waited for up to ``comfyui.stall_seconds``: it may come back).
FAILOVER_SECONDS = 5.0
#: Prompts va keeps at a server beyond its slots, queued there behind the running ones: the server goes
#: from one prompt to the next without waiting for va to submit (a 1 s prompt left the server idle
#: 0.1-0.8 s between prompts, more on a loaded machine).
QUEUED_AHEAD = 1
#: How long a waiting unit's place in the line holds without being touched (its unit touches it four
#: times as often while it waits; a unit killed while waiting loses its place after this).
WAITING_FRESH_SECONDS = 8.0


@dataclass(frozen=True, slots=True)
class PoolServer:
    """One ComfyUI server of a pool: its URL and how many prompts va keeps there at once."""

    url: str
    slots: int = 1

    @property
    def leases(self) -> int:
        """The prompts va keeps there at once: its slots running, ``QUEUED_AHEAD`` more waiting their turn."""
        return self.slots + QUEUED_AHEAD


@dataclass(frozen=True, slots=True)
class ServerStart:
    """How a ComfyUI stage starts its own server (on a compute node): the command (``{port}`` is replaced
    by a free port), its working folder, how long it may take to answer, and how long it gets to stop."""

    command: tuple[str, ...]
    cwd: str | None = None
    start_timeout_seconds: float = 300.0
    stop_seconds: float = 10.0
    #: Declared in vidax.json (``comfyui.start_in_job``): used only when the stage runs as a cluster job.
    cluster_only: bool = False


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What a ComfyUI job asks a cluster for: CPUs, memory (MB), GPUs, minutes."""

    cpus: int
    mem_mb: int
    gpus: int
    runtime: int


#: A ComfyUI job that only talks to servers elsewhere: light, but long.
TALKING = JobRequest(cpus=1, mem_mb=500, gpus=0, runtime=180)
#: A ComfyUI job that starts its own server for a template that declares nothing: an SDXL-class model.
SERVING = JobRequest(cpus=4, mem_mb=16000, gpus=1, runtime=180)


def job_request(start: ServerStart | None, declared: JobRequest | None) -> JobRequest:
    """What the ComfyUI job asks for: with a server of its own, what its template declares (bindings'
    ``resources``), else ``SERVING``; without, ``TALKING``."""
    if start is None:
        return TALKING
    return declared or SERVING


def request_of(declared: ResourcesBlock | None) -> JobRequest | None:
    """A bindings file's ``resources`` (each missing figure: ``SERVING``'s)."""
    if declared is None:
        return None
    return JobRequest(
        int(declared.get("cpus", SERVING.cpus)),
        int(declared.get("mem_mb", SERVING.mem_mb)),
        int(declared.get("gpus", SERVING.gpus)),
        int(declared.get("runtime", SERVING.runtime)),
    )


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """The servers of a stage, and the server it starts itself, if any (then the pool is that server)."""

    servers: tuple[PoolServer, ...]
    start: ServerStart | None = None

    @property
    def slots(self) -> int:
        """The slots of every server together."""
        return sum(server.slots for server in self.servers)

    def as_params(self) -> PoolParams:
        """As a rule's params (plain data, so Snakemake reruns the stage when the pool changes)."""
        start: StartDeclaration | None = None
        if self.start is not None:
            start = {
                "command": list(self.start.command),
                "cwd": self.start.cwd,
                "start_timeout_seconds": self.start.start_timeout_seconds,
                "stop_seconds": self.start.stop_seconds,
                "cluster_only": self.start.cluster_only,
            }
        return {"servers": [{"url": s.url, "slots": s.slots} for s in self.servers], "start": start}

    @classmethod
    def from_params(cls, params: PoolParams) -> PoolSettings:
        """What ``as_params`` made."""
        start = params.get("start")
        return cls(
            servers_of(params["servers"]),
            None if start is None else start_of(start),
        )


class ServerEntry(TypedDict):
    """A server of a pool as a setting names it, with its slots."""

    url: str
    slots: NotRequired[int]


class StartDeclaration(TypedDict):
    """How to start a ComfyUI (``comfyui_start`` of a profile, whose values may arrive as text;
    ``comfyui.start_in_job`` of vidax.json): ``ServerStart`` as declared."""

    command: list[str]
    cwd: NotRequired[str | None]
    start_timeout_seconds: NotRequired[float | str]
    stop_seconds: NotRequired[float | str]
    cluster_only: NotRequired[bool]


class PoolParams(TypedDict):
    """A pool as a rule's params (``PoolSettings.as_params``)."""

    servers: list[ServerEntry]
    start: StartDeclaration | None


def servers_of(named: object) -> tuple[PoolServer, ...]:
    """The servers a setting names, as it was written: one URL, or a list of URLs and ``{"url", "slots"}``
    (the same URL twice counts once, with the larger slots)."""
    items = [named] if isinstance(named, str) else list(named) if isinstance(named, list | tuple) else []
    servers: dict[str, int] = {}
    for item in items:
        if isinstance(item, str):
            url, slots = item, 1
        elif isinstance(item, dict):
            url, slots = item["url"], int(item.get("slots", 1))
        else:
            continue
        url = str(url).rstrip("/")
        servers[url] = max(slots, servers.get(url, 0))
    return tuple(PoolServer(url, slots) for url, slots in servers.items())


def start_of(declared: StartDeclaration) -> ServerStart:
    """A start declaration (``comfyui_start`` of a profile, ``comfyui.start_in_job`` of vidax.json)."""
    cwd = declared.get("cwd")
    return ServerStart(
        tuple(str(part) for part in declared["command"]),
        None if cwd in (None, "", "None", "null") else str(cwd),  # a profile's values arrive as text
        float(declared.get("start_timeout_seconds", 300)),
        float(declared.get("stop_seconds", 10)),
        bool(declared.get("cluster_only", False)),
    )


def resolve_pool(job_url: object, profile: dict[str, Any], vidax: dict[str, Any]) -> PoolSettings:
    """The pool of a job's ComfyUI stage: the job's ``comfyui.url`` (one or several), else the profile's
    ``comfyui_servers`` (Snakemake ``config:``), else ``comfyui.servers`` of vidax.json, else its
    ``comfyui.url``. A start is the profile's ``comfyui_start``, else vidax.json's
    ``comfyui.start_in_job`` (which the stage uses only inside a cluster job)."""
    servers = servers_of(job_url or profile.get("comfyui_servers") or vidax.get("servers") or vidax["url"])
    start = None
    if profile.get("comfyui_start"):
        start = start_of(profile["comfyui_start"])
    elif vidax.get("start_in_job"):
        start = dataclasses.replace(start_of(vidax["start_in_job"]), cluster_only=True)
    return PoolSettings(servers, start)


def snakemake_jobs(servers: Iterable[PoolServer]) -> int:
    """How many ComfyUI jobs Snakemake may run at once (``resources: comfyui``): two for each prompt va
    keeps at a server, one with its prompt there and one started and waiting for the lease, so that a
    server never waits for Snakemake to start a job (2 s, and 5 s and more on a loaded machine)."""
    return sum(2 * server.leases for server in servers)


def pool_folder() -> Path:
    """Where the slots and the marks of failed servers are kept: shared by every run of this state dir
    (on a cluster the state dir must be on the filesystem the nodes share, as the workdir is)."""
    return state_dir() / "comfyui" / "pool"


def _waits_ahead(entry: os.DirEntry[str], queued_since: float) -> bool:
    """Whether a waiting unit's file is of a stage that began before ``queued_since`` and is fresh (a
    file its unit stopped touching, killed, is taken away)."""
    try:
        if float(entry.name.split("-", 1)[0]) >= queued_since:
            return False
        if time.time() - entry.stat().st_mtime < WAITING_FRESH_SECONDS:
            return True
        Path(entry.path).unlink(missing_ok=True)
    except (ValueError, OSError):
        pass
    return False


def _key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class Lease:
    """A slot of one server, held until ``release`` (or the process ends)."""

    def __init__(self, server: PoolServer, lock: Flock) -> None:
        self.server, self._lock = server, lock

    @property
    def url(self) -> str:
        return self.server.url

    def release(self) -> None:
        """Give the slot back (again: nothing)."""
        self._lock.release()


class ServerPool:
    """The slots of a pool's servers, shared by every process that uses the same folder."""

    def __init__(self, servers: tuple[PoolServer, ...], folder: Path | None = None) -> None:
        if not servers:
            raise ValueError("a pool needs at least one server")
        self.servers = servers
        self.folder = folder or pool_folder()
        self.folder.mkdir(parents=True, exist_ok=True)

    def _slot_lock(self, server: PoolServer, slot: int) -> Flock:
        return Flock(self.folder / f"{_key(server.url)}.{slot}.lock")

    def _mark(self, url: str) -> Path:
        return self.folder / f"{_key(url)}.down"

    def mark_down(self, url: str) -> None:
        """``url`` failed: left out of the next leases for ``DOWN_SECONDS`` (unless none other can take
        them)."""
        self._mark(url).touch()

    def is_down(self, url: str) -> bool:
        """Whether ``url`` failed less than ``DOWN_SECONDS`` ago."""
        try:
            return time.time() - self._mark(url).stat().st_mtime < DOWN_SECONDS
        except FileNotFoundError:
            return False

    def _try(self, servers: list[PoolServer]) -> Lease | None:
        for server in servers:
            for slot in range(server.leases):
                lock = self._slot_lock(server, slot)
                if lock.try_acquire():
                    return Lease(server, lock)
        return None

    def _free(self, avoid: str | None) -> Lease | None:
        up = [s for s in self.servers if not self.is_down(s.url)]
        random.shuffle(up)  # units waiting on several processes spread over equal servers
        up.sort(key=lambda s: s.url == avoid)
        lease = self._try(up) if up else None
        if lease is None and not up:
            lease = self._try(sorted(self.servers, key=lambda s: s.url == avoid))
        return lease

    def acquire(self, avoid: str | None = None, queued_since: float | None = None) -> Lease:
        """A free slot, waiting until there is one: of a server that did not fail in the last
        ``DOWN_SECONDS``; when every server failed lately, of any (the retry policy then paces the
        attempts). ``avoid``: the server the unit just failed on, taken only when no other has a slot.
        ``queued_since``: when the unit's stage began; a slot goes to the stage waiting longest, so that
        videos finish one after another and not all at the end (their next steps run meanwhile)."""
        if queued_since is None:
            return self._wait_for_slot(avoid)
        with self._in_line(queued_since) as ahead:
            return self._wait_for_slot(avoid, ahead)

    def _wait_for_slot(self, avoid: str | None, ahead: Callable[[], bool] | None = None) -> Lease:
        while True:
            behind = ahead is not None and ahead()
            if not behind:
                lease = self._free(avoid)
                if lease is not None:
                    return lease
            # A unit behind another stage's looks less often: the slots go to that stage first anyway.
            time.sleep(LEASE_POLL_SECONDS * (5 if behind else 1))

    @contextlib.contextmanager
    def _in_line(self, queued_since: float) -> Iterator[Callable[[], bool]]:
        """While a unit waits: its place in the line (a file of the pool folder named by when its stage
        began, kept fresh while it waits), and whether a stage that began earlier waits too."""
        line = self.folder / "waiting"
        line.mkdir(exist_ok=True)
        place = f"{queued_since:017.6f}"
        mine = line / f"{place}-{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"
        mine.touch()
        touched = time.monotonic()

        def ahead() -> bool:
            nonlocal touched
            now = time.monotonic()
            if now - touched > WAITING_FRESH_SECONDS / 4:
                mine.touch()
                touched = now
            return any(_waits_ahead(entry, float(place)) for entry in os.scandir(line))

        try:
            yield ahead
        finally:
            mine.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lease(self, avoid: str | None = None) -> Iterator[Lease]:
        """``acquire``, given back when the block ends, whatever way it ends."""
        held = self.acquire(avoid)
        try:
            yield held
        finally:
            held.release()

    def busy(self, url: str) -> int:
        """How many leases of ``url`` are taken now (prompts running or queued there)."""
        server = next(s for s in self.servers if s.url == url)
        taken = 0
        for slot in range(server.leases):
            lock = self._slot_lock(server, slot)
            if lock.try_acquire():
                lock.release()
            else:
                taken += 1
        return taken
