"""The Carbon plugin's FastAPI application: the JSON API at ``/api``, the pages at ``/``, files at ``/static``.

Airflow mounts it at ``/carbon`` in the API server and does not protect it: every route here,
the OpenAPI schema and its docs page (``pages``) included, needs an Airflow user (see ``auth``). Only the
static files (scripts and styles, no data) are public, and a request with a body is authenticated before
its body is read (``BoundedBody``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, oauth2_scheme
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers

from airflow_carbon import __version__
from airflow_carbon.plugins.api import router as api_router
from airflow_carbon.plugins.auth import CurrentUser
from airflow_carbon.plugins.simulation import MAX_UPLOAD_BYTES, MIB, UPLOAD_FIELDS

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
KIB = 1024
#: What a form may hold besides its files: the simulation's options take a few hundred bytes.
MAX_FORM_FIELDS_BYTES = 256 * KIB
#: Largest request body: every upload at its limit, plus the form fields.
MAX_REQUEST_BYTES = len(UPLOAD_FIELDS) * MAX_UPLOAD_BYTES + MAX_FORM_FIELDS_BYTES
REQUEST_LIMIT = (f"{MAX_REQUEST_BYTES:,} bytes ({MAX_REQUEST_BYTES / MIB:g} MiB: {len(UPLOAD_FIELDS)} files of "
                 f"{MAX_UPLOAD_BYTES // MIB} MiB and {MAX_FORM_FIELDS_BYTES // KIB} KiB of form fields)")


async def authenticate(scope: dict[str, Any]) -> None:
    """What ``CurrentUser`` checks, from the headers alone: Airflow's own ``get_user`` and auth manager.

    :raises HTTPException: 401 without a token or cookie, 401/403 for an expired or invalid one.
    """
    request = Request(scope)
    await get_user(request, await oauth2_scheme(request), await bearer_scheme(request))


class BoundedBody:
    """A request that carries a body is authenticated before any of it is read, then cut at ``max_bytes`` (413).

    FastAPI parses a multipart form, spooling its files to disk, before a route's dependencies run, so
    ``CurrentUser`` alone would look at the token only after the whole body was written. Here the token (or the
    UI's cookie) is checked from the headers first, and the body is counted as it arrives, announced with
    Content-Length or sent chunked: the request fails at ``max_bytes`` and nothing past it is read. A refused
    request closes its connection, so the server does not read the rest either.
    """

    def __init__(self, app: Any, max_bytes: int, limit: str) -> None:
        self.app, self.max_bytes, self.limit = app, max_bytes, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        if headers is None or ("transfer-encoding" not in headers and headers.get("content-length", "0") == "0"):
            await self.app(scope, receive, send)
            return
        try:
            await authenticate(scope)
        except HTTPException as refused:
            await _refuse(send, refused.status_code, refused.detail, refused.headers)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await _refuse(send, 413, f"request body of {int(length):,} bytes is larger than {self.limit}")
            return
        too_large = HTTPException(413, f"request body larger than {self.limit}")
        received, cut, started = 0, False, False

        async def counted() -> dict[str, Any]:
            nonlocal received, cut
            if cut:
                raise too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    cut = True
                    raise too_large
            return message

        async def closing(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if cut:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted, closing)
        except HTTPException as error:
            if error is not too_large or started:
                raise
            await _refuse(send, error.status_code, error.detail)


async def _refuse(send: Any, status_code: int, detail: Any, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                            *((key.lower().encode(), value.encode()) for key, value in (headers or {}).items())]})
    await send({"type": "http.response.body", "body": body})


def _pages_router() -> Any:
    """The HTML pages, when their module is there: the API works without them."""
    try:
        from airflow_carbon.plugins.pages import router
    except ModuleNotFoundError as error:
        if error.name != "airflow_carbon.plugins.pages":
            log.exception("Carbon plugin: the pages could not be loaded; the API still works")
        return None
    except Exception:
        log.exception("Carbon plugin: the pages could not be loaded; the API still works")
        return None
    return router


def create_app() -> FastAPI:
    app = FastAPI(
        title="Carbon",
        description="Carbon-aware scheduling for Airflow: tasks waiting for a cleaner grid, what they emitted and "
                    "saved, and the simulator. Every route needs an Airflow token (Bearer) or the UI's session.",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind authentication
    )
    app.add_middleware(BoundedBody, max_bytes=MAX_REQUEST_BYTES, limit=REQUEST_LIMIT)
    app.include_router(api_router, prefix="/api")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request, user: CurrentUser) -> JSONResponse:
        schema = app.openapi()
        root_path = str(request.scope.get("root_path", "")).rstrip("/")
        return JSONResponse({**schema, "servers": [{"url": root_path}]} if root_path else schema)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    pages = _pages_router()
    if pages is not None:
        app.include_router(pages)
    return app


app = create_app()
