"""Release, eco-mode off, budgets and the audit through the Carbon API, behind a real auth manager.

Built as ``test_api`` builds the API server: a migrated metadata database in a temporary AIRFLOW_HOME, the plugin
mounted by ``init_plugins``, tokens from the auth manager. The auth manager is Airflow's SimpleAuthManager,
narrowed for two users: ``analyst`` (viewer) reads ``dag_a`` only; ``editor`` (role user) reads and edits ``dag_a``
only, and so may not change what holds for every DAG. Every other user gets SimpleAuthManager's own answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from airflow_carbon.metrics import MetricsStore, TaskTryKey
from airflow_carbon.metrics.schema import AUDIT, BUDGET, BUDGET_ALERT, ECO_SWITCH, RELEASE
from tests.metrics.seeds import decide, seed_history
from tests.plugins.test_api import airflow_api_app, register_task_instance

H = timedelta(hours=1)
ONE_DAG = {"analyst", "editor"}
CONTROL_TABLES = (AUDIT, RELEASE, ECO_SWITCH, BUDGET, BUDGET_ALERT)
NOTHING = {table.name: 0 for table in CONTROL_TABLES}
WAITING_RUN = "manual__2026-01-01T00:00:00+00:00"


class ControlAuthManager(SimpleAuthManager):
    """SimpleAuthManager, except that ``analyst`` and ``editor`` see ``dag_a`` only and ``editor`` edits it only."""

    def get_authorized_dag_ids(self, *, user: Any, method: Any = "GET", **kwargs: Any) -> set[str]:
        dag_ids = super().get_authorized_dag_ids(user=user, method=method, **kwargs)
        return dag_ids & {"dag_a"} if user.get_name() in ONE_DAG else dag_ids

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        allowed = super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        if user.get_name() in ONE_DAG:
            return allowed and details is not None and details.id == "dag_a"
        return allowed


USERS = (("admin", "admin"), ("analyst", "viewer"), ("editor", "user"))


@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory) -> Iterator[dict[str, Any]]:
    with airflow_api_app(tmp_path_factory.mktemp("airflow_home"), users=USERS,
                         auth_manager=f"{__name__}.ControlAuthManager", seed=seed_history) as api:
        yield api


@pytest.fixture
def api(airflow_api) -> Iterator[dict[str, Any]]:
    """Each test starts with no control rows and one task instance waiting in each DAG."""
    store: MetricsStore = airflow_api["store"]
    with store.engine.begin() as connection:
        for table in CONTROL_TABLES:
            connection.execute(delete(table))
    now = datetime.now(UTC)
    decide(store, TaskTryKey("dag_a", "translate", WAITING_RUN), ready_at=now - H, start=now + H, deadline=now + 3 * H)
    decide(store, TaskTryKey("dag_b", "evaluate", "r9", map_index=3), ready_at=now - H, start=now + H,
           deadline=now + 3 * H)
    register_task_instance("dag_a", WAITING_RUN, "translate")
    register_task_instance("dag_b", "r9", "evaluate", 3)
    client: TestClient = airflow_api["client"]
    client.headers.pop("Authorization", None)
    client.cookies.clear()
    yield {**airflow_api, "client": client}


def call(api: dict[str, Any], user: str | None, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {api['tokens'][user]}"} if user else {}
    return api["client"].request(method, f"/carbon/api/{path}", headers=headers, **kwargs)


def control_rows(api: dict[str, Any]) -> dict[str, int]:
    """How many rows each control table holds: what a refused request must leave as it was."""
    with api["store"].engine.connect() as connection:
        return {table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
                for table in CONTROL_TABLES}


RELEASE_A = f"release/dag_a/{WAITING_RUN}/translate"
RELEASE_B = "release/dag_b/r9/evaluate?map_index=3"
CHANGES = [("POST", RELEASE_A, {"reason": "x"}), ("POST", "eco/off", {"reason": "x"}),
           ("POST", "eco/on", {"reason": "x"}), ("PUT", "budgets/dag_a", {"grams": 5, "period": "day"}),
           ("DELETE", "budgets/dag_a", None)]


@pytest.mark.parametrize(("method", "path", "body"), [*CHANGES, ("GET", "eco", None), ("GET", "budgets", None),
                                                      ("GET", "audit", None)])
def test_anonymous_callers_get_401_and_change_nothing(api, method, path, body):
    response = call(api, None, method, path, json=body)
    assert response.status_code == 401, response.text
    assert control_rows(api) == NOTHING


def test_a_release_is_written_once_with_who_and_why_and_audited(api):
    first = call(api, "editor", "POST", RELEASE_A, json={"reason": "urgent report"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["dag_id"], body["task_id"], body["map_index"], body["released_by"], body["reason"]) == (
        "dag_a", "translate", -1, "editor", "urgent report")
    again = call(api, "admin", "POST", RELEASE_A)  # no body: a reason is optional in the API
    assert again.status_code == 200 and again.json()["released_by"] == "editor"  # the first release stands
    [entry] = call(api, "admin", "GET", "audit").json()
    assert (entry["action"], entry["actor"], entry["run_id"], entry["reason"]) == (
        "release", "editor", WAITING_RUN, "urgent report")


def test_a_mapped_instance_is_released_by_its_map_index(api):
    response = call(api, "admin", "POST", RELEASE_B, json={"reason": "now"})
    assert response.status_code == 200 and response.json()["map_index"] == 3
    missing = call(api, "admin", "POST", "release/dag_b/r9/evaluate?map_index=4")
    assert missing.status_code == 404 and "map index 4" in missing.json()["detail"]


def test_releasing_what_is_not_waiting_is_404_and_writes_nothing(api):
    response = call(api, "admin", "POST", "release/dag_a/r1/summarize", json={"reason": "x"})  # completed
    assert response.status_code == 404 and "is not waiting" in response.json()["detail"]
    assert control_rows(api)["carbon_audit"] == 0


@pytest.mark.parametrize(("user", "path"), [("analyst", RELEASE_A), ("editor", RELEASE_B)])
def test_a_user_who_may_not_edit_the_task_instances_is_refused_and_nothing_changes(api, user, path):
    before = control_rows(api)
    response = call(api, user, "POST", path, json={"reason": "let me"})
    assert response.status_code == 403, response.text
    assert f"user {user!r} may not release task instances" in response.json()["detail"]
    assert control_rows(api) == before


def test_bad_names_and_map_indexes_are_400(api):
    assert call(api, "admin", "POST", "release/dag_a/r1/summarize?map_index=two").status_code == 400
    assert call(api, "admin", "POST", f"release/dag_a/{'r' * 251}/summarize").status_code == 400
    assert call(api, "admin", "POST", RELEASE_A, json={"reason": "x" * 1001}).status_code == 422


def test_eco_off_for_every_dag_then_on_again_each_audited(api):
    until = (datetime.now(UTC) + 2 * H).replace(microsecond=0)
    response = call(api, "admin", "POST", "eco/off", json={"dag_id": None, "until": until.isoformat(),
                                                           "reason": "incident"})
    assert response.status_code == 200, response.text
    switch = response.json()
    assert switch["dag_id"] is None and switch["active"] is True and switch["set_by"] == "admin"
    assert datetime.fromisoformat(switch["until"]) == until
    state = call(api, "analyst", "GET", "eco").json()
    assert state["off_everywhere"] is True and [s["reason"] for s in state["switches"]] == ["incident"]
    on = call(api, "admin", "POST", "eco/on", json={"dag_id": None, "reason": "resolved"})
    assert on.json() == {"dag_id": None, "cleared": True}
    assert call(api, "admin", "POST", "eco/on", json={"reason": "again"}).json()["cleared"] is False
    assert call(api, "admin", "GET", "eco").json()["off_everywhere"] is False
    actions = [(e["action"], e["reason"]) for e in call(api, "admin", "GET", "audit").json()]
    assert actions == [("eco_on", "resolved"), ("eco_off", "incident")]


def test_eco_off_in_windows_for_one_dag_and_who_sees_it(api):
    response = call(api, "editor", "POST", "eco/off", json={
        "dag_id": "dag_a", "windows": ["weekdays 08:00-10:00", "0 22 * * * for 2h"], "reason": "office hours"})
    assert response.status_code == 200, response.text
    assert response.json()["windows"] == ["weekdays 08:00-10:00", "0 22 * * * for 2h"]
    assert call(api, "admin", "POST", "eco/off", json={"dag_id": "dag_b", "reason": "b"}).status_code == 200
    seen = call(api, "analyst", "GET", "eco").json()
    assert [s["dag_id"] for s in seen["switches"]] == ["dag_a"] and seen["off_everywhere"] is False
    assert {s["dag_id"] for s in call(api, "admin", "GET", "eco").json()["switches"]} == {"dag_a", "dag_b"}


@pytest.mark.parametrize(("user", "dag_id"), [("analyst", "dag_a"), ("editor", "dag_b"), ("editor", None)])
def test_eco_switches_need_edit_rights_on_their_scope(api, user, dag_id):
    before = control_rows(api)
    for path in ("eco/off", "eco/on"):
        response = call(api, user, "POST", path, json={"dag_id": dag_id, "reason": "x"})
        assert response.status_code == 403, response.text
        scope = "every DAG" if dag_id is None else f"DAG {dag_id!r}"
        assert response.json()["detail"].endswith(f"needs edit rights of {scope}")
    assert control_rows(api) == before


@pytest.mark.parametrize(("body", "says"), [
    ({"dag_id": "dag_a", "until": "2099-01-01T10:00:00", "reason": "x"}, "until: 2099-01-01T10:00:00 has no time zone"),
    ({"dag_id": "dag_a", "until": "2001-01-01T10:00:00Z", "reason": "x"}, "is not in the future"),
    ({"dag_id": "dag_a", "windows": ["weekdays 8-10"], "reason": "x"}, "windows[0] 'weekdays 8-10': expected"),
    ({"dag_id": "", "reason": "x"}, "dag_id: empty; give null for every DAG"),
])
def test_a_bad_switch_is_400_with_the_field_and_nothing_changes(api, body, says):
    response = call(api, "admin", "POST", "eco/off", json=body)
    assert response.status_code == 400 and says in response.json()["detail"], response.text
    assert control_rows(api) == NOTHING


def test_a_budget_is_set_shown_to_readers_and_cleared(api):
    response = call(api, "editor", "PUT", "budgets/dag_a", json={"grams": 500, "period": "week", "strict": True,
                                                                  "reason": "team goal"})
    assert response.status_code == 200, response.text
    status = response.json()
    assert (status["dag_id"], status["budget_g"], status["period"], status["strict"], status["source"]) == (
        "dag_a", 500.0, "week", True, "api")
    assert status["spent_g"] == 0.0 and status["over"] is False and status["set_by"] == "editor"
    assert call(api, "admin", "PUT", "budgets/dag_b", json={"grams": 9, "period": "day"}).status_code == 200
    assert [row["dag_id"] for row in call(api, "analyst", "GET", "budgets").json()] == ["dag_a"]
    assert [row["dag_id"] for row in call(api, "admin", "GET", "budgets").json()] == ["dag_a", "dag_b"]
    cleared = call(api, "editor", "DELETE", "budgets/dag_a", params={"reason": "goal met"})
    assert cleared.json() == {"dag_id": "dag_a", "cleared": True}
    assert call(api, "editor", "DELETE", "budgets/dag_a").json()["cleared"] is False
    audit = call(api, "analyst", "GET", "audit").json()
    assert [(e["action"], e["reason"]) for e in audit] == [("budget_clear", "goal met"), ("budget_set", "team goal")]


@pytest.mark.parametrize(("body", "code", "says"), [
    ({"grams": 5, "period": "year"}, 400, "period 'year' is not one of day, week, month"),
    ({"grams": -1, "period": "day"}, 400, "grams -1"),
    ({"grams": "NaN", "period": "day"}, 422, "finite"),
    ({"period": "day"}, 422, "grams"),
])
def test_a_bad_budget_is_refused_with_the_field(api, body, code, says):
    response = call(api, "admin", "PUT", "budgets/dag_a", json=body)
    assert response.status_code == code and says in response.text, response.text
    assert control_rows(api)["carbon_budget"] == 0


@pytest.mark.parametrize(("user", "dag_id"), [("analyst", "dag_a"), ("editor", "dag_b")])
def test_budgets_need_edit_rights_on_the_dag(api, user, dag_id):
    call(api, "admin", "PUT", f"budgets/{dag_id}", json={"grams": 5, "period": "day"})
    before = control_rows(api)
    assert call(api, user, "PUT", f"budgets/{dag_id}", json={"grams": 1, "period": "day"}).status_code == 403
    assert call(api, user, "DELETE", f"budgets/{dag_id}").status_code == 403
    assert control_rows(api) == before
    assert call(api, "admin", "GET", "budgets").json()[0]["budget_g"] == 5.0


def test_the_audit_shows_the_dags_a_user_may_read_and_the_global_entries(api):
    call(api, "admin", "POST", RELEASE_B, json={"reason": "b"})
    call(api, "admin", "POST", RELEASE_A, json={"reason": "a"})
    call(api, "admin", "POST", "eco/off", json={"reason": "everyone"})
    assert [e["reason"] for e in call(api, "admin", "GET", "audit").json()] == ["everyone", "a", "b"]
    assert [e["reason"] for e in call(api, "analyst", "GET", "audit").json()] == ["everyone", "a"]
    assert [e["reason"] for e in call(api, "admin", "GET", "audit", params={"dag_id": "dag_b"}).json()] == ["b"]
    assert call(api, "analyst", "GET", "audit", params={"dag_id": "dag_b"}).json() == []
    assert len(call(api, "admin", "GET", "audit", params={"limit": 1}).json()) == 1
    assert call(api, "admin", "GET", "audit", params={"limit": 0}).status_code == 422


@pytest.mark.parametrize(("role", "may_edit"), [("viewer", False), ("user", True), ("op", True), ("admin", True)])
def test_what_simple_auth_manager_answers_for_each_role(airflow_api, role, may_edit):
    """One DAG and every DAG get the same answer from SimpleAuthManager: it looks at the role alone."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    from airflow_carbon.plugins.auth import may_edit as may

    user = SimpleAuthManagerUser(username=f"a_{role}", role=role)
    assert may(user, "dag_a") is may_edit
    assert may(user, None) is may_edit
    assert may(user, "dag_b", DagAccessEntity.TASK_INSTANCE) is may_edit


def test_a_try_airflow_no_longer_defers_is_not_released(api):
    """Marked success in Airflow while the store still has it deferred: nothing to release, nothing written."""
    register_task_instance("dag_a", WAITING_RUN, "translate", state="success")
    before = control_rows(api)
    response = call(api, "admin", "POST", RELEASE_A, json={"reason": "late"})
    assert response.status_code == 404 and "Airflow has it success" in response.json()["detail"]
    assert control_rows(api) == before
    register_task_instance("dag_a", WAITING_RUN, "translate", state="deferred")
