"""The one error type of the API and its JSON form ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from va.errors import ExitCode, VaError

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
    ExitCode.COMFYUI_UNAVAILABLE: 503,
    ExitCode.COMFYUI_REJECTED: 502,
    ExitCode.COMFYUI_FAILED: 502,
    ExitCode.COMFYUI_TIMEOUT: 502,
}
STATUS_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


#: What each error status of the API means (the OpenAPI document's descriptions, docs/VIDAX_API.md).
ERROR_STATUSES = {
    400: "A request body the server cannot read (not UTF-8, not parseable)",
    401: "No or wrong X-API-Key",
    404: "No such job, or it has no manifest or final video yet",
    409: "The job's state does not allow it",
    413: "The request body is over server.max_body_bytes",
    422: "The request or the job is invalid, or an input is outside input_roots, missing or not decodable",
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

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    @classmethod
    def from_va(cls, error: VaError) -> ApiError:
        """The API form of a CLI error: same code name, a fitting status."""
        return cls(STATUS_OF_EXIT.get(error.code, 422), error.code.name, error.message)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error."""
    return {"error": {"code": code, "message": message}}


def install_handlers(app: FastAPI) -> None:
    """Render every error, including FastAPI's own, in the one JSON form."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

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
        # The exception's headers carry what HTTP requires with the status (``Allow`` on a 405).
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )
