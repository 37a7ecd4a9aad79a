"""The Control page: auth, navigation, local assets only, and what a browser renders from the control API.

As in ``test_pages``: the page router next to stub JSON routes that follow the control API's contract, with a
fake ``get_user``. The routes themselves are tested against the real store and auth manager in ``test_control``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from tests.plugins.test_pages import STATIC, TOKEN, XSS_TASK, dump_dom, page_app, parse, served

NOW = datetime.now(UTC).replace(microsecond=0)


def stub_control_api() -> APIRouter:
    api = APIRouter()

    @api.get("/eco")
    def eco() -> dict[str, Any]:
        return {"now": NOW.isoformat(), "off_everywhere": True, "switches": [
            {"dag_id": None, "until": (NOW + timedelta(hours=2)).isoformat(), "windows": [], "set_by": "admin",
             "set_at": NOW.isoformat(), "reason": "incident INC-7", "active": True},
            {"dag_id": "reports", "until": None, "windows": ["weekdays 08:00-10:00"], "set_by": "cli:oncall",
             "set_at": NOW.isoformat(), "reason": XSS_TASK, "active": False}]}

    @api.get("/budgets")
    def budgets() -> list[dict[str, Any]]:
        return [{"dag_id": "reports", "budget_g": 500.0, "period": "week", "period_start": NOW.isoformat(),
                 "period_end": (NOW + timedelta(days=7)).isoformat(), "spent_g": 620.0, "projected_g": 900.0,
                 "spent_pct": 124.0, "over": True, "strict": True, "source": "api", "set_by": "admin",
                 "set_at": NOW.isoformat(), "reason": "team goal"}]

    @api.get("/audit")
    def audit(dag_id: str = "") -> list[dict[str, Any]]:
        return [{"id": 2, "at": NOW.isoformat(), "actor": "admin", "action": "release", "dag_id": "reports",
                 "run_id": "manual__1", "task_id": "summarize", "map_index": 2, "reason": "report due",
                 "detail": {"try_number": 1}},
                {"id": 1, "at": NOW.isoformat(), "actor": "admin", "action": "eco_off", "dag_id": None,
                 "run_id": None, "task_id": None, "map_index": None, "reason": "incident INC-7", "detail": None}]

    return api


def control_app() -> FastAPI:
    return page_app(api=stub_control_api())


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(control_app(), headers={"Authorization": f"Bearer {TOKEN}"})


def test_the_control_page_needs_a_user(client):
    assert client.get("/control").status_code == 200
    assert TestClient(control_app()).get("/control").status_code == 401


def test_every_page_links_to_the_control_page_and_keeps_the_theme(client):
    for path, href in (("/", "./control"), ("/dag/d", "../control"), ("/simulate", "./control")):
        links = [url for tag, _, url in parse(client.get(path, params={"theme": "dark"}).text).urls if tag == "a"]
        assert f"{href}?theme=dark" in links, (path, links)
    page = client.get("/control").text
    assert re.search(r'<a href="./control" aria-current="page">Control</a>', page)


def test_the_control_page_references_only_local_files_and_no_inline_script(client):
    page = client.get("/control")
    links = parse(page.text)
    for tag, attr, url in links.urls:
        parts = urlsplit(url)
        assert not parts.scheme or url.startswith("data:"), (tag, attr, url)
        assert not parts.netloc and not url.startswith("/"), (tag, attr, url)
        if tag in ("script", "link") and not url.startswith("data:"):
            assert client.get(urljoin("http://testserver/control", url)).status_code == 200, url
    assert links.inline_scripts == 0 and links.style_attrs == 0
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_every_change_asks_for_a_reason_and_talks_to_the_control_api(client):
    page = client.get("/control").text
    assert page.count('name="reason" required') == 2  # the eco-mode form and the budget form
    script = (STATIC / "js" / "control.js").read_text()
    for call in ('send("POST", "eco/off"', 'send("POST", "eco/on"', 'send("PUT", `budgets/${segment(dagId)}`',
                 'send("DELETE", `budgets/${segment(row.dag_id)}`', 'api("eco")', 'api("budgets")',
                 'api("audit", { dag_id: dagId })'):
        assert call in script, call
    assert "errorMessage(response)" in script and "askReason(" in script


@pytest.fixture(scope="module")
def live_url():
    with served(control_app()) as url:
        yield url


def test_the_browser_renders_the_state_budgets_and_audit_as_text(live_url):
    dom = dump_dom(f"{live_url}/control")
    assert "Carbon-awareness is OFF for every DAG now until " in dom
    assert "incident INC-7" in dom and "weekdays 08:00-10:00" in dom and "cli:oncall" in dom
    assert "&lt;script&gt;alert(1)" in dom and "<script>alert(1)" not in dom
    assert 'id="budgets-count">1<' in dom
    for figure in ("500 g", "620 g", "900 g", "124.0 %", ">over<", "plans stricter when over"):
        assert figure in dom, figure
    assert "released a task" in dom and "summarize in manual__1 [2]" in dom and "try_number: 1" in dom
    assert "switched carbon-awareness off" in dom
    assert "Could not load" not in dom
