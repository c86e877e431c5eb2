"""The VIDAX application and ``va serve``."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

import va
from va.errors import ExitCode, VaError
from va.records import JsonObject
from va.vidax.deps import ApiKey
from va.vidax.errors import JsonErrors, error_body, error_responses, install_handlers
from va.vidax.jobs import JobStore
from va.vidax.launcher import ComfyLauncher
from va.vidax.routes import comfyui, docs, health, install, jobs
from va.vidax.settings import KeyRing, Settings, load_settings
from va.vidax.webhooks import WebhookSender

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse request bodies over the limit with 413, whether announced by Content-Length or streamed.

    A pure ASGI middleware: it counts the bytes the app receives and sends the 413 itself. Raising from
    ``receive`` would not do: FastAPI turns any error while reading a body into a 400.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(error_body("PAYLOAD_TOO_LARGE", f"request body over {self.limit} bytes")).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = over = refused = False

        async def limited() -> Message:
            nonlocal received, over, refused
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answer now; to the app the client has gone, so it stops reading.
                    over = True
                    if not started:
                        refused = True
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is sent; the app's own answer to a body it never got is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except Exception:
            if not refused:
                raise
            log.debug("request refused as too large; the app's error is dropped", exc_info=True)


def create_app(settings: Settings, *, run_scheduler: bool = True) -> FastAPI:
    """The API for ``settings``; the scheduler of jobs runs while the app does."""
    webhooks = WebhookSender(settings.webhooks)
    store = JobStore(
        settings.runs_root,
        settings.max_parallel_runs,
        settings.input_roots,
        on_finished=webhooks.job_ended,
        max_queued=settings.max_queued_jobs,
    )
    launcher = ComfyLauncher(settings.comfyui, settings.state_dir / "comfyui" / "comfyui.log")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_scheduler:
            store.start()
            webhooks.resume_pending(store.all())
        yield
        webhooks.stop()
        store.stop()

    app = FastAPI(
        title="VIDAX",
        version=va.__version__,
        description="The HTTP API of va, the VideoAudio Runner. Every route but /health and /ready needs "
        "X-API-Key (the OpenAPI document and the docs too, unless server.public_docs is true).",
        lifespan=lifespan,
        # Any route: a body over the limit (BodyLimit), an unexpected error (the catch-all handler).
        responses=error_responses(413, 500),
        # Served by va.vidax.routes.docs, behind the key unless server.public_docs says otherwise.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings, app.state.store, app.state.launcher = settings, store, launcher
    app.state.webhooks = webhooks
    app.state.keys = KeyRing(settings.config_path, settings.api_keys)
    install_handlers(app)
    for module in (health, install, comfyui, jobs):
        app.include_router(module.router)
    app.include_router(docs.router, dependencies=[] if settings.public_docs else [ApiKey])
    app.openapi = with_job_definitions(app)  # type: ignore[method-assign]
    app.add_middleware(JsonErrors)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


def with_job_definitions(app: FastAPI) -> Callable[[], JsonObject]:
    """The app's OpenAPI document with the job schema's definitions among its components, where the
    documented body of ``POST /jobs`` refers to them: complete enough to generate a client from."""
    made = app.openapi

    def document() -> JsonObject:
        schema = made()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(jobs.JOB_DEFINITIONS)
        return schema

    return document


def main(argv: list[str] | None = None) -> int:
    """Serve the API on the configured address (default 127.0.0.1:8787)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        app = create_app(settings)
    except VaError as exc:
        print(f"vidax: error: {exc.message}", file=sys.stderr)
        return int(exc.code)
    keys: KeyRing = app.state.keys
    signal.signal(signal.SIGHUP, lambda signum, frame: keys.reload_soon())
    try:
        listener = listen(settings.bind, settings.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"vidax: error: cannot listen on {settings.bind}:{settings.port}: {reason}", file=sys.stderr)
        return int(ExitCode.DEPENDENCY_MISSING)
    with listener:
        log.info("VIDAX listening on http://%s:%d (Ctrl-C to stop)", settings.bind, settings.port)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.bind, port=settings.port, log_level="info"))
        server.run(sockets=[listener])
    return 0


def listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound here: uvicorn, binding it itself, logs a refused address (in
    use, not this machine's, no permission) and exits 3, which is not one of va's codes."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError:
        listener.close()
        raise
    return listener  # not inheritable (Python's default): no va run VIDAX starts holds the port open
