"""The ComfyUI stage: the target frames split into batches, each one prompt, each resumable.

A batch is submitted, watched over the websocket (``/history`` is polled as well, and alone when the
websocket is not available), and its outputs are downloaded with ``/view``: images into ``frames/``
numbered in batch order, videos into ``comfyui/clips/``. Then ``va.comfyui.assemble`` makes
``comfyui/output.mp4`` with exactly the target frames at the job's frame rate.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from va import media
from va.atomic import read_json, write_json_atomic
from va.comfyui.client import ComfyClient, ComfyOutputMissing, ComfyTransient, WsMessage, input_name
from va.comfyui.pool import FAILOVER_SECONDS, Lease, PoolSettings, ServerPool, resolve_pool
from va.comfyui.protocol import (
    ApiGraph,
    Attempt,
    BatchRecord,
    Collected,
    EventData,
    HistoryEntry,
    HistoryStatus,
    OutputFile,
)
from va.comfyui.starter import own_server
from va.comfyui.workflow import Workflow, graph_json, load_workflow, render
from va.errors import ExitCode, VaError
from va.events import read_events
from va.plan_parts import Batch, ComfyWait, Generation, batch_seed
from va.retry import RetryPolicy, retrying
from va.rule_settings import GenerationSettings
from va.tracking import unit_step
from va.workdir import Workdir

if TYPE_CHECKING:  # the job is read by the run's start (job_pool), never by a batch's rule
    from va.job import Job

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 1.0

Reporter = Callable[..., None]
T = TypeVar("T")
#: The record a unit of the pool makes (a batch's, a segment's).
Record = TypeVar("Record")


def graph_name(batch: str, attempt: int, fresh: bool = False) -> str:
    """The file of the graph rendered for ``attempt`` (0-based) of a batch: one per attempt, so the graphs
    of every retry (each with its own seed under ``per_retry``) are kept; ``fresh``: the resubmission
    after a cached answer pointed at deleted files."""
    return f"{batch}-a{attempt + 1}{'-fresh' if fresh else ''}.json"


def run_token(workdir: Path) -> str:
    """Six hex digits naming this run on the server: the random end of its run id (recorded by the run's
    start), else a digest of the workdir's path (a batch run outside a recorded run, e.g. in tests)."""
    started = (e for e in read_events(Workdir(workdir).events) if e.get("kind") == "run_started")
    run_id = next((str(e.get("run_id")) for e in started), None)
    if run_id:
        return run_id.rsplit("-", 1)[-1]
    return hashlib.sha256(str(workdir.absolute()).encode()).hexdigest()[:6]


def filename_prefix(token: str, workflow: Workflow, batch: str, attempt: int, fresh: bool = False) -> str:
    """The ``filename_prefix`` of one submission, unique to the run, the batch and the attempt: two runs
    never share output names, and ComfyUI cannot answer a retry from the cache of an earlier attempt."""
    return f"va_{token}_{workflow.id}_{batch}_a{attempt + 1}{'f' if fresh else ''}"


def job_pool(job: Job, profile: dict[str, Any] | None = None) -> PoolSettings:
    """The ComfyUI servers of a job's stage (va.comfyui.pool.resolve_pool): the job's ``comfyui.url``,
    else the profile's ``comfyui_servers``, else vidax.json's ``comfyui.servers`` or ``comfyui.url``."""
    from va.config import load_config  # noqa: PLC0415 - the run's start only: a rule loads no config schema

    return resolve_pool(job.comfyui.url, profile or {}, load_config("vidax").data["comfyui"])


def wait_of(generation: Generation) -> ComfyWait:
    """How patiently the stage of ``generation`` waits for its servers (planned with it)."""
    assert generation.wait is not None, "a planned generation says how long to wait"
    return generation.wait


def _first_workflow(generation: Generation) -> Workflow:
    return load_workflow(generation.workflow_ids[0])


class PromptWatch:
    """Waits for one prompt: websocket events when there are some, ``/history`` always."""

    def __init__(
        self,
        client: ComfyClient,
        settings: ComfyWait,
        prompt_id: str,
        report: Reporter,
        batch: str,
        *,
        failover: float | None = None,
    ) -> None:
        self.client, self.prompt_id, self.report, self.batch = client, prompt_id, report, batch
        self.poll = settings.poll_interval_ms / 1000
        self.stall = settings.stall_seconds
        # In a pool, a server that does not answer while our prompt runs is left for another sooner.
        self.outage_limit = self.stall if failover is None else min(self.stall, failover)
        self.deadline = time.monotonic() + settings.timeout_seconds
        self.timeout = settings.timeout_seconds
        self.last_progress = time.monotonic()
        self.last_report = 0.0
        self.outage_since: float | None = None
        self.outage_seen = False  # the server did not answer at some point of this wait
        self.back = False

    def _event(self, kind: str, data: EventData) -> None:
        if data.get("prompt_id") not in (None, self.prompt_id):
            return
        self.last_progress = time.monotonic()
        if kind == "execution_error":
            raise VaError(
                ExitCode.COMFYUI_FAILED,
                f"ComfyUI failed in node {data.get('node_id')} ({data.get('node_type')}): "
                f"{data.get('exception_type', 'error')}: {data.get('exception_message', '').strip()}",
            )
        if kind == "execution_interrupted":
            raise VaError(ExitCode.COMFYUI_FAILED, f"ComfyUI interrupted prompt {self.prompt_id}")
        if kind == "progress" and time.monotonic() - self.last_report >= PROGRESS_EVERY_SECONDS:
            self.last_report = time.monotonic()
            self.report(
                f"batch {self.batch}: node {data.get('node')} step {data.get('value')}/{data.get('max')}",
                kind="progress",
                batch=self.batch,
                value=data.get("value"),
                max=data.get("max"),
            )

    def _finished(self, message: WsMessage) -> bool:
        """Whether a websocket message says our prompt has ended (its history entry is there now)."""
        data = message.data
        if data.get("prompt_id") != self.prompt_id:
            return False
        return message.type == "execution_success" or (
            message.type == "executing" and data.get("node") is None
        )

    def _failed(self, entry: HistoryEntry) -> None:
        status = entry.get("status") or HistoryStatus()
        if status.get("status_str") != "error":
            return
        for name, data in status.get("messages", []):
            if name in ("execution_error", "execution_interrupted"):
                self._event(name, {**data, "prompt_id": self.prompt_id})
        raise VaError(ExitCode.COMFYUI_FAILED, f"ComfyUI reports prompt {self.prompt_id} failed")

    def _poll(self, ask: Callable[[], T]) -> T | None:
        """One request of the wait; an unreachable or failing server is waited out, not resubmitted to
        (our prompt may still be running there). ``None`` while the server does not answer."""
        try:
            answer = ask()
        except ComfyTransient as exc:
            now = time.monotonic()
            self.outage_since = self.outage_since or now
            self.outage_seen = True
            if now - self.outage_since > self.outage_limit:
                raise ComfyTransient(
                    f"{exc}; ComfyUI did not answer for {self.outage_limit:g} s while prompt "
                    f"{self.prompt_id} ran"
                ) from exc
            log.warning("%s; waiting for ComfyUI (prompt %s)", exc, self.prompt_id)
            time.sleep(self.poll)
            return None
        if self.outage_since is not None:
            self.back = True  # the first answer after an outage: is our prompt still there?
        self.outage_since = None
        return answer

    def wait(self) -> HistoryEntry:
        """The finished history entry; raises on failure, timeout or a lost prompt.

        Transient errors while waiting keep the wait going on the prompt we have. Only a server that
        was away and came back without our prompt (a restart: neither queued nor in its history) makes
        the batch resubmit (``ComfyTransient``)."""
        reconnects = 0
        while True:
            now = time.monotonic()
            if now > self.deadline:
                self.client.cancel(self.prompt_id)
                raise VaError(
                    ExitCode.COMFYUI_TIMEOUT,
                    f"batch {self.batch} not finished within {self.timeout:g} s; prompt {self.prompt_id} "
                    "cancelled",
                )
            if self.client.connected:
                try:
                    message = self.client.receive(self.poll)
                except ComfyTransient as exc:
                    log.warning("%s; polling /history while reconnecting", exc)
                    message = None
                if message is not None:
                    self._event(message.type, message.data)
                    if not self._finished(message):
                        continue  # drain events before the next poll
            else:
                time.sleep(self.poll)
                if reconnects < 3 and self.client.connect():
                    reconnects += 1
            answered, entry = self._history()
            if not answered:
                continue
            if entry is not None:
                self._failed(entry)
                return entry
            if self.back or time.monotonic() - self.last_progress > self.stall:
                self.back = False
                queued = self._poll(lambda: self.client.queued(self.prompt_id))
                if queued is None:
                    continue
                if queued:
                    self.last_progress = time.monotonic()  # waiting its turn is not a stall
                    continue
                if self.outage_seen:
                    raise ComfyTransient(
                        f"prompt {self.prompt_id} lost: ComfyUI went away and came back without it"
                    )
                self.client.cancel(self.prompt_id)
                raise VaError(
                    ExitCode.COMFYUI_TIMEOUT,
                    f"batch {self.batch}: no progress for {self.stall:g} s and prompt {self.prompt_id} "
                    "is not in ComfyUI's queue",
                )

    def _history(self) -> tuple[bool, HistoryEntry | None]:
        """(whether the server answered, our history entry if it has one)."""
        answered: list[HistoryEntry | None] = []

        def ask() -> bool:
            answered.append(self.client.history(self.prompt_id))
            return True

        if self._poll(ask) is None:
            return False, None
        return True, answered[0]


class Stopped(BaseException):
    """SIGTERM arrived (Snakemake or va stopping the run, a VIDAX cancel): the rule ends as on Ctrl-C."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped


@contextlib.contextmanager
def cancelled_when_stopped(client: ComfyClient, prompt: Callable[[], str | None]) -> Iterator[None]:
    """While the body runs, Ctrl-C or SIGTERM first cancels our in-flight prompt on the (shared) server,
    as a timeout does, then ends the rule."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_stopped) if in_main else None
    try:
        yield
    except (KeyboardInterrupt, Stopped):
        prompt_id = prompt()
        if prompt_id is not None:
            log.warning("stopped: cancelling prompt %s on ComfyUI", prompt_id)
            client.cancel(prompt_id)
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def check_clip(clip: Path, batch: Batch, gen_fps: float) -> media.ClipTiming:
    """A clip must hold exactly its batch's frames; its own rate may differ from the generation rate (a
    template whose video node keeps its fps), as the frames are retimed when assembled. Anything else
    (frames merged by an animated PNG or WebP encoder, a clip cut short or padded) fails the batch."""
    timing = media.clip_timing(clip)
    if timing.frames != batch.frames:
        planned = batch.frames / gen_fps
        raise VaError(
            ExitCode.COMFYUI_FAILED,
            f"batch {batch.name}: clip {clip.name} has {timing.frames} frames at {timing.fps:g} fps "
            f"where {batch.frames} frames at {gen_fps:g} fps ({planned:.2f} s) were planned",
        )
    if timing.fps and abs(timing.fps - gen_fps) > 1e-3:
        log.info(
            "batch %s: clip at %g fps, retimed to the generation rate %g fps", batch.name, timing.fps, gen_fps
        )
    return timing


def output_files(entry: HistoryEntry) -> tuple[list[OutputFile], list[OutputFile]]:
    """A finished prompt's output files, in node order: videos (``images`` with ``animated``, or
    VideoHelperSuite's ``gifs``) and images."""
    videos: list[OutputFile] = []
    images: list[OutputFile] = []
    outputs = entry.get("outputs") or {}
    for node_id in sorted(outputs, key=lambda key: (len(key), key)):
        output = outputs[node_id]
        animated = any(output.get("animated") or [])
        for item in output.get("gifs", []):
            videos.append(item)
        for item in output.get("images", []):
            if item.get("type", "output") != "output":
                continue
            (videos if animated else images).append(item)
    return videos, images


def collect_outputs(
    client: ComfyClient,
    entry: HistoryEntry,
    batch: Batch,
    frames_dir: Path,
    clips_dir: Path,
    *,
    gen_fps: float,
) -> Collected:
    """Download a finished prompt's outputs: a video (``images`` with ``animated``, or ``gifs``), checked
    against its batch, or frames."""
    videos, images = output_files(entry)
    if videos:
        item = videos[0]
        target = clips_dir / f"{batch.name}{Path(item['filename']).suffix or '.mp4'}"
        client.download(item, target)
        timing = check_clip(target, batch, gen_fps)
        return {"kind": "video", "files": [str(target)], "clip_frames": timing.frames, "clip_fps": timing.fps}
    if not images:
        raise VaError(ExitCode.COMFYUI_FAILED, f"batch {batch.name}: the prompt produced no image or video")
    if len(images) != batch.frames:
        raise VaError(
            ExitCode.COMFYUI_FAILED,
            f"batch {batch.name}: ComfyUI returned {len(images)} images where {batch.frames} were asked for",
        )
    targets = [frames_dir / f"{batch.first + offset + 1:06d}.png" for offset in range(len(images))]
    client.download_all(list(zip(images, targets, strict=True)))
    return {"kind": "frames", "files": [str(target) for target in targets]}


def run_batch(
    settings: GenerationSettings,
    name: str,
    *,
    still: Path,
    result: Path,
    workdir: Path,
    report: Reporter,
    servers: StageServers,
) -> BatchRecord:
    """Generate one batch: submit, wait, collect, with retries of transient failures (va.retry: at least
    ``comfyui.retries`` more attempts, and more until ``comfyui.unavailable_seconds`` have passed since
    the first failure). Each attempt takes a slot of a server of the pool (another one than a server
    that just failed, when one is free). ``servers``: the stage's, shared by its batches."""
    batch = _BatchRun(settings.generation, name, still=still, workdir=workdir, report=report, servers=servers)
    document = with_retries(wait_of(settings.generation), f"batch {name}", batch, report, servers, batch=name)
    write_json_atomic(result, document)
    return document


def with_retries(
    wait: ComfyWait,
    what: str,
    unit: PromptUnit[Record],
    report: Reporter,
    servers: StageServers,
    **where: str,
) -> Record:
    """``unit.attempt(n)`` (n from 0) until it returns, retrying ``ComfyTransient`` with va's one retry
    policy: at least ``comfyui.retries`` more attempts, and more until ``comfyui.unavailable_seconds`` have
    passed since the first failure; each wait is a ``comfyui_waiting`` event naming ``what`` (``batch
    0003``, ``segment 0003``) and the server that failed."""
    policy = RetryPolicy(wait.retries + 1, seconds=wait.unavailable_seconds)

    def tell(number: int, pause: float, error: BaseException) -> None:
        next_try = datetime.now() + timedelta(seconds=pause)
        report(
            f"waiting for ComfyUI at {unit.failed_on} ({error}); {what} tries again in "
            f"{pause:.1f} s, at {next_try:%H:%M:%S}",
            level="warning",
            kind="comfyui_waiting",
            attempt=number,
            next_try_seconds=round(pause, 3),
            server=unit.failed_on,
            **where,
        )

    started = time.monotonic()
    retry = retrying(policy, ComfyTransient, before_sleep=tell)
    try:
        for trial in retry:
            with trial:
                return unit.attempt(trial.retry_state.attempt_number - 1)
    except ComfyTransient as exc:
        raise VaError(
            ExitCode.COMFYUI_UNAVAILABLE,
            f"ComfyUI at {servers.described} unavailable: {what} failed "
            f"{retry.statistics['attempt_number']} time(s) in {time.monotonic() - started:.0f} s; "
            f"last: {exc}",
        ) from None
    raise AssertionError("unreachable: tenacity either returns or raises")


def submit_graph(
    client: ComfyClient,
    graph: ApiGraph,
    graph_file: Path,
    *,
    report: Reporter,
    what: str,
    where: Attempt,
    submitted: Callable[[str], None] | None = None,
) -> str:
    """Keep the rendered graph in ``graph_file``, submit it over the stage's connection (its websocket
    opened first) and report it as ``what`` (``batch 0003``); returns the prompt id. ``submitted`` is
    told the id as soon as the server has answered (a stop from then on cancels it)."""
    graph_file.write_text(graph_json(graph), encoding="utf-8")
    if not client.connected:
        client.connect()
    prompt_id = client.submit(graph)
    if submitted is not None:
        submitted(prompt_id)
    report(
        f"{what}: prompt {prompt_id} submitted (attempt {where['attempt']}, seed {where['seed']})",
        **where,
        prompt_id=prompt_id,
        outcome="submitted",
    )
    return prompt_id


class StageServers:
    """The servers of one stage: the pool's slots, and one connection (``ComfyServer``) a server, kept for
    all the stage's batches."""

    def __init__(
        self,
        settings: PoolSettings,
        pool: ServerPool | None = None,
        began: float | None = None,
        turn: threading.Lock | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool or ServerPool(settings.servers)
        self.connections: dict[str, ComfyServer] = {}
        #: When the stage began: its units take slots before those of stages that began later.
        self.began = time.time() if began is None else began
        #: Held while one of the stage's units waits for a slot: its other units wait on this lock, at no
        #: cost, instead of each looking at the pool's folder 50 times a second (which cost the stages of a
        #: batch of 8 videos about 0.1 s of CPU a second of waiting).
        self.turn = turn or threading.Lock()
        #: The prompt this set of connections has at a server now (cancelled when the stage is stopped).
        self.in_flight: tuple[ComfyClient, str] | None = None

    @property
    def described(self) -> str:
        """The pool's URLs, for an error line."""
        urls = [server.url for server in self.settings.servers]
        return urls[0] if len(urls) == 1 else f"every server of the pool ({', '.join(urls)})"

    @property
    def failover(self) -> float | None:
        """How long a server may not answer while it runs our prompt (None: one server, waited for)."""
        return FAILOVER_SECONDS if len(self.settings.servers) > 1 else None

    def of(self, url: str) -> ComfyServer:
        """The connection to ``url``."""
        if url not in self.connections:
            self.connections[url] = ComfyServer(url)
        return self.connections[url]

    def stopping_cancels(self, client: ComfyClient, prompt_id: str) -> None:
        """``prompt_id`` was submitted over ``client``: the prompt ``cancel_in_flight`` cancels."""
        self.in_flight = (client, prompt_id)

    def cancel_in_flight(self) -> None:
        """Cancel the prompt in flight, if there is one (the stage is being stopped)."""
        if self.in_flight is not None:
            client, prompt_id = self.in_flight
            log.warning("stopped: cancelling prompt %s on ComfyUI", prompt_id)
            client.cancel(prompt_id)

    def close(self) -> None:
        """Close every websocket."""
        for server in self.connections.values():
            server.client.close()


class ComfyServer:
    """One server of a stage: one client (its connection pool, websocket and client id) for all the
    batches it runs, and the version the server reported (asked once)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = ComfyClient(url)
        self.version: str | None = None
        self.asked = False

    def ask_version(self) -> str | None:
        """``comfyui_version`` of ``/system_stats``, asked at the first attempt of the stage (and again
        after a failure, as the server may have been replaced)."""
        if not self.asked:
            self.version = self.client.system_stats().get("system", {}).get("comfyui_version")
            self.asked = True
        return self.version

    def failed(self) -> None:
        """After a transient failure: a fresh websocket, and nothing assumed about the server's files."""
        self.client.close()
        self.client.forget_inputs()
        self.asked = False


def batch_fingerprint(generation: Generation, batch: Batch, still: Path) -> str:
    """What a batch's frames depend on: the graph of its first attempt, without the output prefix, with
    the start image's content. A batch result of another fingerprint is made again (an edited job)."""
    workflow = _first_workflow(generation)
    values = {**generation.values(batch, batch.seed), "filename_prefix": "va"}
    if workflow.binds_start_image:
        values["start_image"] = input_name(still)
    graph = graph_json(render(workflow, values))
    return hashlib.sha256(f"{batch.first}:{graph}".encode()).hexdigest()[:16]


def batch_done(result: Path, fingerprint: str) -> bool:
    """Whether ``result`` records a batch of ``fingerprint`` whose files are all there."""
    if not result.exists():
        return False
    document: BatchRecord = read_json(result)
    return document.get("fingerprint") == fingerprint and all(Path(f).exists() for f in document["files"])


def run_batches(
    settings: GenerationSettings,
    *,
    still: Path,
    generated: Path,
    workdir: Workdir,
    logs: Path,
    pool: PoolSettings,
) -> None:
    """Every batch of the plan not made yet, side by side on the pool (as many at once as the pool keeps
    prompts, each on a free server, a set of connections each), each recorded as a ``comfyui_batch``
    step of its own (events, log, ``comfyui/batches/NNNN.json``); then ``generated`` lists the batch
    results in order. A batch result left by a killed run is kept when its fingerprint still matches,
    so a resumed run submits only the missing batches. ``pool``: the rule's; when it declares a start,
    the stage runs on a ComfyUI it starts for itself and stops at its end (va.comfyui.starter)."""
    generation = settings.generation
    missing = [
        batch
        for batch in generation.batches
        if not batch_done(workdir.batch_result(batch.name), batch_fingerprint(generation, batch, still))
    ]
    with own_server(pool, workdir, logs) as (used, private):
        crew = BatchCrew(settings, still=still, workdir=workdir, logs=logs, used=used, pool=private)
        crew.run(missing)
    results = [str(workdir.batch_result(batch.name)) for batch in generation.batches]
    write_json_atomic(generated, {"batches": results})


class BatchCrew:
    """The missing batches of one stage, made by as many threads as the pool keeps prompts (its servers'
    leases; one batch, one thread): a video's batches spread over every server of the pool, not one
    after another on one. Each thread has its own connections; a batch that fails ends the stage once
    the batches already running have ended (their results kept for a resumed run)."""

    def __init__(
        self,
        settings: GenerationSettings,
        *,
        still: Path,
        workdir: Workdir,
        logs: Path,
        used: PoolSettings,
        pool: ServerPool | None,
    ) -> None:
        self.settings, self.still, self.workdir, self.logs = settings, still, workdir, logs
        self.used, self.pool = used, pool
        self.began = time.time()
        self.waiting: list[Batch] = []
        self.crews: list[StageServers] = []
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.turn = threading.Lock()  # one thread at a time waits for a slot of the pool

    def run(self, missing: list[Batch]) -> None:
        """Make ``missing``; the first batch's error (a ``VaError``: the rule ends with its code) once every
        thread has ended. Stopped (SIGTERM, Ctrl-C), it cancels the prompts in flight and ends at once."""
        self.waiting = list(reversed(missing))
        threads = [
            threading.Thread(target=self._work, name=f"batches-{n}", daemon=True)
            for n in range(min(len(missing), sum(server.leases for server in self.used.servers)))
        ]
        previous = signal.signal(signal.SIGTERM, _raise_stopped) if _in_main_thread() else None
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except (KeyboardInterrupt, Stopped):
            with self.lock:
                self.waiting.clear()
            for servers in list(self.crews):
                servers.cancel_in_flight()
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if self.errors:
            error = self.errors[0]
            if isinstance(error, VaError):
                sys.exit(int(error.code))
            raise error

    def _next(self) -> Batch | None:
        with self.lock:
            return self.waiting.pop() if self.waiting and not self.errors else None

    def _work(self) -> None:
        servers = StageServers(self.used, self.pool, began=self.began, turn=self.turn)
        with self.lock:
            self.crews.append(servers)
        try:
            while (batch := self._next()) is not None:
                name = batch.name
                log_file = self.logs / f"{name}.log"
                with unit_step("comfyui_batch", log_file, name, self.workdir) as report:
                    run_batch(
                        self.settings,
                        name,
                        still=self.still,
                        result=self.workdir.batch_result(name),
                        workdir=self.workdir.root,
                        report=report,
                        servers=servers,
                    )
        except BaseException as exc:  # handed to the main thread, which raises it
            with self.lock:
                self.errors.append(exc)
        finally:
            servers.close()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class PromptUnit(Generic[Record]):
    """What makes one unit (a batch, a segment) on the pool: each attempt takes a slot of a server (another
    server than the one that just failed, when one is free) and submits one prompt there
    (``_submit_and_collect``, of the subclass); its outcome is reported here, the same for every kind."""

    servers: StageServers
    report: Reporter
    failed_on: str | None = None  # the server of the last failed attempt
    #: The prompt of the attempt under way once submitted (cancelled if the rule is stopped).
    prompt_id: str | None = None

    @property
    def what(self) -> str:
        """The unit in a message: ``batch 0003``, ``segment 0003``."""
        raise NotImplementedError

    def attempt(self, attempt: int) -> Record:
        """One attempt (0-based): its document, or ``ComfyTransient`` to try again. A cached answer whose
        files were deleted is submitted once more within the attempt, with a prefix the cache has not seen."""
        try:
            return self._leased(attempt, fresh=False)
        except ComfyOutputMissing:
            return self._leased(attempt, fresh=True)

    def _leased(self, attempt: int, *, fresh: bool) -> Record:
        """One submission on a slot of the pool: another server than the one that just failed if one is
        free; a server that fails is marked, so that the next units go elsewhere for a while. The slot is
        given back as soon as the prompt has ended (or failed), before its outputs are downloaded."""
        with self.servers.turn:
            lease = self.servers.pool.acquire(avoid=self.failed_on, queued_since=self.servers.began)
        try:
            return self._reported(attempt, lease, fresh=fresh)
        except ComfyTransient:
            self.failed_on = lease.url
            self.servers.pool.mark_down(lease.url)
            raise
        finally:
            lease.release()

    def _reported(self, attempt: int, lease: Lease, *, fresh: bool) -> Record:
        """``_submit_and_collect`` on ``lease``'s server, its outcome a ``comfyui_attempt`` event (``where``:
        the unit, the attempt, its seed and server); Ctrl-C or SIGTERM first cancels the prompt submitted."""
        server = self.servers.of(lease.url)
        client, what, number = server.client, self.what, attempt + 1
        where = self._where(attempt, lease.url)
        self.prompt_id = None
        with cancelled_when_stopped(client, lambda: self.prompt_id):
            try:
                record, done = self._submit_and_collect(attempt, lease, server, where, fresh=fresh)
            except ComfyOutputMissing as exc:
                # Not ``fresh``: ComfyUI answered an identical graph from its cache, naming deleted files.
                self._tell(
                    f"{what}: attempt {number} failed: {exc.message}"
                    if fresh
                    else f"{what}: {exc.message}, a cached answer; resubmitting with a fresh prefix",
                    "error" if fresh else "warning",
                    where,
                    "failed" if fresh else "stale_cache",
                    exc.message,
                )
                raise
            except ComfyTransient as exc:
                server.failed()
                self._tell(f"{what}: attempt {number} failed: {exc}", "warning", where, "transient", str(exc))
                raise
            except VaError as exc:
                self._tell(
                    f"{what}: attempt {number} failed: {exc.message}", "error", where, "failed", exc.message
                )
                raise
            except BaseException:
                client.close()  # a websocket in an unknown state is not reused
                raise
        self.report(
            f"{what}: {done} from prompt {self.prompt_id}",
            **where,
            prompt_id=self.prompt_id,
            outcome="succeeded",
            comfyui_version=server.version,
        )
        return record

    def _tell(self, message: str, level: str, where: Attempt, outcome: str, error: str) -> None:
        self.report(message, level=level, **where, prompt_id=self.prompt_id, outcome=outcome, error=error)

    def _where(self, attempt: int, url: str) -> Attempt:
        """What each event of ``attempt`` on ``url`` carries: the unit, the attempt (from 1), seed, server."""
        raise NotImplementedError

    def _submit_and_collect(
        self, attempt: int, lease: Lease, server: ComfyServer, where: Attempt, *, fresh: bool
    ) -> tuple[Record, str]:
        """Submit the unit's prompt to ``server`` (setting ``prompt_id``), wait for it, give ``lease`` back
        and collect its outputs: the unit's record, and what was made for the message of its success."""
        raise NotImplementedError


class _BatchRun(PromptUnit[BatchRecord]):
    """The attempts of one batch: each renders, submits, waits for and collects one prompt."""

    def __init__(
        self,
        generation: Generation,
        name: str,
        *,
        still: Path,
        workdir: Path,
        report: Reporter,
        servers: StageServers,
    ) -> None:
        self.generation, self.name = generation, name
        self.still, self.workdir, self.report, self.servers = still, workdir, report, servers
        self.failed_on = None  # the server of the last failed attempt
        self.batch = next(b for b in generation.batches if b.name == name)
        self.workflow = _first_workflow(generation)
        self.graphs = workdir / "comfyui" / "graphs"
        self.graphs.mkdir(parents=True, exist_ok=True)
        self.token = run_token(workdir)
        self.fingerprint = batch_fingerprint(generation, self.batch, still)

    @property
    def what(self) -> str:
        return f"batch {self.name}"

    def _where(self, attempt: int, url: str) -> Attempt:
        generation = self.generation
        seed = batch_seed(generation.seed, self.batch.index, attempt, generation.per_retry)
        return {
            "kind": "comfyui_attempt",
            "batch": self.name,
            "attempt": attempt + 1,
            "seed": seed,
            "server": url,
        }

    def _submit_and_collect(
        self, attempt: int, lease: Lease, server: ComfyServer, where: Attempt, *, fresh: bool
    ) -> tuple[BatchRecord, str]:
        name, batch, generation, client = self.name, self.batch, self.generation, server.client
        seed = where["seed"]
        version = server.ask_version()
        values = generation.values(batch, seed)
        values["filename_prefix"] = filename_prefix(self.token, self.workflow, name, attempt, fresh)
        if self.workflow.binds_start_image:
            values["start_image"] = client.upload_image(self.still.absolute())
        graph_file = self.graphs / graph_name(name, attempt, fresh)
        self.prompt_id = prompt_id = submit_graph(
            client,
            render(self.workflow, values),
            graph_file,
            report=self.report,
            what=self.what,
            where=where,
            submitted=lambda submitted_id: self.servers.stopping_cancels(client, submitted_id),
        )
        watch = PromptWatch(
            client, wait_of(generation), prompt_id, self.report, name, failover=self.servers.failover
        )
        entry = watch.wait()
        self.servers.in_flight = None
        lease.release()  # the server is free for the next unit while this one downloads
        collected = collect_outputs(
            client,
            entry,
            batch,
            self.workdir / "frames",
            self.workdir / "comfyui" / "clips",
            gen_fps=generation.fps,
        )
        record: BatchRecord = {
            "batch": name,
            "seed": seed,
            "attempts": attempt + 1,
            "prompt_id": prompt_id,
            "server": lease.url,
            "comfyui_version": version,
            "workflow": self.workflow.id,
            "graph": str(graph_file.relative_to(self.workdir)),
            "fingerprint": self.fingerprint,
            **collected,
        }
        return record, f"{len(collected['files'])} file(s)"
