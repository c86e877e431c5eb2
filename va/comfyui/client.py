"""A client of ComfyUI's HTTP and websocket protocol (as recorded from a v0.26 server).

Transport problems (connection refused, timeouts, 5xx) raise ``ComfyTransient``; callers retry them.
A 400 from ``/prompt`` raises ``VaError(COMFYUI_REJECTED)`` with the node errors in one readable line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mimetypes
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import requests
import websocket

from va.atomic import scratch_folder, stream_to_file
from va.comfyui.protocol import (
    ApiGraph,
    ErrorInfo,
    EventData,
    HistoryEntry,
    Job,
    JsonValue,
    OutputFile,
    PromptError,
    Queue,
    QueueItem,
    Rejection,
    SystemStats,
    Upload,
    WsFrame,
)
from va.errors import ExitCode, VaError
from va.retry import POST_RETRYABLE_STATUS, sent_nowhere

log = logging.getLogger(__name__)
TIMEOUTS = (5, 60)
#: The ``status`` of an ``/api/jobs`` job that has ended (``cancelled``: interrupted; servers older than
#: that status report an interrupted job as ``failed``).
FINISHED_JOB = ("completed", "failed", "cancelled")
#: Output files of one prompt fetched at the same time.
DOWNLOADS_AT_ONCE = 4


class ComfyTransient(Exception):
    """A failure worth retrying: the server is unreachable, overloaded, or dropped the connection."""


class ComfyOutputMissing(VaError):
    """An output the server named is not there (``/view`` 404): a cached answer whose files were deleted."""

    def __init__(self, filename: str, status: int) -> None:
        super().__init__(ExitCode.COMFYUI_FAILED, f"ComfyUI has no output file {filename} (HTTP {status})")


@dataclass(frozen=True)
class WsMessage:
    """One text frame of the websocket: its type and data."""

    type: str
    data: EventData


def describe_rejection(body: Rejection | None) -> str:
    """ComfyUI's 400 answer as one line: the error, then each node's errors (id, class, input, message)."""
    if not isinstance(body, dict):
        return "ComfyUI rejected the prompt"
    raw = body.get("error")
    error = raw if isinstance(raw, dict) else PromptError()
    parts = [str(error.get("message") or error.get("type") or "rejected")]
    extra = error.get("extra_info") or ErrorInfo()
    if extra.get("node_id"):
        parts.append(f"node {extra['node_id']} ({extra.get('class_type', '?')})")
    for node_id, node in sorted((body.get("node_errors") or {}).items()):
        for item in node.get("errors", []):
            field = (item.get("extra_info") or ErrorInfo()).get("input_name", "?")
            detail = item.get("details") or ""
            parts.append(
                f"node {node_id} ({node.get('class_type', '?')}) input {field}: {item.get('message')}"
                + (f" ({detail})" if detail else "")
            )
    return "; ".join(parts)


class ComfyClient:
    """One ComfyUI server, one client id (the websocket's and the prompts')."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self._ws: websocket.WebSocket | None = None
        # One connection pool for every request of the stage (keep-alive), large enough for the
        # parallel downloads.
        self._http = requests.Session()
        pool = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=DOWNLOADS_AT_ONCE)
        self._http.mount("http://", pool)
        self._http.mount("https://", pool)
        # What requests takes from the environment (proxies and no_proxy, a CA bundle, a .netrc login),
        # read once for this server, by requests' own functions: requests reads it again at every request
        # otherwise, walking the whole environment twice (80 requests a video of four 16-frame batches).
        found = self._http.merge_environment_settings(self.url, {}, None, None, None)
        self._http.proxies, self._http.verify = found["proxies"], found["verify"]
        self._http.auth = requests.utils.get_netrc_auth(self.url)
        self._http.trust_env = False
        self._inputs: set[str] = set()  # input files the server was seen to hold
        self._jobs_api: bool | None = None  # whether the server offers /api/jobs: probed once
        self._jobs_cancel = True  # whether POST /api/jobs/{id}/cancel exists there (until a 404 says not)
        self._known: set[str] = set()  # the prompts the server told us it queued
        self._unanswered = False  # the last POST /prompt was sent, and its answer lost

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, int] | None = None,
        json: JsonValue = None,
        files: dict[str, tuple[str, BinaryIO, str]] | None = None,
        data: dict[str, str] | None = None,
    ) -> requests.Response:
        try:
            response = self._http.request(
                method,
                self.url + path,
                params=params,
                json=json,
                files=files,
                data=data,
                timeout=TIMEOUTS,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ComfyTransient(f"{method} {path}: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise ComfyTransient(f"{method} {path}: HTTP {response.status_code}")
        return response

    def system_stats(self) -> SystemStats:
        """``GET /system_stats``."""
        response = self._request("GET", "/system_stats")
        data: SystemStats = response.json() if response.ok else {}
        return data

    def submit(self, graph: ApiGraph) -> str:
        """``POST /prompt``; returns the prompt id.

        A POST is not repeated blindly (va.retry): when its answer was lost after it was sent (a read
        timeout, a dropped connection, a gateway's 502/504), the server may have queued it. The next
        submit of this client first looks for a prompt of its client id that it was never told of (in
        ``/queue``, then the recent ``/history``) and takes that one instead of queueing a second."""
        if self._unanswered:
            adopted = self._unanswered_prompt()
            self._unanswered = False
            if adopted is not None:
                log.warning(
                    "POST /prompt was not answered, but ComfyUI holds prompt %s: waiting on it", adopted
                )
                self._known.add(adopted)
                return adopted
        body = {"prompt": graph, "client_id": self.client_id}
        try:
            response = self._http.post(self.url + "/prompt", json=body, timeout=TIMEOUTS)
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._unanswered = not sent_nowhere(exc)
            raise ComfyTransient(f"POST /prompt: {type(exc).__name__}") from exc
        if response.status_code == 400:
            rejection: Rejection | None
            try:
                rejection = response.json()
            except ValueError:
                rejection = None
            raise VaError(
                ExitCode.COMFYUI_REJECTED, f"ComfyUI rejected the prompt: {describe_rejection(rejection)}"
            )
        if not response.ok:
            self._unanswered = response.status_code not in POST_RETRYABLE_STATUS
            raise ComfyTransient(f"POST /prompt: HTTP {response.status_code}")
        prompt_id = str(response.json()["prompt_id"])
        self._known.add(prompt_id)
        return prompt_id

    def _unanswered_prompt(self) -> str | None:
        """A prompt of this client id the server holds (queued, running or in its last 64 history
        entries) that no answer told us of: what an unanswered ``POST /prompt`` queued."""

        def ours(item: JsonValue) -> str | None:
            if not isinstance(item, list) or len(item) < 4 or not isinstance(extra := item[3], dict):
                return None
            prompt_id = str(item[1])
            mine = extra.get("client_id") == self.client_id and prompt_id not in self._known
            return prompt_id if mine else None

        queue: Queue = self._request("GET", "/queue").json()
        for item in [*(queue.get("queue_running") or []), *(queue.get("queue_pending") or [])]:
            if found := ours(item):
                return found
        history = self._request("GET", "/history", params={"max_items": 64})
        entries: dict[str, HistoryEntry] = history.json() if history.ok else {}
        for entry in entries.values() if isinstance(entries, dict) else []:
            if found := ours((entry or HistoryEntry()).get("prompt")):
                return found
        return None

    def jobs_api(self) -> bool:
        """Whether the server offers ``/api/jobs`` (newer ComfyUI): asked once (``GET /api/jobs?limit=1``
        answers ``{"jobs": [...]}``; an older server has no such route, 404)."""
        if self._jobs_api is None:
            response = self._request("GET", "/api/jobs", params={"limit": 1})
            try:
                body = response.json() if response.ok else None
            except ValueError:
                body = None
            self._jobs_api = isinstance(body, dict) and isinstance(body.get("jobs"), list)
            log.info("ComfyUI %s /api/jobs", "offers" if self._jobs_api else "has no")
        return self._jobs_api

    def job(self, prompt_id: str) -> Job | None:
        """``GET /api/jobs/{id}``: the job (``status`` pending, in_progress, completed, failed or cancelled;
        an ended one with ``outputs`` and ``execution_status``, its history entry's ``status``), or None
        when the server does not know it (404)."""
        response = self._request("GET", f"/api/jobs/{prompt_id}")
        if response.status_code == 404:
            return None
        data: Job | None = response.json() if response.ok else None
        return data if isinstance(data, dict) else None

    def history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished history entry of ``prompt_id`` (``outputs``, ``status``), or None while it is
        queued, running or unknown: from ``/api/jobs/{id}`` when offered, else ``/history/{id}``."""
        if self.jobs_api():
            job = self.job(prompt_id)
            if job is None or job.get("status") not in FINISHED_JOB:
                return None
            return {"outputs": job.get("outputs") or {}, "status": job.get("execution_status") or {}}
        response = self._request("GET", f"/history/{prompt_id}")
        data: dict[str, HistoryEntry] = response.json() if response.ok else {}
        entry = data.get(prompt_id) if isinstance(data, dict) else None
        return entry if isinstance(entry, dict) else None

    def queue_ids(self) -> tuple[set[str], set[str]]:
        """The prompt ids in ``/queue``: (running, pending)."""
        data: Queue = self._request("GET", "/queue").json()

        def ids(items: list[QueueItem] | None) -> set[str]:
            return {str(item[1]) for item in items or [] if isinstance(item, list) and len(item) > 1}

        return ids(data.get("queue_running")), ids(data.get("queue_pending"))

    def queued(self, prompt_id: str) -> bool:
        """Whether ``prompt_id`` is running or pending (``/api/jobs/{id}`` when offered, else ``/queue``)."""
        if self.jobs_api():
            job = self.job(prompt_id)
            return job is not None and job.get("status") in ("pending", "in_progress")
        running, pending = self.queue_ids()
        return prompt_id in running | pending

    def cancel(self, prompt_id: str) -> None:
        """Stop our prompt and only ours: ``POST /api/jobs/{id}/cancel`` when the server has it (answers
        ``{"cancelled": bool}``, false for a prompt that has ended); else ``POST /queue {"delete": [id]}``
        while it is pending, then ``POST /interrupt {"prompt_id": id}``, which a server interrupts only if
        that prompt is running. ComfyUI had ``/api/jobs`` before it had the cancel route: a 404 or 405
        there means the older way, for this and every later cancel."""
        try:
            if self.jobs_api() and self._jobs_cancel:
                response = self._request("POST", f"/api/jobs/{prompt_id}/cancel")
                if response.status_code not in (404, 405):
                    return
                log.info("ComfyUI has /api/jobs but no cancel route: cancelling via /queue and /interrupt")
                self._jobs_cancel = False
            running, pending = self.queue_ids()
            if prompt_id in pending:
                self._request("POST", "/queue", json={"delete": [prompt_id]})
                running, pending = self.queue_ids()  # it may have started before the delete arrived
            # Servers older than the prompt-scoped interrupt ignore the body and stop whatever runs, so
            # the interrupt is not sent while another client's prompt is the one running.
            if prompt_id in running or not running:
                self._request("POST", "/interrupt", json={"prompt_id": prompt_id})
        except ComfyTransient as exc:
            log.warning("cancelling prompt %s failed: %s", prompt_id, exc)

    def upload_image(self, path: Path, *, ask_first: bool = True) -> str:
        """Put ``path`` in the server's input folder; returns the name to bind in a graph.

        ComfyUI keeps uploads by file name (``overwrite`` replaces one of the same name), and the
        input folder is shared by every client of the server. The name is derived from the content,
        ``va-<sha256[:16]>.png``, so two runs never replace each other's picture, and an image the
        server already holds (``HEAD /view``) is not sent again; without ``ask_first`` (a file made for
        this prompt, which the server cannot have yet) it is sent at once. Any file goes this way
        (``LoadAudio`` and ``LoadVideo`` read the same folder): a voice is ``va-<digest>.wav``, a video
        ``.mp4``.
        """
        name = input_name(path)
        if name in self._inputs or (ask_first and self._has_input(name)):
            self._inputs.add(name)
            return name
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        with open(path, "rb") as handle:
            files: dict[str, tuple[str, BinaryIO, str]] = {"image": (name, handle, kind)}
            response = self._request("POST", "/upload/image", files=files, data={"overwrite": "true"})
        if not response.ok:
            raise VaError(
                ExitCode.COMFYUI_FAILED,
                f"ComfyUI refused the upload of {path.name}: HTTP {response.status_code}",
            )
        data: Upload = response.json()
        subfolder = data.get("subfolder") or ""
        stored = f"{subfolder}/{data['name']}" if subfolder else str(data["name"])
        self._inputs.add(stored)
        return stored

    def _has_input(self, name: str) -> bool:
        """Whether the server's input folder holds ``name`` already."""
        params = {"filename": name, "subfolder": "", "type": "input"}
        try:
            response = self._http.head(self.url + "/view", params=params, timeout=TIMEOUTS)
        except (requests.ConnectionError, requests.Timeout):
            return False  # the upload itself reports an unreachable server
        return response.status_code == 200

    def download(self, item: OutputFile, target: Path, scratch: Path | None = None) -> None:
        """``GET /view`` of one output file into ``target`` (streamed, written under a temporary name, in
        ``scratch`` when given: ``va.atomic.stream_to_file``)."""
        params = {
            "filename": item["filename"],
            "subfolder": item.get("subfolder", ""),
            "type": item.get("type", "output"),
        }
        try:
            response = self._http.get(self.url + "/view", params=params, timeout=TIMEOUTS, stream=True)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ComfyTransient(f"GET /view: {type(exc).__name__}") from exc
        with response:
            if response.status_code >= 500:
                raise ComfyTransient(f"GET /view: HTTP {response.status_code}")
            if response.status_code != 200:
                raise ComfyOutputMissing(str(item["filename"]), response.status_code)
            stream_to_file(target, response.iter_content(chunk_size=1 << 20), scratch=scratch)

    def download_all(self, items: list[tuple[OutputFile, Path]]) -> None:
        """``download`` of every (item, target), ``DOWNLOADS_AT_ONCE`` at a time; the first error is raised
        once all have ended. Targets of one folder (a batch's frames) are written in one scratch folder."""
        if not items:
            return
        one_folder = len({target.parent for _, target in items}) == 1
        with contextlib.ExitStack() as stack:
            scratch = stack.enter_context(scratch_folder(items[0][1])) if one_folder else None
            with ThreadPoolExecutor(max_workers=DOWNLOADS_AT_ONCE) as pool:
                for done in [pool.submit(self.download, item, target, scratch) for item, target in items]:
                    done.result()

    def forget_inputs(self) -> None:
        """Ask the server again about its input files and routes (a restarted server may have lost its
        uploads, or be another version)."""
        self._inputs.clear()
        self._jobs_api = None
        self._jobs_cancel = True

    def connect(self) -> bool:
        """Open the websocket for this client id; False when the server offers none."""
        parsed = urlparse(self.url)
        scheme = "wss" if parsed.scheme == "https" else "ws"
        try:
            self._ws = websocket.create_connection(
                f"{scheme}://{parsed.netloc}{parsed.path}/ws?clientId={self.client_id}", timeout=5
            )
        except (OSError, websocket.WebSocketException) as exc:
            log.info("websocket unavailable (%s); polling /history instead", exc)
            self._ws = None
        return self._ws is not None

    @property
    def connected(self) -> bool:
        """Whether the websocket is open."""
        return self._ws is not None

    def receive(self, timeout: float) -> WsMessage | None:
        """The next text message, or None after ``timeout``; a dropped socket raises ``ComfyTransient``."""
        if self._ws is None:
            return None
        self._ws.settimeout(timeout)
        while True:
            try:
                frame = self._ws.recv()
            except websocket.WebSocketTimeoutException:
                return None
            except (OSError, websocket.WebSocketException) as exc:
                self.close()
                raise ComfyTransient(f"websocket dropped: {type(exc).__name__}") from exc
            if isinstance(frame, bytes):
                continue  # binary frames carry sampler previews only
            if not frame:
                self.close()
                raise ComfyTransient("websocket closed by the server")
            try:
                message: WsFrame = json.loads(frame)
            except ValueError:
                continue
            return WsMessage(str(message.get("type")), message.get("data") or EventData())

    def close(self) -> None:
        """Close the websocket (the HTTP connections stay for the next request)."""
        if self._ws is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self._ws.close()
            self._ws = None


def input_name(path: Path) -> str:
    """The name an image is uploaded under: derived from its content, ``va-<sha256[:16]>.png``."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"va-{digest}{path.suffix or '.png'}"
