"""A test double of a ComfyUI v0.26 server: the recorded HTTP and websocket protocol, on a loopback port.

It really executes the nodes that need no model weights (EmptyImage, LoadImage, RepeatImageBatch,
ImageScale, ImageFromBatch, ImageBatch, SaveImage, LoadAudio, LoadVideo, GetVideoComponents,
CreateVideo/SaveVideo with an audio input, VHS_VideoCombine) and answers CheckpointLoaderSimple graphs
(CLIPTextEncode, EmptyLatentImage, KSampler, VAEDecode) with synthetic frames coloured by the seed, of
the size ComfyUI's latent makes (the asked size rounded down to a multiple of 8).
Faults are switched on with ``POST /__double__/faults`` (``{name: count}``; each occurrence uses one up):
``prompt_500``, ``drop_ws``, ``lose`` (accepted, never queued), ``hang`` (runs until interrupted),
``execution_error``, ``system_stats_404``, ``ws_refuse`` (``/ws`` answers 404, no upgrade), and
``history_500`` (``/history`` answers 500), ``prompt_no_answer`` (a prompt is queued, but the
connection closes before its answer), ``jobs_api`` (a setting, not a count: the server offers
``GET /api/jobs``, ``GET /api/jobs/{id}`` and ``POST /api/jobs/{id}/cancel``, as newer ComfyUI does;
without it they answer 404, as an older server; with ``jobs_without_cancel`` as well, the cancel route
answers 404, as the releases that had the jobs API before its cancel route), ``restart`` (at the next prompt's first sampler step the
server goes away for ``restart_away_ms``, default 1000, and comes back with an empty queue, history and
cache, as a restarted ComfyUI), and ``refuse_after_prompts`` (a threshold, not a count: once that many prompts were accepted, every later
request and websocket is answered by closing the connection, as a server that went away mid-run).
``POST /__double__/checkpoints`` (``[name, ...]``) sets the checkpoints the server has installed until the
next reset (which restores those it started with); ``GET /__double__/stats`` tells what it saw; ``POST /__double__/forget_outputs`` deletes the output files
but keeps the cache (as a user emptying ComfyUI's output folder); ``POST /__double__/reset`` forgets everything (one double
serves a whole test run, reset before each test).

Run: python tests/comfyui_double.py --port PORT --root DIR [--checkpoints a.safetensors,b.safetensors]
     [--step-delay SECONDS] [--prompt-seconds SECONDS]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import functools
import gzip
import hashlib
import io
import json
import math
import operator
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image, ImageDraw

OUTPUT_CLASSES = {"SaveImage", "SaveVideo", "VHS_VideoCombine", "SaveAnimatedPNG", "SaveAnimatedWEBP"}
KNOWN_CLASSES = OUTPUT_CLASSES | {
    "EmptyImage",
    "LoadImage",
    "RepeatImageBatch",
    "ImageScale",
    "CreateVideo",
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "VAEDecode",
    "LoadAudio",
    "LoadVideo",
    "GetVideoComponents",
    "ImageFromBatch",
    "ImageBatch",
    "ComfyMathExpression",
}
#: The nodes that read a file of the input folder, and the input naming it (validated before a prompt runs).
INPUT_FILES = {
    "LoadImage": ("image", "Invalid image file"),
    "LoadAudio": ("audio", "Invalid audio file"),
    "LoadVideo": ("file", "Invalid video file"),
}


#: ``GET /object_info`` of a real ComfyUI 0.26 (no model files), of which the double answers its classes.
OBJECT_INFO = Path(__file__).resolve().parent / "data" / "comfyui_object_info_0.26.json.gz"


@functools.cache
def node_definitions() -> dict[str, Any]:
    """The real server's definitions of the classes the double knows (a custom node's: an empty one)."""
    real = json.loads(gzip.decompress(OBJECT_INFO.read_bytes()))
    return {name: real.get(name, {"input": {}, "output": []}) for name in sorted(KNOWN_CLASSES)}


#: The ``status`` values of ComfyUI's jobs API.
JOB_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")


class Interrupted(Exception):
    pass


class NodeFailure(Exception):
    def __init__(self, node_id: str, node_type: str, message: str) -> None:
        super().__init__(message)
        self.node_id, self.node_type, self.message = node_id, node_type, message


def fresh_stats() -> dict[str, Any]:
    """What the double has seen: nothing yet."""
    return {
        "prompts": [],
        "prompt_posts": 0,
        "uploads": 0,
        "interrupts": [],  # the prompt_id of each POST /interrupt (None: a global interrupt)
        "interrupted": [],  # the prompts an interrupt actually stopped
        "deleted": [],  # the prompts POST /queue {"delete": [...]} took out of the pending queue
        "ws_connections": 0,
        "ws_refused": 0,
        "refused": 0,
        "health": 0,
        "restarts": 0,
        "system_stats": 0,
        "executing_seconds": 0.0,  # the time prompts ran, summed
        "first_began": None,
        "last_ended": None,  # wall-clock times: the first prompt's start, the last's end
        "history_requests": 0,
        "job_requests": 0,
        "job_cancels": [],  # /history/{id}, /api/jobs/{id}, cancels
    }


class Double:
    def __init__(self, root: Path, checkpoints: list[str], step_delay: float) -> None:
        self.root = root
        self.input, self.output = root / "input", root / "output"
        self.input.mkdir(parents=True, exist_ok=True)
        self.output.mkdir(parents=True, exist_ok=True)
        self.checkpoints = self.installed = checkpoints
        self.step_delay = step_delay
        self.prompt_seconds = 0.0  # how long a prompt runs before its nodes do (--prompt-seconds)
        self.queue: asyncio.Queue[tuple[int, str, dict[str, Any], str]] = asyncio.Queue()
        self.pending: list[tuple[int, str]] = []
        self.running: tuple[int, str] | None = None
        self.history: dict[str, Any] = {}
        self.clients: dict[str, str] = {}  # the client id each prompt came with
        self.cache: dict[str, dict[str, Any]] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.closing: set[asyncio.Task[bool]] = set()
        self.faults: dict[str, int] = {}
        self.stats: dict[str, Any] = fresh_stats()
        self.number = 0
        self.counter = 0
        self.interrupt = False
        self.away_until = 0.0
        self.forget_running = False  # a restart: the running prompt ends without a trace
        self.version = "0.26.0"  # what /system_stats reports (--comfyui-version: a pool of mixed versions)

    def fault(self, name: str) -> bool:
        """Use up one occurrence of a fault, if it is switched on."""
        if self.faults.get(name, 0) > 0:
            self.faults[name] -= 1
            return True
        return False

    async def send(self, client_id: str, kind: str, data: dict[str, Any]) -> None:
        socket = self.sockets.get(client_id)
        if socket is not None and not socket.closed:
            with contextlib.suppress(ConnectionError):
                await socket.send_str(json.dumps({"type": kind, "data": data}))

    def refusing(self) -> bool:
        if time.monotonic() < self.away_until:
            return True
        threshold = self.faults.get("refuse_after_prompts")
        return threshold is not None and len(self.stats["prompts"]) >= threshold

    def restart(self, seconds: float) -> None:
        """As a ComfyUI process that is restarted: gone for ``seconds`` (connections closed unanswered),
        then back with an empty queue, history and cache. Files on disk stay."""
        self.stats["restarts"] += 1
        self.away_until = time.monotonic() + seconds
        self.pending, self.history, self.cache = [], {}, {}
        for client_id in list(self.sockets):
            closing = asyncio.create_task(self.sockets.pop(client_id).close())
            self.closing.add(closing)
            closing.add_done_callback(self.closing.discard)
        if self.running is not None:
            self.interrupt = True
            self.forget_running = True

    @web.middleware
    async def refuse(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Under ``refuse_after_prompts``: close the connection instead of answering (and every websocket)."""
        if self.refusing() and not request.path.startswith("/__double__/"):
            self.stats["refused"] += 1
            for client_id in list(self.sockets):
                # in the background: a close handshake would wait for a client that is busy in this request
                closing = asyncio.create_task(self.sockets.pop(client_id).close())
                self.closing.add(closing)
                closing.add_done_callback(self.closing.discard)
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=503)  # never sent: the connection is already closed
        response: web.StreamResponse = await handler(request)
        return response

    # --- HTTP handlers -------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        self.stats["health"] += 1
        return web.json_response({"status": "ok"})

    async def system_stats(self, request: web.Request) -> web.Response:
        self.stats["system_stats"] += 1
        if self.fault("system_stats_404"):
            return web.Response(status=404)
        system = {
            "os": "posix",
            "python_version": "3.11",
            "comfyui_version": self.version,
            "embedded_python": False,
            "ram_total": 1 << 34,
            "ram_free": 1 << 33,
        }
        return web.json_response({"system": system, "devices": []})

    async def object_info(self, request: web.Request) -> web.Response:
        return web.json_response(node_definitions())

    def validate(self, graph: Any) -> dict[str, Any] | None:
        if not isinstance(graph, dict) or not any(
            isinstance(n, dict) and n.get("class_type") in OUTPUT_CLASSES for n in graph.values()
        ):
            return {
                "error": {
                    "type": "prompt_no_outputs",
                    "message": "Prompt has no outputs",
                    "details": "",
                    "extra_info": {},
                },
                "node_errors": {},
            }
        for node_id, node in graph.items():
            if node.get("class_type") not in KNOWN_CLASSES:
                cls = node.get("class_type")
                return {
                    "error": {
                        "type": "missing_node_type",
                        "message": f"Node '{cls}' not found. The custom node may not be installed.",
                        "details": f"Node ID '#{node_id}'",
                        "extra_info": {"node_id": node_id, "class_type": cls, "node_title": cls},
                    },
                    "node_errors": {},
                }
        errors = {}
        outputs = sorted(key for key, node in graph.items() if node["class_type"] in OUTPUT_CLASSES)
        for node_id, node in graph.items():
            if node["class_type"] in INPUT_FILES:
                name, complaint = INPUT_FILES[node["class_type"]]
                value = node["inputs"].get(name)
                if isinstance(value, str) and not (self.input / value).is_file():
                    # As ComfyUI's validate_inputs of these nodes: a custom validation failure.
                    errors[node_id] = {
                        "errors": [
                            {
                                "type": "custom_validation_failed",
                                "message": "Custom validation failed for node",
                                "details": f"{name} - {complaint}: {value}",
                                "extra_info": {"input_name": name},
                            }
                        ],
                        "dependent_outputs": outputs,
                        "class_type": node["class_type"],
                    }
            if node["class_type"] == "CheckpointLoaderSimple":
                name = node["inputs"].get("ckpt_name")
                if name not in self.checkpoints:
                    errors[node_id] = {
                        "errors": [
                            {
                                "type": "value_not_in_list",
                                "message": "Value not in list",
                                "details": f"ckpt_name: '{name}' not in {self.checkpoints}",
                                "extra_info": {"input_name": "ckpt_name", "received_value": name},
                            }
                        ],
                        "dependent_outputs": [],
                        "class_type": "CheckpointLoaderSimple",
                    }
        if errors:
            return {
                "error": {
                    "type": "prompt_outputs_failed_validation",
                    "message": "Prompt outputs failed validation",
                    "details": "",
                    "extra_info": {},
                },
                "node_errors": errors,
            }
        return None

    async def prompt(self, request: web.Request) -> web.Response:
        self.stats["prompt_posts"] += 1
        if self.fault("prompt_500"):
            return web.Response(status=500, text="Internal Server Error")
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=500, text="not JSON")
        graph = body.get("prompt")
        problem = self.validate(graph)
        if problem is not None:
            return web.json_response(problem, status=400)
        prompt_id = str(uuid.uuid4())
        number = self.number
        self.number += 1
        self.stats["prompts"].append(prompt_id)
        self.clients[prompt_id] = str(body.get("client_id", ""))
        if not self.fault("lose"):
            self.pending.append((number, prompt_id))
            await self.queue.put((number, prompt_id, graph, str(body.get("client_id", ""))))
        if self.fault("prompt_no_answer") and request.transport is not None:
            request.transport.close()  # queued, but the answer is lost (a proxy timeout, a dropped link)
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    async def history_of(self, request: web.Request) -> web.Response:
        self.stats["history_requests"] += 1
        if self.fault("history_500"):
            return web.Response(status=500, text="Internal Server Error")
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def history_all(self, request: web.Request) -> web.Response:
        """``GET /history?max_items=N``: the last N entries."""
        items = list(self.history.items())[-int(request.query.get("max_items", len(self.history) or 1)) :]
        return web.json_response(dict(items))

    def extra(self, prompt_id: str) -> dict[str, Any]:
        """A prompt's ``extra_data``, as ComfyUI keeps it in its queue and history: the client id."""
        return {"client_id": self.clients.get(prompt_id, "")}

    async def queue_state(self, request: web.Request) -> web.Response:
        running = (
            [[self.running[0], self.running[1], {}, self.extra(self.running[1]), []]] if self.running else []
        )
        pending = [[number, prompt_id, {}, self.extra(prompt_id), []] for number, prompt_id in self.pending]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    # --- /api/jobs (newer ComfyUI; switched on with the setting ``jobs_api``) ---------------------------
    # Shaped as ComfyUI's server.py and comfy_execution/jobs.py answer them (read at Comfy-Org/ComfyUI
    # server.py 002c3fb, jobs.py 172be43): the routes are registered as /api/jobs..., fields that would be
    # None are left out, a finished job's status comes from its history entry.

    def job_of(self, prompt_id: str, detail: bool = True) -> dict[str, Any] | None:
        """One job, as jobs.py's get_job (``detail``) or as an item of the list: a finished prompt from its
        history entry (completed; cancelled when it was interrupted; failed, with ``execution_error``), a
        queued one as in_progress or pending (no outputs yet)."""
        entry = self.history.get(prompt_id)
        if entry is None:
            if self.running is not None and self.running[1] == prompt_id:
                return {
                    "id": prompt_id,
                    "status": "in_progress",
                    "priority": self.running[0],
                    "outputs_count": 0,
                    "previewable_outputs_count": 0,
                }
            for number, pending in self.pending:
                if pending == prompt_id:
                    return {
                        "id": prompt_id,
                        "status": "pending",
                        "priority": number,
                        "outputs_count": 0,
                        "previewable_outputs_count": 0,
                    }
            return None
        status = entry["status"]
        events = dict(status["messages"])
        if status["status_str"] == "success":
            state = "completed"
        else:
            state = "cancelled" if "execution_interrupted" in events else "failed"
        files = [
            item
            for node in entry["outputs"].values()
            for key, items in node.items()
            if key != "animated" and isinstance(items, list)
            for item in items
        ]
        job: dict[str, Any] = {
            "id": prompt_id,
            "status": state,
            "priority": entry["prompt"][0],
            "outputs_count": len(files),
            "previewable_outputs_count": len(files),
        }
        for name, field in (
            ("execution_start", "execution_start_time"),
            ("execution_success", "execution_end_time"),
            ("execution_error", "execution_end_time"),
            ("execution_interrupted", "execution_end_time"),
        ):
            if name in events:
                job[field] = events[name]["timestamp"]
        if "execution_error" in events:
            job["execution_error"] = events["execution_error"]
        if detail:
            job.update(
                outputs=entry["outputs"],
                execution_status=status,
                workflow={"prompt": entry["prompt"][2], "extra_data": entry["prompt"][3]},
            )
        return job

    async def jobs(self, request: web.Request) -> web.Response:
        """``GET /api/jobs``: ``status`` (comma-separated), ``limit`` (a positive integer, else 400),
        ``offset``; answers ``{"jobs": [...], "pagination": {offset, limit, total, has_more}}``."""
        if not self.faults.get("jobs_api"):
            raise web.HTTPNotFound()  # an older server: no such route
        query = request.query
        wanted = [s.strip().lower() for s in query.get("status", "").split(",") if s.strip()]
        unknown = [s for s in wanted if s not in JOB_STATUSES]
        if unknown:
            return web.json_response({"error": f"Invalid status value(s): {', '.join(unknown)}"}, status=400)
        limit = None
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                return web.json_response({"error": "limit must be an integer"}, status=400)
            if limit <= 0:
                return web.json_response({"error": "limit must be a positive integer"}, status=400)
        try:
            offset = max(int(query.get("offset", 0)), 0)
        except ValueError:
            return web.json_response({"error": "offset must be an integer"}, status=400)
        ids = [*([self.running[1]] if self.running else []), *(p for _, p in self.pending), *self.history]
        found = [job for job in (self.job_of(p, detail=False) for p in ids) if job is not None]
        found = [job for job in found if not wanted or job["status"] in wanted]
        listed = found[offset:][:limit] if limit is not None else found[offset:]
        pagination = {
            "offset": offset,
            "limit": limit,
            "total": len(found),
            "has_more": offset + len(listed) < len(found),
        }
        return web.json_response({"jobs": listed, "pagination": pagination})

    async def job(self, request: web.Request) -> web.Response:
        """``GET /api/jobs/{id}``: the job, or 404 ``{"error": "Job not found"}``."""
        if not self.faults.get("jobs_api"):
            raise web.HTTPNotFound()
        self.stats["job_requests"] += 1
        job = self.job_of(request.match_info["job_id"])
        if job is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response(job)

    async def job_cancel(self, request: web.Request) -> web.Response:
        """``POST /api/jobs/{id}/cancel``: a pending job leaves the queue, a running one is interrupted, no
        other prompt is touched; always 200 ``{"cancelled": bool}`` (false for a finished or unknown id).
        Under the setting ``jobs_without_cancel`` the route is missing (404), as in the ComfyUI releases
        that had the jobs API before its cancel route."""
        if not self.faults.get("jobs_api") or self.faults.get("jobs_without_cancel"):
            raise web.HTTPNotFound()
        prompt_id = request.match_info["job_id"]
        self.stats["job_cancels"].append(prompt_id)
        cancelled = True
        if any(p == prompt_id for _, p in self.pending):
            self.pending = [item for item in self.pending if item[1] != prompt_id]
            self.stats["deleted"].append(prompt_id)
        elif self.running is not None and self.running[1] == prompt_id:
            self.stats["interrupted"].append(prompt_id)
            self.interrupt = True
        else:
            cancelled = False
        return web.json_response({"cancelled": cancelled})

    @staticmethod
    async def json_body(request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.text())
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    async def interrupt_handler(self, request: web.Request) -> web.Response:
        """As ComfyUI's server.py: with ``{"prompt_id"}`` only that prompt, if it is the one running;
        without one, whatever runs."""
        prompt_id = (await self.json_body(request)).get("prompt_id")
        self.stats["interrupts"].append(prompt_id)
        if self.running is not None and (not prompt_id or self.running[1] == prompt_id):
            self.stats["interrupted"].append(self.running[1])
            self.interrupt = True
        return web.Response(status=200)

    async def queue_change(self, request: web.Request) -> web.Response:
        """As ComfyUI's server.py: ``{"clear": true}`` empties the pending queue, ``{"delete": [ids]}``
        takes those prompts out of it (a running prompt is not touched)."""
        body = await self.json_body(request)
        doomed = {p for _, p in self.pending} if body.get("clear") else set(body.get("delete") or [])
        for _, prompt_id in self.pending:
            if prompt_id in doomed:
                self.stats["deleted"].append(prompt_id)
        self.pending = [p for p in self.pending if p[1] not in doomed]
        return web.Response(status=200)

    async def upload(self, request: web.Request) -> web.Response:
        """As ComfyUI's server.py: kept under the uploaded file name in the one input folder shared by
        every client. ``overwrite=true`` replaces a file of that name; without it, an identical file is
        reused and a different one is stored as ``name (1).png``."""
        self.stats["uploads"] += 1
        form = await request.post()
        field = form["image"]
        data = field.file.read()  # type: ignore[union-attr]
        name = Path(str(field.filename)).name  # type: ignore[union-attr]
        if str(form.get("overwrite", "")).lower() not in ("true", "1"):
            stem, suffix, number = Path(name).stem, Path(name).suffix, 1
            while (self.input / name).exists() and (self.input / name).read_bytes() != data:
                name, number = f"{stem} ({number}){suffix}", number + 1
        (self.input / name).write_bytes(data)
        return web.json_response({"name": name, "subfolder": "", "type": "input"})

    async def view(self, request: web.Request) -> web.StreamResponse:
        base = self.output if request.query.get("type", "output") == "output" else self.input
        path = base / request.query.get("subfolder", "") / request.query.get("filename", "")
        if not path.is_file():
            return web.Response(status=404)
        types = {".png": "image/png", ".mp4": "video/mp4", ".webm": "video/webm", ".webp": "image/webp"}
        return web.Response(
            body=path.read_bytes(), content_type=types.get(path.suffix, "application/octet-stream")
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if self.fault("ws_refuse"):
            self.stats["ws_refused"] += 1
            return web.Response(status=404)
        self.stats["ws_connections"] += 1
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[client_id] = socket
        await socket.send_str(
            json.dumps(
                {
                    "type": "status",
                    "data": {
                        "status": {"exec_info": {"queue_remaining": self.queue.qsize()}},
                        "sid": client_id,
                    },
                }
            )
        )
        async for message in socket:
            if message.type == WSMsgType.ERROR:
                break
        self.sockets.pop(client_id, None)
        return socket

    async def set_faults(self, request: web.Request) -> web.Response:
        self.faults.update({k: int(v) for k, v in (await request.json()).items()})
        return web.json_response(self.faults)

    async def set_checkpoints(self, request: web.Request) -> web.Response:
        self.checkpoints = [str(name) for name in await request.json()]
        return web.json_response(self.checkpoints)

    async def reset(self, request: web.Request) -> web.Response:
        """Between tests (one double serves a whole test run): no faults, queue, history, cache or
        uploads, fresh stats, the checkpoints it started with. A prompt still running (a ``hang``) is
        stopped first."""
        self.faults, self.pending, self.checkpoints = {}, [], self.installed
        if self.running is not None:
            self.interrupt = True
            deadline = time.monotonic() + 10
            while self.running is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        for socket in list(self.sockets.values()):
            await socket.close()
        self.sockets.clear()
        self.history, self.cache, self.stats, self.clients = {}, {}, fresh_stats(), {}
        self.away_until, self.forget_running = 0.0, False
        for folder in (self.input, self.output):
            for path in sorted(folder.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
        return web.json_response({})

    async def forget_outputs(self, request: web.Request) -> web.Response:
        """What a user emptying ComfyUI's output folder does: the files are gone, the cache still points
        at them (an identical graph is answered from the cache with those names)."""
        for path in sorted(self.output.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        return web.json_response({})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response({**self.stats, "faults": self.faults})

    # --- execution -----------------------------------------------------------------------------------

    async def worker(self) -> None:
        while True:
            number, prompt_id, graph, client_id = await self.queue.get()
            if (number, prompt_id) not in self.pending:
                continue  # deleted from the queue while it waited
            self.pending = [p for p in self.pending if p[1] != prompt_id]
            self.running = (number, prompt_id)
            self.interrupt = False
            began = time.monotonic()
            self.stats["first_began"] = self.stats["first_began"] or time.time()
            try:
                # A prompt of a graph without a sampler (a segment template) runs as long as asked too.
                await asyncio.sleep(self.prompt_seconds)
                await self.execute(prompt_id, graph, client_id)
            finally:
                self.running = None
                self.stats["executing_seconds"] += time.monotonic() - began
                self.stats["last_ended"] = time.time()

    async def execute(self, prompt_id: str, graph: dict[str, Any], client_id: str) -> None:
        messages: list[list[Any]] = []

        async def emit(kind: str, data: dict[str, Any], keep: bool = False) -> None:
            data = {**data, "prompt_id": prompt_id}
            if keep:
                messages.append([kind, {**data, "timestamp": int(time.time() * 1000)}])
            await self.send(client_id, kind, data)

        await emit("execution_start", {}, keep=True)
        if self.fault("drop_ws") and client_id in self.sockets:
            await self.sockets[client_id].close()
        key = json.dumps(graph, sort_keys=True)
        outputs: dict[str, Any] = {}
        try:
            if self.fault("hang"):
                while not self.interrupt:
                    await asyncio.sleep(0.05)
                raise Interrupted
            if key in self.cache:
                await emit("execution_cached", {"nodes": sorted(graph)}, keep=True)
                outputs = self.cache[key]
            else:
                await emit("execution_cached", {"nodes": []}, keep=True)
                values: dict[str, tuple[Any, ...]] = {}
                for node_id in sorted(graph, key=lambda k: (len(k), k)):
                    if graph[node_id]["class_type"] in OUTPUT_CLASSES:
                        await self.evaluate(node_id, graph, values, outputs, emit)
                self.cache[key] = outputs
        except Interrupted:
            if self.forget_running:
                self.forget_running = False
                return  # the process that ran it is gone: no history, no message
            await emit(
                "execution_interrupted", {"node_id": None, "node_type": None, "executed": []}, keep=True
            )
            self.history[prompt_id] = self.entry(graph, prompt_id, {}, "error", messages)
            return
        except Exception as exc:
            failure = (
                exc if isinstance(exc, NodeFailure) else NodeFailure("?", "?", f"{type(exc).__name__}: {exc}")
            )
            await emit(
                "execution_error",
                {
                    "node_id": failure.node_id,
                    "node_type": failure.node_type,
                    "executed": [],
                    "exception_message": failure.message,
                    "exception_type": "RuntimeError",
                    "traceback": [],
                    "current_inputs": {},
                    "current_outputs": {},
                },
                keep=True,
            )
            self.history[prompt_id] = self.entry(graph, prompt_id, {}, "error", messages)
            return
        await emit("execution_success", {}, keep=True)
        self.history[prompt_id] = self.entry(graph, prompt_id, outputs, "success", messages)
        await emit("executing", {"node": None})

    def entry(
        self, graph: Any, prompt_id: str, outputs: Any, status: str, messages: list[Any]
    ) -> dict[str, Any]:
        return {
            "prompt": [0, prompt_id, graph, self.extra(prompt_id), []],
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
            "meta": {},
        }

    async def evaluate(
        self,
        node_id: str,
        graph: dict[str, Any],
        values: dict[str, tuple[Any, ...]],
        outputs: dict[str, Any],
        emit: Any,
    ) -> tuple[Any, ...]:
        if node_id in values:
            return values[node_id]
        node = graph[node_id]
        inputs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                inputs[name] = (await self.evaluate(value[0], graph, values, outputs, emit))[value[1]]
            else:
                inputs[name] = value
        if self.interrupt:
            raise Interrupted
        await emit("executing", {"node": node_id, "display_node": node_id})
        result, ui = await self.run_node(node_id, node["class_type"], inputs, emit)
        values[node_id] = result
        if ui is not None:
            outputs[node_id] = ui
            await emit("executed", {"node": node_id, "display_node": node_id, "output": ui})
        return result

    def save_png(self, image: Image.Image, prefix: str) -> dict[str, str]:
        self.counter += 1
        name = f"{prefix}_{self.counter:05d}_.png"
        image.save(self.output / name)
        return {"filename": name, "subfolder": "", "type": "output"}

    def save_video(
        self, images: list[Image.Image], fps: float, prefix: str, subfolder: str, audio: Audio | None = None
    ) -> dict[str, str]:
        """As ComfyUI's VideoFromComponents.save_to: H.264, and an audio input as AAC at its own rate,
        cut to the video's length (ceil(rate / fps * frames) samples)."""
        self.counter += 1
        folder = self.output / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{prefix}_{self.counter:05d}_.mp4"
        frames = b"".join(image.convert("RGB").tobytes() for image in images)
        width, height = images[0].size
        sound: list[str] = []
        with tempfile.TemporaryDirectory() as scratch:
            if audio is not None:
                samples = math.ceil(audio.rate / fps * len(images))
                pcm = Path(scratch, "audio.f32")
                pcm.write_bytes(audio.pcm[: samples * audio.channels * 4])
                sound = [
                    "-f",
                    "f32le",
                    "-ar",
                    str(audio.rate),
                    "-ac",
                    str(audio.channels),
                    "-i",
                    str(pcm),
                    "-c:a",
                    "aac",
                    "-ar",
                    str(audio.rate),
                ]
            subprocess.run(
                [
                    "ffmpeg",
                    "-nostdin",
                    "-v",
                    "error",
                    "-y",
                    "-f",
                    "rawvideo",
                    "-pix_fmt",
                    "rgb24",
                    "-s",
                    f"{width}x{height}",
                    "-r",
                    str(fps),
                    "-i",
                    "-",
                    *sound,
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-pix_fmt",
                    "yuv420p",
                    str(folder / name),
                ],
                input=frames,
                check=True,
            )
        return {"filename": name, "subfolder": subfolder, "type": "output"}

    def save_animation(self, images: list[Image.Image], fps: float, prefix: str, kind: str) -> dict[str, str]:
        self.counter += 1
        name = f"{prefix}_{self.counter:05d}_.{kind}"
        first, *rest = images
        first.save(self.output / name, save_all=True, append_images=rest, duration=int(1000.0 / fps), loop=0)
        return {"filename": name, "subfolder": "", "type": "output"}

    async def run_node(
        self, node_id: str, cls: str, i: dict[str, Any], emit: Any
    ) -> tuple[tuple[Any, ...], Any]:
        if self.faults.get("execution_error", 0) > 0 and cls in ("KSampler", "SaveImage", "SaveVideo"):
            self.fault("execution_error")
            raise NodeFailure(node_id, cls, "CUDA error: out of memory (injected by the test double)")
        if cls == "EmptyImage":
            colour = int(i.get("color", 0))
            rgb = ((colour >> 16) & 255, (colour >> 8) & 255, colour & 255)
            return (
                [
                    Image.new("RGB", (int(i["width"]), int(i["height"])), rgb)
                    for _ in range(int(i["batch_size"]))
                ],
            ), None
        if cls == "LoadImage":
            image = Image.open(self.input / str(i["image"])).convert("RGB")
            return ([image], None), None
        if cls == "LoadAudio":
            audio = load_audio(self.input / str(i["audio"]))
            if audio is None:
                raise NodeFailure(node_id, cls, "No audio stream found in the file.")
            return (audio,), None
        if cls == "LoadVideo":
            return (self.input / str(i["file"]),), None  # decoded by GetVideoComponents, as VideoFromFile
        if cls == "GetVideoComponents":
            video = i["video"]
            if isinstance(video, Path):  # a LoadVideo: its file decoded
                images, fps = load_frames(video)
                return (images, load_audio(video), fps, 8), None
            return (video["images"], video["audio"], video["fps"], 8), None
        if cls == "ComfyMathExpression":
            # As ComfyUI's (simpleeval there): the expression over the inputs values.a, values.b, ...;
            # outputs FLOAT, INT, BOOLEAN.
            names = {key.split(".", 1)[1]: value for key, value in i.items() if key.startswith("values.")}
            result = arithmetic(ast.parse(str(i["expression"]), mode="eval").body, names)
            return (float(result), int(result), bool(result)), None
        if cls == "ImageFromBatch":
            # As ComfyUI's: a negative index counts from the end; index and length are clamped to the batch.
            images, index = i["image"], int(i["batch_index"])
            index = max(0, min(len(images) - 1, index + len(images) if index < 0 else index))
            return (images[index : index + int(i["length"])],), None
        if cls == "ImageBatch":
            # As ComfyUI's: the second batch is scaled to the first's size, then appended.
            first, second = i["image1"], i["image2"]
            size = first[0].size
            return (
                [*first, *(image if image.size == size else image.resize(size) for image in second)],
            ), None
        if cls == "RepeatImageBatch":
            return ([image for image in i["image"] for _ in range(int(i["amount"]))],), None
        if cls == "ImageScale":
            width, height = int(i["width"]), int(i["height"])
            return ([image.resize((width, height)) for image in i["image"]],), None
        if cls == "SaveImage":
            return (), {"images": [self.save_png(image, str(i["filename_prefix"])) for image in i["images"]]}
        if cls == "CreateVideo":
            return ({"images": i["images"], "fps": float(i["fps"]), "audio": i.get("audio")},), None
        if cls == "SaveVideo":
            video = i["video"]
            # As ComfyUI's folder_paths.get_save_image_path: a prefix "a/b" saves b_00001_.mp4 in subfolder a.
            folder, _, stem = str(i["filename_prefix"]).rpartition("/")
            item = self.save_video(video["images"], video["fps"], stem, folder, video["audio"])
            return (), {"images": [item], "animated": [True]}
        if cls in ("SaveAnimatedPNG", "SaveAnimatedWEBP"):
            # As ComfyUI's nodes: Pillow writes the animation, and its encoder merges identical
            # consecutive frames into one (their durations added).
            kind = "png" if cls == "SaveAnimatedPNG" else "webp"
            return (), {
                "images": [
                    self.save_animation(i["images"], float(i["fps"]), str(i["filename_prefix"]), kind)
                ],
                "animated": [True],
            }
        if cls == "VHS_VideoCombine":
            item = self.save_video(i["images"], float(i["frame_rate"]), str(i["filename_prefix"]), "")
            # VideoHelperSuite's entries carry the format and rate besides the file.
            return (), {"gifs": [{**item, "format": "video/h264-mp4", "frame_rate": float(i["frame_rate"])}]}
        if cls == "CheckpointLoaderSimple":
            return ("model", "clip", "vae"), None
        if cls == "CLIPTextEncode":
            return ("conditioning",), None
        if cls == "EmptyLatentImage":
            # As ComfyUI's: the latent has an eighth of the asked size, so VAEDecode returns frames of
            # that size rounded down to a multiple of 8 (333x201 asked, 328x200 returned).
            width, height = int(i["width"]) // 8 * 8, int(i["height"]) // 8 * 8
            return ({"width": width, "height": height, "batch": int(i["batch_size"])},), None
        if cls == "KSampler":
            steps = int(i["steps"])
            for step in range(1, steps + 1):
                if self.interrupt:
                    raise Interrupted
                await asyncio.sleep(self.step_delay)
                await emit("progress", {"value": step, "max": steps, "node": node_id})
                if step == 1 and self.fault("restart"):
                    self.restart(self.faults.get("restart_away_ms", 1000) / 1000)
                    raise Interrupted
            return ({**i["latent_image"], "seed": int(i["seed"])},), None
        if cls == "VAEDecode":
            latent = i["samples"]
            return (
                [
                    synthetic_frame(latent["width"], latent["height"], latent["seed"], k)
                    for k in range(latent["batch"])
                ],
            ), None
        raise NodeFailure(node_id, cls, f"the double cannot run {cls}")


OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def arithmetic(node: ast.expr, names: dict[str, Any]) -> Any:
    """The value of an arithmetic expression (numbers, names, + - * / // %, parentheses)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](arithmetic(node.left, names), arithmetic(node.right, names))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -arithmetic(node.operand, names)
    raise NodeFailure("?", "ComfyMathExpression", f"the double cannot evaluate {ast.dump(node)}")


@dataclass(frozen=True)
class Audio:
    """ComfyUI's AUDIO: samples as 32-bit floats, channels interleaved, at their own rate."""

    pcm: bytes
    rate: int
    channels: int


def load_audio(path: Path) -> Audio | None:
    """A file's first audio stream at its own rate and channels, as LoadAudio decodes it (PyAV there);
    None when it has none."""
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    streams = json.loads(probe.stdout).get("streams") or []
    if not streams:
        return None
    rate, channels = int(streams[0]["sample_rate"]), int(streams[0]["channels"])
    pcm = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-f",
            "f32le",
            "-ar",
            str(rate),
            "-ac",
            str(channels),
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return Audio(pcm, rate, channels)


def load_frames(path: Path) -> tuple[list[Image.Image], float]:
    """Every frame of a video file and its rate, as GetVideoComponents of a LoadVideo gives them."""
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,r_frame_rate",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    width, height = int(stream["width"]), int(stream["height"])
    numerator, denominator = stream["r_frame_rate"].split("/")
    raw = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    size = width * height * 3
    frames = [Image.frombytes("RGB", (width, height), raw[k : k + size]) for k in range(0, len(raw), size)]
    return frames, float(numerator) / float(denominator)


def synthetic_frame(width: int, height: int, seed: int, index: int) -> Image.Image:
    """A frame whose colour depends on the seed and whose text shows its index in the batch."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    image = Image.new("RGB", (width, height), (digest[0], digest[1], digest[2]))
    ImageDraw.Draw(image).text((8, 8), f"seed {seed} frame {index}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--checkpoints", default="sd_xl_base_1.0.safetensors")
    parser.add_argument("--step-delay", type=float, default=0.005)
    parser.add_argument(
        "--prompt-seconds", type=float, default=0.0, help="time a prompt runs before its nodes"
    )
    parser.add_argument("--comfyui-version", default="0.26.0")
    args = parser.parse_args()
    double = Double(args.root, [c for c in args.checkpoints.split(",") if c], args.step_delay)
    double.version = args.comfyui_version
    double.prompt_seconds = args.prompt_seconds
    app = web.Application(client_max_size=64 << 20, middlewares=[double.refuse])
    app.add_routes(
        [
            web.get("/system_stats", double.system_stats),
            web.get("/health", double.health),
            web.get("/object_info", double.object_info),
            web.post("/queue", double.queue_change),
            web.post("/prompt", double.prompt),
            web.get("/history/{prompt_id}", double.history_of),
            web.get("/queue", double.queue_state),
            web.get("/history", double.history_all),
            web.post("/interrupt", double.interrupt_handler),
            web.post("/upload/image", double.upload),
            web.get("/view", double.view),
            web.get("/ws", double.websocket),
            web.get("/api/jobs", double.jobs),
            web.get("/api/jobs/{job_id}", double.job),
            web.post("/api/jobs/{job_id}/cancel", double.job_cancel),
            web.post("/__double__/faults", double.set_faults),
            web.post("/__double__/checkpoints", double.set_checkpoints),
            web.get("/__double__/stats", double.get_stats),
            web.post("/__double__/reset", double.reset),
            web.post("/__double__/forget_outputs", double.forget_outputs),
        ]
    )

    async def start_worker(app: web.Application) -> None:
        app["worker"] = asyncio.create_task(double.worker())

    app.on_startup.append(start_worker)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
