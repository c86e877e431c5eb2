"""The one error type of the API and its JSON form ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from va.errors import ExitCode, VaError

log = logging.getLogger(__name__)

#: HTTP status of each CLI exit code when it reaches the API.
STATUS_OF_EXIT = {
    ExitCode.USAGE: 400,
    ExitCode.VALIDATION_FAILED: 422,
    ExitCode.INPUT_NOT_FOUND: 422,
    ExitCode.UNSUPPORTED_FORMAT: 422,
    ExitCode.DEPENDENCY_MISSING: 503,
    ExitCode.OUTPUT_EXISTS: 409,
    ExitCode.RESUME_NOT_POSSIBLE: 409,
    ExitCode.WORKDIR_UNUSABLE: 503,
    ExitCode.RUN_NOT_FINISHED: 409,
    ExitCode.STATE_DIR_UNUSABLE: 503,
    ExitCode.COMFYUI_UNAVAILABLE: 503,
    ExitCode.COMFYUI_REJECTED: 502,
    ExitCode.COMFYUI_FAILED: 502,
    ExitCode.COMFYUI_TIMEOUT: 502,
}
STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    416: "RANGE_NOT_SATISFIABLE",
    500: "INTERNAL",
}


#: What each error status of the API means (the OpenAPI document's descriptions, docs/VIDAX_API.md).
ERROR_STATUSES = {
    400: "A request body the server cannot read (not UTF-8, not parseable)",
    401: "No or wrong X-API-Key",
    404: "No such job, or it has no manifest or final video yet",
    409: "The job's state does not allow it",
    413: "The request body is over server.max_body_bytes",
    416: "The Range header asks for bytes the video does not have",
    422: "The request or the job is invalid, or an input is outside input_roots, missing or not decodable",
    500: "An unexpected error of the server (logged there; the answer holds no traceback)",
    502: "ComfyUI answered badly or could not be started",
    503: "ComfyUI or another dependency is not reachable",
}


class ErrorDetail(BaseModel):
    """What went wrong: a stable code and one message."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that may answer with these error statuses, for its OpenAPI entry."""
    return {status: {"model": ErrorBody, "description": ERROR_STATUSES[status]} for status in statuses}


class ApiError(Exception):
    """An error the API answers with: an HTTP status, a stable code, one message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers

    @classmethod
    def from_va(cls, error: VaError) -> ApiError:
        """The API form of a CLI error: same code name, a fitting status."""
        return cls(STATUS_OF_EXIT.get(error.code, 422), error.code.name, error.message)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error."""
    return {"error": {"code": code, "message": message}}


class JsonErrors:
    """Turn every error answer that is not JSON into the one JSON form, keeping its status and headers.

    Starlette answers some errors itself in plain text (a malformed or unsatisfiable ``Range`` of a
    ``FileResponse``: 400 and 416); this pure ASGI middleware rewrites them, so no error escapes the form.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        text = b""

        async def rewriting(message: Message) -> None:
            nonlocal held, text
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if message["status"] >= 400 and not content_type.startswith(b"application/json"):
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                text += message.get("body", b"")
                if message.get("more_body", False):
                    return
                status = held["status"]
                message_text = text.decode("utf-8", "replace").strip() or HTTPStatus(status).phrase
                body = json.dumps(error_body(STATUS_CODES.get(status, "HTTP_ERROR"), message_text)).encode()
                kept = [(k, v) for k, v in held.get("headers", []) if k not in _REPLACED_HEADERS]
                replaced = [
                    *kept,
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                ]
                await send({**held, "headers": replaced})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, rewriting)


_REPLACED_HEADERS = frozenset({b"content-type", b"content-length"})


def install_handlers(app: FastAPI) -> None:
    """Render every error, including FastAPI's own, in the one JSON form."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(VaError)
    async def va_error(request: Request, exc: VaError) -> JSONResponse:
        api = ApiError.from_va(exc)
        return JSONResponse(error_body(api.code, api.message), status_code=api.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = (
            f"{where}: {first.get('msg', 'invalid request')}" if where else str(first.get("msg", "invalid"))
        )
        return JSONResponse(error_body("VALIDATION_FAILED", message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "HTTP_ERROR")
        # The exception's headers carry what HTTP requires with the status (``Allow`` on a 405); Starlette
        # names only the methods of the first route of the path, so a 405 names those of all of them.
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server's log, never to the caller.
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("INTERNAL", "unexpected server error; see the server log"), 500)


def allowed_methods(request: Request) -> list[str]:
    """The methods any route of the request's path answers (``/jobs``: GET and POST), looked for in the
    app's routes and in those of the routers it includes (the routers are included without a prefix)."""
    methods: set[str] = set()
    routes = list(request.app.routes)
    while routes:
        route = routes.pop()
        included = getattr(route, "original_router", None)
        if included is not None:
            routes.extend(included.routes)
            continue
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
