"""``/openapi.json``, ``/docs``, ``/redoc``: the API's description, behind the key unless
``server.public_docs`` is true (the server includes this router with or without the key check)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
def openapi_document(request: Request) -> JSONResponse:
    """The OpenAPI document."""
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    """Swagger UI over the document."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="VIDAX")


@router.get("/redoc")
def redoc() -> HTMLResponse:
    """ReDoc over the document."""
    return get_redoc_html(openapi_url="/openapi.json", title="VIDAX")
