"""The Carbon plugin's HTML pages: thin server-rendered shells whose scripts fetch the plugin's JSON API.

Every URL in a page is relative (``base`` climbs from the page back to the sub-app's root), so the
pages work where Airflow mounts the plugin, behind a proxy's prefix and inside the UI's iframe. The
server only fills in what the URL already says (DAG, run, task, filters), always escaped by Jinja;
the data itself arrives as JSON and the scripts insert it as text, never as HTML.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from airflow_carbon import __version__
from airflow_carbon.plugins.auth import CurrentUser
from airflow_carbon.plugins.common import parse_map_index

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
TEMPLATES.env.filters["urlencode_segment"] = lambda value: quote(str(value), safe="")
THEMES = ("light", "dark")
MAX_DELAYS = (("30min", "30 min"), ("1h", "1 h"), ("2h", "2 h"), ("4h", "4 h"), ("8h", "8 h"), ("12h", "12 h"),
              ("24h", "24 h"), ("48h", "48 h"))
# Pages load only their own scripts and styles and talk only to their own API; the simulation's figures are data: URLs.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Cache-Control": "no-store"}

router = APIRouter()


def relative_base(request: Request) -> str:
    """``./`` from the sub-app's root page, ``../`` per level below it: the way back to ``api/`` and ``static/``."""
    path = request.scope.get("path", "/")
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    depth = max(path.count("/") - 1, 0)
    return "../" * depth or "./"


def _theme(request: Request) -> str:
    theme = request.query_params.get("theme", "")
    return theme if theme in THEMES else ""


def _render(request: Request, template: str, **context: Any) -> HTMLResponse:
    base = relative_base(request)
    theme = _theme(request)

    def static(path: str) -> str:
        return f"{base}static/{path}?v={quote(__version__)}"

    def page(path: str, params: dict[str, Any] | None = None) -> str:
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        if theme:
            query["theme"] = theme
        return f"{base}{path}" + (f"?{urlencode(query)}" if query else "")

    response = TEMPLATES.TemplateResponse(
        request, template, {"base": base, "theme": theme, "static": static, "page": page, **context}
    )
    response.headers.update(HEADERS)
    return response


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def history_filters(dag_id: str | None, task_id: str | None, region: str | None, from_: str | None,
                    to: str | None) -> tuple[dict[str, str], str | None]:
    """The API's filters (``start``/``end``: UTC days, both included) from the form, and a message for a bad day."""
    query = {"dag_id": dag_id or "", "task_id": task_id or "", "region": region or ""}
    error = None
    try:
        start, end = _day(from_), _day(to)
    except ValueError:
        start = end = None
        error = "From and To must be days such as 2025-03-01; showing every day."
    if start and end and end < start:
        start, end, error = None, None, "From is after To; showing every day."
    if start:
        query["start"] = start.isoformat()
    if end:
        query["end"] = end.isoformat()
    return {key: value for key, value in query.items() if value}, error


async def _overview(request: Request, dag_id: str | None, filters: dict[str, str], self_path: str) -> HTMLResponse:
    query, error = history_filters(dag_id or filters.get("dag_id"), filters.get("task_id"), filters.get("region"),
                                   filters.get("from"), filters.get("to"))
    base = relative_base(request)
    return _render(
        request, "index.html", nav="overview", dag_id=dag_id, filters=filters, filter_error=error,
        filtered=any(filters.values()), self_path=self_path, query_json=json.dumps(query),
        csv_href=f"{base}api/history.csv" + (f"?{urlencode(query)}" if query else ""), charts=True,
    )


Text = Annotated[str, Query(max_length=250)]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def overview(request: Request, user: CurrentUser, dag_id: Text = "", task_id: Text = "",
                   region: Text = "", from_: Annotated[str, Query(alias="from", max_length=10)] = "",
                   to: Annotated[str, Query(max_length=10)] = "") -> HTMLResponse:
    """Every carbon-aware task: who waits now, the history per DAG and day, and the charts."""
    filters = {"dag_id": dag_id, "task_id": task_id, "region": region, "from": from_, "to": to}
    return await _overview(request, None, filters, "")


@router.get("/dag/{dag_id}", response_class=HTMLResponse, include_in_schema=False)
async def dag_overview(request: Request, user: CurrentUser, dag_id: str, task_id: Text = "", region: Text = "",
                       from_: Annotated[str, Query(alias="from", max_length=10)] = "",
                       to: Annotated[str, Query(max_length=10)] = "") -> HTMLResponse:
    """The overview of one DAG: the DAG-level external view."""
    filters = {"dag_id": "", "task_id": task_id, "region": region, "from": from_, "to": to}
    return await _overview(request, dag_id, filters, f"dag/{quote(dag_id, safe='')}")


@router.get("/task/{dag_id}/{run_id}/{task_id}", response_class=HTMLResponse, include_in_schema=False)
async def task_decision(request: Request, user: CurrentUser, dag_id: str, run_id: str, task_id: str,
                        map_index: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
    """One task instance's decision and record, every try: where the "Carbon decision" extra link points."""
    index = parse_map_index(map_index)
    parts = [quote(part, safe="") for part in (dag_id, run_id, task_id)]
    airflow_href = relative_base(request) + "../dags/{}/runs/{}/tasks/{}".format(*parts)
    if index >= 0:
        airflow_href += f"/mapped/{index}"
    return _render(request, "task.html", nav="", dag_id=dag_id, run_id=run_id, task_id=task_id,
                   map_index=index, airflow_href=airflow_href, charts=True)


@router.get("/simulate", response_class=HTMLResponse, include_in_schema=False)
async def simulate(request: Request, user: CurrentUser) -> HTMLResponse:
    """Upload jobs, carbon and solar CSVs and compare policies, as ``airflow-carbon simulate`` does."""
    from airflow_carbon.planning import DEFAULT_MAX_DELAY, DEFAULT_THRESHOLD_G_PER_KWH, POLICIES
    from airflow_carbon.units import parse_duration

    default_max_delay = next((value for value, _ in MAX_DELAYS if parse_duration(value) == DEFAULT_MAX_DELAY), None)
    return _render(request, "simulate.html", nav="simulate", policies=list(POLICIES), max_delays=MAX_DELAYS,
                   default_max_delay=default_max_delay, default_threshold=f"{DEFAULT_THRESHOLD_G_PER_KWH:g}")


@router.get("/control", response_class=HTMLResponse, include_in_schema=False)
async def control(request: Request, user: CurrentUser) -> HTMLResponse:
    """Eco-mode switches, budgets and the audit log, with the forms that change them (``api/eco``, ...)."""
    return _render(request, "control.html", nav="control")


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
async def api_docs(request: Request, user: CurrentUser) -> HTMLResponse:
    """The JSON API's OpenAPI page: Swagger UI shipped in the package (``static/vendor``), under the pages' CSP."""
    return _render(request, "docs.html")
