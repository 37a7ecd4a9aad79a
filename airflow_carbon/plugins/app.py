"""The Carbon plugin's FastAPI application: the JSON API at ``/api``, the pages at ``/``, files at ``/static``.

Airflow mounts it at ``/carbon`` in the API server and does not protect it: every route here,
the OpenAPI schema and its docs page included, needs an Airflow user (see ``auth``). Only the
static files (scripts and styles, no data) are public.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from airflow_carbon import __version__
from airflow_carbon.plugins.api import router as api_router
from airflow_carbon.plugins.auth import CurrentUser
from airflow_carbon.plugins.simulation import MAX_UPLOAD_BYTES, UPLOAD_FIELDS

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
#: Largest request body: every upload at its limit, plus the form fields.
MAX_REQUEST_BYTES = len(UPLOAD_FIELDS) * MAX_UPLOAD_BYTES + 256 * 1024


class RequestSizeLimit:
    """Refuse, before the body is read, a request that announces more than ``max_bytes`` (413).

    Uploads are also measured one by one as they are saved (``simulation.save_upload``); this stops a
    huge multipart body from being spooled to disk first.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or ()).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                body = json.dumps({"detail": f"request body of {int(length)} bytes is larger than "
                                             f"{self.max_bytes // (1024 * 1024)} MiB"}).encode()
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


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
    app.add_middleware(RequestSizeLimit, max_bytes=MAX_REQUEST_BYTES)
    app.include_router(api_router, prefix="/api")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request, user: CurrentUser) -> JSONResponse:
        schema = app.openapi()
        root_path = str(request.scope.get("root_path", "")).rstrip("/")
        return JSONResponse({**schema, "servers": [{"url": root_path}]} if root_path else schema)

    @app.get("/docs", include_in_schema=False)
    async def docs(user: CurrentUser) -> HTMLResponse:
        # Relative: the schema sits beside this page wherever the API server mounts it.
        return get_swagger_ui_html(openapi_url="openapi.json", title="Carbon API")

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    pages = _pages_router()
    if pages is not None:
        app.include_router(pages)
    return app


app = create_app()
