"""The Carbon plugin's HTML pages: auth, relative URLs, local assets only, escaping, dark mode.

The pages are served by ``pages.router`` in an app assembled here, next to stub JSON routes that
follow the backend's contract (the pages must not need more than that), and the ``static/`` mount.
Auth is the one thing replaced: ``get_user`` becomes a fake that accepts one token, as a Bearer
header or as the UI's ``_token`` cookie, and answers 401 otherwise (the backend's tests cover the
real auth).
"""

from __future__ import annotations

import base64
import configparser
import fnmatch
import io
import math
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urljoin, urlsplit

import pytest
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import APIRouter, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient

from airflow_carbon.plugins import pages

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "airflow_carbon" / "plugins"
STATIC = PLUGIN / "static"
TEMPLATES = PLUGIN / "templates"
TOKEN = "page-test-token"
XSS_TASK = "<script>alert(1)"
REPLAYED_RUN = "replayed_run"
WAITING_RUN = "waiting_run"
#: A run whose completed try was recorded before records said how their energy was obtained (those fields NULL).
OLD_RUN = "recorded_before_energy_methods"
#: How the stub's completed try obtained its energy, and what its plan expected (learned from three earlier tries).
ENERGY_FIELDS = {"energy_method": "cpu=estimated-cpu-model, ram=estimated-ram-model", "energy_scope": "process",
                 "energy_breakdown_kwh": {"cpu": 0.0004, "ram": 0.00005}, "pue": 1.2,
                 "energy_notes": ["cpu: codecarbon's constant 4 W per thread: the CPU model is not in its table"],
                 "expected_duration_s": 600.0, "expected_energy_kwh": 0.0006, "expected_from": "history (n=3)"}
#: A run whose task chose between regions: FR over its home DE, PL's signal failed; its chosen task has finished.
CHOICE_RUN = "chose_a_region"
#: The same choice before its chosen task finished: no energy, no split yet.
CHOICE_PENDING_RUN = "chose_a_region_running"
CHOICE_FIELDS = {"region": "FR", "home_region": "DE", "chosen_task_id": "evaluate_fr",
                 "region_expected_g": {"DE": 412.0, "FR": 48.5, "PL": None},
                 "failed_sources": ["PL: conn:<b>em_pl</b>: HTTP 503"], "energy_scope": "gated"}
#: What the stub's release route was asked, in order.
RELEASES: list[dict[str, Any]] = []
PAGES = ["/", "/dag/translate_docs", "/task/translate_docs/scheduled__2025-03-01T00:00:00+00:00/translate?map_index=-1",
         "/simulate"]


# -- a fake user and the stub JSON API --------------------------------------------------------------

class PageUser(BaseUser):
    def get_id(self) -> str:
        return "page-tester"

    def get_name(self) -> str:
        return "page-tester"


def fake_get_user(request: Request) -> BaseUser:
    """``get_user``'s contract: the Bearer header or the ``_token`` cookie, else 401."""
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else request.cookies.get("_token")
    if token != TOKEN:
        raise HTTPException(status_code=401, detail="Not authenticated")
    return PageUser()


NOW = datetime.now(UTC).replace(second=0, microsecond=0)
DAY0 = (NOW - timedelta(days=3)).replace(hour=0, minute=0)


def _iso(instant: datetime) -> str:
    return instant.isoformat()


def _intensity_at(instant: datetime) -> float:
    """A day-shaped grid: dirty in the evening, clean around noon and at night."""
    hours = instant.timestamp() / 3600.0
    return round(260 + 120 * math.sin(2 * math.pi * (hours - 9) / 24) + 40 * math.sin(2 * math.pi * hours / 7), 1)


def seeded_tasks() -> list[dict[str, Any]]:
    rows = []
    tasks = [("translate_docs", "translate"), ("summarize_logs", "summarize"), ("summarize_logs", XSS_TASK)]
    for day in range(3):
        for hour in (1, 6, 9, 15, 19, 22):
            for index, (dag_id, task_id) in enumerate(tasks):
                ready = DAY0 + timedelta(days=day, hours=hour, minutes=7 * index)
                delay = timedelta(minutes=[0, 25, 95, 170, 40, 0][(hour + index) % 6])
                started = ready + delay
                ended = started + timedelta(minutes=12)
                energy = 0.04 + 0.01 * index
                intensity, baseline = _intensity_at(started), _intensity_at(ready)
                solar = round(energy * 0.4, 4) if 9 <= started.hour <= 15 and dag_id == "summarize_logs" else 0.0
                emissions = (energy - solar) * intensity
                baseline_g = energy * baseline
                site = {"site": "roof" if index == 1 else "barn", "solar_served_by": "conn:inverter",
                        "solar_basis": "measured" if day < 2 else "measured+forecast"}
                rows.append({**(site if dag_id == "summarize_logs" else {}), "grid_kwh": energy - solar,
                    "dag_id": dag_id, "task_id": task_id, "run_id": f"scheduled__{_iso(ready)}", "map_index": -1,
                    "try_number": 1, "region": "DE", "source": "electricitymaps", "policy": "forecast",
                    "reason": "green_window" if delay else "immediate", "ready_at": _iso(ready),
                    "started_at": _iso(started), "ended_at": _iso(ended), "deadline": _iso(ready + timedelta(hours=4)),
                    "delay_s": delay.total_seconds(), "intensity_g_per_kwh": intensity,
                    "baseline_intensity_g_per_kwh": baseline, "energy_kwh": energy, "solar_kwh": solar,
                    "emissions_g": emissions, "baseline_emissions_g": baseline_g, "saved_g": baseline_g - emissions,
                    "estimated": index == 1, "served_by": "electricitymaps", "failed_sources": [],
                })
                if day == 2 and dag_id == "translate_docs":  # the last day's translations chose between regions
                    saved = rows[-1]["saved_g"]
                    rows[-1] |= {"saved_time_g": round(saved / 4, 3), "saved_place_g": round(saved - saved / 4, 3)}
    return rows


def seeded_deferred() -> list[dict[str, Any]]:
    rows = []
    for index, (dag_id, task_id, map_index) in enumerate(
            [("translate_docs", "translate", -1), ("summarize_logs", XSS_TASK, 3)]):
        ready = NOW - timedelta(minutes=12 + 30 * index)
        planned = NOW + timedelta(minutes=50 + 40 * index)
        now_g, later_g = 14.2 - index, 9.1 - index
        rows.append({
            "dag_id": dag_id, "task_id": task_id, "run_id": f"manual__{_iso(ready)}", "map_index": map_index,
            "try_number": 1, "region": "DE", "source": "electricitymaps",
            "served_by": "electricitymaps" if index == 0 else "ukgrid", "policy": "forecast",
            "reason": "green_window", "ready_at": _iso(ready), "planned_start": _iso(planned),
            "deadline": _iso(ready + timedelta(hours=4)), "current_intensity_g_per_kwh": _intensity_at(NOW),
            "state": "deferred", "decided_at": _iso(NOW - timedelta(minutes=5)), "airflow_state": "deferred",
            "airflow_try_number": 1,
            "expected_emissions_now_g": now_g, "expected_emissions_at_start_g": later_g,
            "expected_saving_g": now_g - later_g, "waited_s": (NOW - ready).total_seconds(),
            "remaining_s": (ready + timedelta(hours=4) - NOW).total_seconds(),
        })
    return rows


def _matches(row: dict[str, Any], dag_id: str, task_id: str, region: str) -> bool:
    return all(not want or row.get(key) == want for key, want in
               (("dag_id", dag_id), ("task_id", task_id), ("region", region)))


def history_rows(dag_id: str = "", task_id: str = "", region: str = "") -> list[dict[str, Any]]:
    days: dict[tuple[str, str], dict[str, Any]] = {}
    for row in seeded_tasks():
        if not _matches(row, dag_id, task_id, region):
            continue
        key = (row["dag_id"], row["started_at"][:10])
        day = days.setdefault(key, {"dag_id": key[0], "day": key[1], "tasks_run": 0, "delayed": 0,
                                    "forced_by_deadline": 0, "served_by_fallback": 0, "energy_kwh": 0.0,
                                    "emissions_g": 0.0, "baseline_emissions_g": 0.0, "saved_g": 0.0})
        day["tasks_run"] += 1
        day["delayed"] += row["delay_s"] > 0
        for name in ("energy_kwh", "solar_kwh", "grid_kwh", "emissions_g", "baseline_emissions_g", "saved_g"):
            day[name] = day.get(name, 0.0) + row[name]
        for name in ("saved_time_g", "saved_place_g"):  # as SQL sums: null where no try has the figure
            if row.get(name) is not None:
                day[name] = day.get(name, 0.0) + row[name]
    return [day | {"saved_pct": 100 * day["saved_g"] / day["baseline_emissions_g"]} for day in days.values()]


def solar_rows(dag_id: str = "", task_id: str = "", region: str = "") -> list[dict[str, Any]]:
    """The two sites of ``summarize_logs``' tasks, ``roof`` giving more than ``barn``, their last day's output partly
    a forecast; ``translate_docs`` has no site."""
    days: dict[tuple[str, str], dict[str, Any]] = {}
    for row in seeded_tasks():
        if not _matches(row, dag_id, task_id, region) or "site" not in row:
            continue
        site = row["site"]
        key = (site, row["started_at"][:10])
        day = days.setdefault(key, {"site": site, "day": key[1], "tasks_run": 0, "solar_kwh": 0.0, "grid_kwh": 0.0})
        day["tasks_run"] += 1
        day["solar_kwh"] += row["solar_kwh"]
        day["grid_kwh"] += row["grid_kwh"]
    last = max((name for _, name in days), default="")
    for (site, name), day in days.items():
        output = 0.5 if site == "roof" else 0.2
        measured = output if name < last else output / 2
        day |= {"output_kwh": output, "measured_kwh": measured, "used_kwh": day["solar_kwh"] + 0.01,
                "output_basis": "measured" if measured == output else "measured+forecast"}
    return sorted(days.values(), key=lambda day: (day["site"], day["day"]))


PNG_1PX = "data:image/png;base64," + base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d6a0b80000000049454e44ae426082")).decode()


def stub_api(*, empty: bool = False) -> APIRouter:
    """The backend's JSON routes as the contract describes them, over seeded rows (or none)."""
    api = APIRouter()

    @api.get("/deferred")
    def deferred(dag_id: str = "") -> list[dict[str, Any]]:
        return [] if empty else [r for r in seeded_deferred() if _matches(r, dag_id, "", "")]

    @api.get("/history")
    def history(dag_id: str = "", task_id: str = "", region: str = "", start: str = "", end: str = ""):
        return [] if empty else history_rows(dag_id, task_id, region)

    @api.get("/history.csv", response_class=PlainTextResponse)
    def history_csv(dag_id: str = "", task_id: str = "", region: str = "", start: str = "", end: str = ""):
        rows = [] if empty else history_rows(dag_id, task_id, region)
        return "dag_id,day,tasks_run\n" + "".join(f"{r['dag_id']},{r['day']},{r['tasks_run']}\n" for r in rows)

    @api.get("/solar")
    def solar(dag_id: str = "", task_id: str = "", region: str = "", start: str = "", end: str = ""):
        return [] if empty else solar_rows(dag_id, task_id, region)

    @api.get("/tasks")
    def tasks(dag_id: str = "", task_id: str = "", region: str = "", start: str = "", end: str = "",
              limit: int = 1000) -> list[dict[str, Any]]:
        return [] if empty else [r for r in seeded_tasks() if _matches(r, dag_id, task_id, region)][-limit:]

    @api.get("/decision/{dag_id}/{run_id}/{task_id}")
    def decision(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        if empty:
            return []
        first = seeded_tasks()[1] | {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
        decided = datetime.fromisoformat(first["ready_at"])
        common = {"planned_start": first["started_at"], "decided_at": _iso(decided), "expected_emissions_now_g": 11.0,
                  "expected_emissions_at_start_g": 8.2}
        common |= {"airflow_state": "success", "airflow_try_number": 2}  # Airflow's task instance now
        retry = first | common | {"try_number": 2, "state": "completed", "failed_sources": ["watttime: GET /v3: 503"]}
        if run_id != OLD_RUN:  # 12 minutes, 0.00054 kWh: 0.00045 kWh of IT energy times a PUE of 1.2
            retry |= ENERGY_FIELDS | {"energy_kwh": 0.00054}
        deferred = first | common | {"state": "deferred", "started_at": None, "ended_at": None}
        if run_id == REPLAYED_RUN:  # try 1 planned on the bundled data replayed onto today, try 2 on a live source
            deferred["signal"], retry["signal"] = "replay of /data/de_ci.csv", "electricitymaps:DE"
        if run_id == CHOICE_RUN:
            return [retry | CHOICE_FIELDS | {"energy_method": "gated: cpu=measured-rapl", "saved_time_g": 120.0,
                                             "saved_place_g": -15.5}]
        if run_id == CHOICE_PENDING_RUN:
            return [retry | CHOICE_FIELDS | {"energy_method": "none", "energy_kwh": 0.0, "saved_g": None}]
        if run_id == WAITING_RUN:  # one try, deferred in Airflow too
            return [deferred | {"airflow_state": "deferred", "airflow_try_number": 1}]
        return [deferred, retry]

    @api.post("/release/{dag_id}/{run_id}/{task_id}")
    def release(dag_id: str, run_id: str, task_id: str, body: dict[str, Any], map_index: int = -1) -> dict[str, Any]:
        if task_id == XSS_TASK:
            raise HTTPException(status_code=403, detail="you may not edit the task instances of DAG 'summarize_logs'")
        if not str(body.get("reason", "")).strip():
            raise HTTPException(status_code=400, detail="reason: give one")
        RELEASES.append({"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, **body})
        return {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, "try_number": 1,
                "released_by": "page-tester", "released_at": _iso(NOW), "reason": body["reason"]}

    @api.get("/intensity")
    def intensity(source: str = "", region: str = "", start: str = "", end: str = "") -> dict[str, Any]:
        first = datetime.fromisoformat(start.replace("Z", "+00:00")) if start else DAY0
        last = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else NOW + timedelta(hours=12)
        first = first.replace(minute=0, second=0, microsecond=0)
        points, instant = [], first
        while instant <= last and not empty:
            points.append([_iso(instant), _intensity_at(instant)])
            instant += timedelta(minutes=30)
        return {"region": region or "DE", "source": source or "electricitymaps", "period_s": 1800, "points": points}

    @api.post("/simulate")
    async def simulate(jobs: Annotated[UploadFile, File()], carbon: Annotated[UploadFile, File()],
                       solar: Annotated[UploadFile | None, File()] = None,
                       policies: Annotated[str, Form()] = "immediate,forecast") -> dict[str, Any]:
        if b"bad" in await jobs.read():
            raise HTTPException(status_code=400, detail="jobs.csv: line 3, column timestamp: not an ISO 8601 "
                                                        "timestamp: '<b>yesterday</b>'")
        rows = [{"policy": name, "jobs": 55, "delayed": 30 * (name != "immediate"), "max_delay_h": 3.5,
                 "mean_delay_h": 1.2, "baseline_kg": 1.262, "scheduled_kg": 1.262 - 0.1 * i, "saving_pct": 7.9 * i,
                 "deadline_misses": 0, "energy_kwh": 4.2, "solar_kwh": 0.0, "net_baseline_kg": 1.262,
                 "net_kg": 1.262 - 0.1 * i, "net_saving_pct": 7.9 * i}
                for i, name in enumerate(policies.split(","))]
        return {"policies": rows, "table": "policy  jobs\n...", "figures": {"grid_intensity": PNG_1PX}}

    return api


def page_app(*, empty: bool = False, api: APIRouter | None = None) -> FastAPI:
    """What Airflow mounts at ``/carbon``, with a stub API (``stub_api`` unless given): JSON at ``/api``, pages at
    ``/``, ``/static``."""
    app = FastAPI()
    app.include_router(api or stub_api(empty=empty), prefix="/api")
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.dependency_overrides[get_user] = fake_get_user
    return app


def plugin_app() -> FastAPI:
    """The backend's own app (its API, the pages, the static files), with the same fake ``get_user``."""
    from airflow_carbon.plugins.app import create_app

    app = create_app()
    app.dependency_overrides[get_user] = fake_get_user
    return app


APPS = {"stub": page_app, "plugin": plugin_app}


@pytest.fixture(scope="module", params=list(APPS))
def any_app(request) -> FastAPI:
    """Each page test runs over the stub app and over the plugin's real app."""
    return APPS[request.param]()


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(page_app(), headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def anonymous() -> TestClient:
    return TestClient(page_app())


# -- HTML helpers ----------------------------------------------------------------------------------

class Links(HTMLParser):
    """Every URL a page references (src, href, action) and its scripts and inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.inline_scripts = 0
        self.style_attrs = 0
        self.html_attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "html":
            self.html_attrs = named
        for name in ("src", "href", "action"):
            if named.get(name) is not None:
                self.urls.append((tag, name, named[name] or ""))
        if tag == "script" and not named.get("src"):
            self.inline_scripts += 1
        if "style" in named:
            self.style_attrs += 1


def parse(text: str) -> Links:
    links = Links()
    links.feed(text)
    return links


def own_js() -> list[Path]:
    return sorted((STATIC / "js").glob("*.js"))


# -- auth ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_with_a_token_and_401_without(any_app, path):
    page = TestClient(any_app, headers={"Authorization": f"Bearer {TOKEN}"}).get(path)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    anonymous = TestClient(any_app)
    assert anonymous.get(path).status_code == 401
    assert anonymous.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert TestClient(any_app, cookies={"_token": TOKEN}).get(path).status_code == 200  # the UI's session cookie


# -- relative URLs, local files only ---------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES)
def test_pages_reference_only_relative_urls_that_resolve_to_local_files(any_app, path):
    client = TestClient(any_app, headers={"Authorization": f"Bearer {TOKEN}"})
    page = client.get(path)
    links = parse(page.text)
    assert links.urls
    for tag, attr, url in links.urls:
        parts = urlsplit(url)
        assert not parts.scheme or url.startswith("data:"), (tag, attr, url)
        assert not parts.netloc and not url.startswith("/"), (tag, attr, url)
        if tag in ("script", "link") and not url.startswith("data:"):
            # resolved against the page's own URL, as a browser does, each one is served
            target = urljoin(f"http://testserver{path}", url)
            assert client.get(target).status_code == 200, (path, url, target)
    assert links.inline_scripts == 0 and links.style_attrs == 0  # the CSP allows neither
    assert "script-src 'self'" in page.headers["content-security-policy"]


@pytest.mark.parametrize(("path", "base"), [("/", "./"), ("/simulate", "./"), ("/dag/d", "../"),
                                             ("/task/d/r/t", "../../../")])
def test_the_base_climbs_back_to_the_plugin_root(client, path, base):
    links = parse(client.get(path).text)
    assert links.html_attrs["data-base"] == base
    assert any(url.startswith(f"{base}static/") for _, _, url in links.urls)


def test_under_a_mount_prefix_the_assets_and_the_api_resolve_below_it():
    """As Airflow mounts the sub-app at /carbon (and a proxy may add its own prefix)."""
    outer = FastAPI()
    outer.mount("/proxy/carbon", page_app())
    client = TestClient(outer, headers={"Authorization": f"Bearer {TOKEN}"})
    for path in PAGES:
        url = f"http://testserver/proxy/carbon{path}"
        links = parse(client.get(url).text)
        base = urljoin(url, links.html_attrs["data-base"])
        assert base == "http://testserver/proxy/carbon/", path
        assert client.get(urljoin(base, "api/deferred")).status_code == 200
        for tag, _, src in links.urls:
            if tag in ("script", "link") and not src.startswith("data:"):
                assert client.get(urljoin(url, src)).status_code == 200, (path, src)


def test_no_script_or_style_reaches_for_another_host():
    remote = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|"""
                        r"""import\s*(?:[^'"]*from\s*)?["'](?:https?:)?//|fetch\(\s*["'`](?:https?:)?//""", re.I)
    files = [*own_js(), *STATIC.glob("*.css"), *TEMPLATES.glob("*.html"), *(STATIC / "vendor").glob("*.js"),
             *(STATIC / "vendor").glob("*.css")]
    assert len(own_js()) >= 4
    for path in files:
        assert not remote.search(path.read_text()), path
    for path in [*own_js(), *STATIC.glob("*.css"), *TEMPLATES.glob("*.html")]:
        assert "http://" not in path.read_text() and "https://" not in path.read_text(), path


def test_own_scripts_import_only_their_siblings():
    for path in own_js():
        for target in re.findall(r"""from\s+["']([^"']+)["']""", path.read_text()):
            assert target.startswith("./") and (path.parent / target).is_file(), (path.name, target)


# -- the vendored chart library --------------------------------------------------------------------

def test_the_vendored_chart_library_is_served_with_its_licence(client):
    script = client.get("/static/vendor/uPlot.iife.min.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.text.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert client.get("/static/vendor/uPlot.min.css").status_code == 200
    licence = (STATIC / "vendor" / "LICENSE").read_text()
    assert "MIT License" in licence and "Leon Sorokin" in licence
    readme = (STATIC / "vendor" / "README.md").read_text()
    assert "uPlot" in readme and "1.6.32" in readme and "MIT" in readme
    charts = [page for page in ("/", "/dag/d", "/task/d/r/t") if "vendor/uPlot.iife.min.js" in client.get(page).text]
    assert len(charts) == 3


# -- escaping --------------------------------------------------------------------------------------

def test_a_task_id_like_script_is_escaped_on_the_decision_page(client):
    page = client.get("/task/my_dag/manual__1/%3Cscript%3Ealert(1)", params={"map_index": 2}).text
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)" in page
    assert 'data-task-id="&lt;script&gt;alert(1)"' in page


def test_filters_are_escaped_and_carried_to_the_csv_link(client):
    evil = '"><script>alert(1)</script>'
    page = client.get("/", params={"task_id": evil, "dag_id": "translate_docs", "from": "2025-03-01",
                                   "to": "2025-03-02"}).text
    assert "<script>alert(1)</script>" not in page
    assert "&#34;&gt;&lt;script&gt;" in page or "&quot;&gt;&lt;script&gt;" in page
    href = next(url for tag, _, url in parse(page).urls if "history.csv" in url)
    assert href.startswith("./api/history.csv?")
    query = dict(part.split("=", 1) for part in urlsplit(href).query.split("&"))
    assert query["dag_id"] == "translate_docs" and query["start"] == "2025-03-01" and query["end"] == "2025-03-02"
    assert "alert" in query["task_id"] and "<" not in query["task_id"]


def test_the_dag_page_fixes_the_dag_and_escapes_it(client):
    page = client.get("/dag/%3Cb%3Ebold", params={"dag_id": "other"}).text
    assert "<b>bold" not in page and "&lt;b&gt;bold" in page
    assert 'data-query="{&#34;dag_id&#34;: &#34;&lt;b&gt;bold&#34;}"' in page
    href = next(url for tag, _, url in parse(page).urls if "history.csv" in url)
    assert href == "../api/history.csv?dag_id=%3Cb%3Ebold"


@pytest.mark.parametrize(("query", "index"), [("", "-1"), ("?map_index=-1", "-1"), ("?map_index=4", "4"),
                                              ("?map_index={MAP_INDEX}", "-1"), ("?map_index=%7BMAP_INDEX%7D", "-1")])
def test_the_decision_page_reads_the_map_index_as_the_ui_fills_it(client, query, index):
    page = client.get(f"/task/d/r/t{query}")
    assert page.status_code == 200
    assert f'data-map-index="{index}"' in page.text
    assert ("/mapped/4" in page.text) == (index == "4")


def test_a_map_index_that_is_not_a_number_is_refused(client):
    assert client.get("/task/d/r/t?map_index=two").status_code == 400


def test_a_bad_day_is_reported_not_sent(client):
    page = client.get("/", params={"from": "2025-13-01"}).text
    assert "must be days" in page
    assert 'data-query="{}"' in page


def test_scripts_insert_text_never_html():
    for path in own_js():
        source = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in source, (path.name, sink)


# -- theme -----------------------------------------------------------------------------------------

def test_dark_mode_follows_the_os_and_the_theme_parameter(client):
    css = client.get("/static/carbon.css").text
    assert "color-scheme: light dark;" in css and "--bg: light-dark(#ffffff, #111111);" in css  # with the OS
    assert ':root[data-theme="dark"] { color-scheme: dark; }' in css
    assert ':root[data-theme="light"] { color-scheme: light; }' in css
    assert parse(client.get("/", params={"theme": "dark"}).text).html_attrs["data-theme"] == "dark"
    assert parse(client.get("/simulate", params={"theme": "light"}).text).html_attrs["data-theme"] == "light"
    assert "data-theme" not in parse(client.get("/", params={"theme": "<x>"}).text).html_attrs
    # links between pages keep the theme
    nav = [url for tag, _, url in parse(client.get("/dag/d", params={"theme": "dark"}).text).urls if tag == "a"]
    assert "../simulate?theme=dark" in nav


# -- the simulation form talks the contract ---------------------------------------------------------

def test_the_simulation_page_offers_every_policy_and_posts_to_the_api(client):
    from airflow_carbon.planning import POLICIES

    page = client.get("/simulate").text
    for name in POLICIES:
        assert f'name="policies" value="{name}"' in page
    for field in ('name="jobs"', 'name="carbon"', 'name="solar"', 'name="max_delay"', 'name="threshold"',
                  'name="solar_threshold_kw"', 'name="forecast_error"', 'name="min_saving_pct"', 'name="region"'):
        assert field in page
    script = (STATIC / "js" / "simulate.js").read_text()
    assert 'api("simulate")' in script and "FormData" in script and "errorMessage(response)" in script


def test_the_stub_simulation_answers_like_the_contract(client):
    files = {"jobs": ("jobs.csv", io.BytesIO(b"bad"), "text/csv"), "carbon": ("c.csv", io.BytesIO(b"x"), "text/csv")}
    error = client.post("/api/simulate", files=files)
    assert error.status_code == 400 and "line 3" in error.json()["detail"]


# -- packaging -------------------------------------------------------------------------------------

def test_every_page_asset_is_package_data():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["airflow_carbon"].replace("\n", ",").split(",")]
    package = ROOT / "airflow_carbon"
    assets = [p for p in [*STATIC.rglob("*"), *TEMPLATES.rglob("*")] if p.is_file()]
    assert len(assets) >= 10
    for asset in assets:
        relative = asset.relative_to(package).as_posix()
        assert any(fnmatch.fnmatchcase(relative, pattern) and relative.count("/") == pattern.count("/")
                   for pattern in patterns), relative


# -- the page as a browser renders it ----------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # `make test` installs Debian's chromium


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1, for a browser, as an anonymous user may see it."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.dependency_overrides[get_user] = lambda: PageUser()  # a browser run without a login
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def live_url():
    with served(page_app()) as url:
        yield url


def dump_dom(url: str) -> str:
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000",
         "--window-size=1400,1000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90, check=False,
    )
    return result.stdout


def test_the_browser_renders_the_rows_as_text(live_url):
    dom = dump_dom(f"{live_url}/")
    assert 'id="deferred-count">2<' in dom
    assert "&lt;script&gt;alert(1)" in dom and "<script>alert(1)" not in dom
    assert "translate_docs" in dom and "Download CSV" in dom
    assert dom.count("<canvas") >= 4  # intensity, delays, emissions, solar
    assert "Could not load" not in dom
    # Solar per day: two sites to pick from, the one with the most output first, and both series drawn.
    assert re.search(r'<select id="solar-site" aria-label="Site">\s*<option value="roof">roof</option>'
                     r'<option value="barn">barn</option>', dom), dom
    assert 'aria-label="site output and used by these tasks per UTC day, 3 days from ' in dom
    assert '<div class="key" id="solar-key">' in dom
    note = re.search(r'id="solar-note">([^<]*)<', dom).group(1)
    assert note.startswith("kWh per UTC day at roof: its panels' output (measured where a meter covered it, else "
                           "forecast) beside"), note
    assert "Tasks not shown here" in note
    assert "<th scope=\"col\" class=\"num\">Solar</th>" in dom and "<th scope=\"col\" class=\"num\">Grid</th>" in dom


def test_the_solar_chart_says_why_it_is_empty(live_url):
    dom = dump_dom(f"{live_url}/?region=nowhere")  # no task ran
    assert "No carbon-aware task has run yet." in dom and "No site reports solar output yet." not in dom
    dom = dump_dom(f"{live_url}/?task_id=translate")  # tasks ran, none had a site
    assert "No site reports solar output yet." in dom and 'id="solar-key" hidden' in dom


def test_the_browser_renders_the_decision_of_every_try(live_url):
    dom = dump_dom(f"{live_url}/task/summarize_logs/run_1/%3Cscript%3Ealert(1)?map_index=-1")
    assert "Try 2" in dom and "Try 1" in dom
    # Try 1 is still deferred in the store, but Airflow is at try 2: it is not waiting, and says so.
    assert ("Not waiting: Airflow has this task instance success (at try 2). Its last plan: waiting for a cleaner "
            "window.") in dom and "watttime: GET /v3: 503" in dom
    assert re.search(r"<dt>In Airflow now</dt><dd[^>]*>success</dd>", dom)
    assert "Run now" not in dom
    # Its site, the solar source that answered and how the solar figure was obtained.
    assert re.search(r"<dt>Site</dt><dd[^>]*>roof</dd>", dom) and re.search(
        r"<dt>Solar source</dt><dd[^>]*>conn:inverter</dd>", dom)
    assert re.search(r"<dt>Solar figure from</dt><dd[^>]*>the site's measured output</dd>", dom)
    assert "<canvas" in dom and "<script>alert(1)" not in dom


def test_the_decision_page_marks_a_try_that_planned_on_replayed_data(live_url):
    dom = dump_dom(f"{live_url}/task/summarize_logs/{REPLAYED_RUN}/summarize?map_index=-1")
    tries = {re.search(r"<h2>Try (\d+)", panel).group(1): panel
             for panel in dom.split('<section class="panel">') if re.search(r"<h2>Try \d+", panel)}
    assert set(tries) == {"1", "2"}, dom
    assert re.search(r'<span class="badge warn replayed" title="The plan used recorded past data '
                     r'\(/data/de_ci.csv\) shifted onto today, not a forecast[^"]*">replayed data</span>', tries["1"])
    assert re.search(r"<dt>Signal</dt><dd[^>]*>replay of /data/de_ci.csv</dd>", tries["1"])
    assert "replayed data" not in tries["2"]
    assert re.search(r"<dt>Signal</dt><dd[^>]*>electricitymaps:DE</dd>", tries["2"])


def test_a_finished_try_shows_expected_beside_measured_and_how_its_energy_was_obtained(live_url):
    dom = dump_dom(f"{live_url}/task/translate_docs/run_1/translate?map_index=-1")
    table = re.search(r'<div class="expected-measured">.*?</table>', dom, re.S).group(0)
    assert "Expected from: history (n=3)" in table
    cells = [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", table, re.S)]
    assert cells == ["Duration", "10 min", "12 min", "+20.0 %", "Energy", "0.6 Wh", "0.5 Wh", "-10.0 %"], cells
    assert re.search(r"<dt>Method</dt><dd[^>]*>cpu=estimated-cpu-model, ram=estimated-ram-model</dd>", dom)
    assert re.search(r"<dt>Scope</dt><dd[^>]*>process</dd>", dom)
    assert re.search(r"<dt>PUE</dt><dd[^>]*>1.2 \(the IT energy times this\)</dd>", dom)
    assert "<li>cpu: 0.4 Wh</li><li>ram: 50 mWh</li>" in dom
    assert "codecarbon's constant 4 W per thread" in dom

    dom = dump_dom(f"{live_url}/task/translate_docs/{OLD_RUN}/translate?map_index=-1")
    assert re.search(r"<dt>Method</dt><dd[^>]*>declared or assumed \(recorded before energy methods\)</dd>", dom)
    assert "Expected from: not recorded (recorded before expectations)" in dom


def test_the_decision_of_a_choice_between_regions_says_where_and_splits_the_saving(live_url):
    dom = dump_dom(f"{live_url}/task/translate_docs/{CHOICE_RUN}/choose_region?map_index=-1")
    where = re.search(r'<div class="where">.*?</p>', dom, re.S).group(0)
    assert re.search(r"<dt>Chosen region</dt><dd[^>]*>FR</dd>", where)
    assert re.search(r"<dt>Task that runs there</dt><dd[^>]*>evaluate_fr</dd>", where)
    assert re.search(r"<dt>Home region</dt><dd[^>]*>DE</dd>", where)
    rows = [[re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", where.split("<tbody>")[1], re.S)]
    assert rows == [["DE", "412 g", "home: the baseline"], ["FR", "48.5 g", "chosen"],
                    ["PL", "\u2013", "its signal failed: PL: conn:&lt;b&gt;em_pl&lt;/b&gt;: HTTP 503"]], rows
    assert "<b>em_pl" not in dom
    assert re.sub(r"<[^>]+>", "", re.search(r'<p class="split">.*?</p>', where).group(0)) == (
        "Time saved 120 g, place saved -15.5 g.")
    assert '<span class="bad">-15.5 g</span>' in where and '<span class="good">120 g</span>' in where

    dom = dump_dom(f"{live_url}/task/translate_docs/{CHOICE_PENDING_RUN}/choose_region?map_index=-1")
    assert "are added to this record when evaluate_fr finishes." in dom and "Time saved" not in dom
    # A try without a choice has no such section.
    assert '<div class="where">' not in dump_dom(f"{live_url}/task/translate_docs/run_1/translate?map_index=-1")


def test_the_history_shows_the_split_of_the_saving_where_tasks_chose_a_region(live_url):
    dom = dump_dom(f"{live_url}/?dag_id=translate_docs")
    splits = re.findall(r'<div class="small muted split">time ([^<]*) · place ([^<]*)</div>', dom)
    # The last day's row and the total, the days before without a choice have none.
    assert len(splits) == 2 and all(part != "\u2013" for split in splits for part in split), splits
    assert splits[0] == splits[1]


def test_a_decision_whose_latest_try_waits_offers_run_now(live_url):
    dom = dump_dom(f"{live_url}/task/translate_docs/{WAITING_RUN}/translate?map_index=-1")
    assert "Waiting for a cleaner window" in dom and "Not waiting" not in dom
    assert re.search(r"<dt>In Airflow now</dt><dd[^>]*>deferred</dd>", dom)
    assert '<button type="button" class="release-open"' in dom and ">Run now</button>" in dom


@pytest.fixture
def browser_page(live_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))  # the iframe forbids them
        yield page
        browser.close()


def test_run_now_asks_why_releases_and_says_who_and_when(live_url, browser_page):
    from playwright.sync_api import expect

    RELEASES.clear()
    page = browser_page
    page.goto(f"{live_url}/")
    row = page.locator("#deferred-body tbody tr").filter(has_text="translate_docs")
    expect(row).to_have_count(1, timeout=20_000)
    run = row.locator(".run")
    expect(run).to_have_text(re.compile(r"^manual__.*\+00:00$"))  # the whole id, not cut
    assert run.evaluate("(node) => node.scrollWidth <= node.clientWidth")
    row.get_by_role("button", name="Run now").click()
    row.get_by_label("Reason to run it now").fill("  the quarterly report is due  ")
    row.locator("form.release-form button[type=submit]").click()
    expect(row.locator(".release-done")).to_contain_text("released, starting", timeout=10_000)
    expect(row.locator(".release-done")).to_contain_text("Released by page-tester at")
    expect(row.locator(".release-done")).to_contain_text("within ~15 s")
    [asked] = RELEASES
    assert asked["dag_id"] == "translate_docs" and asked["map_index"] == -1
    assert asked["reason"] == "the quarterly report is due" and asked["run_id"].startswith("manual__")


def test_run_now_shows_the_apis_refusal_and_keeps_the_form(live_url, browser_page):
    from playwright.sync_api import expect

    RELEASES.clear()
    page = browser_page
    page.goto(f"{live_url}/")
    row = page.locator("#deferred-body tbody tr").filter(has_text="summarize_logs")
    row.get_by_role("button", name="Run now").click(timeout=20_000)
    row.locator("form.release-form button[type=submit]").click()  # no reason: asked for one, nothing sent
    assert row.get_by_label("Reason to run it now").evaluate("(node) => node.validity.valueMissing")
    row.get_by_label("Reason to run it now").fill("urgent")
    row.locator("form.release-form button[type=submit]").click()
    outcome = row.locator(".release-outcome")
    expect(outcome).to_have_text("Not allowed: you may not edit the task instances of DAG 'summarize_logs'",
                                 timeout=10_000)
    expect(row.locator("form.release-form")).to_have_count(1)
    assert RELEASES == [] and row.locator(".release-done").count() == 0
