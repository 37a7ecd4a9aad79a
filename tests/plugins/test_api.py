"""The plugin's API as Airflow's API server runs it: mounted by ``init_plugins``, behind a real auth manager.

The metadata database is a migrated SQLite file in a temporary AIRFLOW_HOME (tokens are checked
against its revoked-token table, readable DAGs come from its DAG table). The auth manager is
Airflow's SimpleAuthManager, narrowed by a subclass so that the user ``analyst`` reads ``dag_a``
only: every route goes through ``readable_dag_ids`` -> ``get_authorized_dag_ids`` for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi import FastAPI
from fastapi.testclient import TestClient

from airflow_carbon.metrics import MetricsStore, TaskTryKey, TaskTryRecord
from airflow_carbon.signals.bundled import bundled_path
from tests.metrics.seeds import decide, seed_history

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
ANALYST_DAGS = {"dag_a"}
H = timedelta(hours=1)
JOBS, CARBON, SOLAR = (bundled_path(n) for n in ("inference_jobs.csv", "carbon_intensity.csv", "solar_generation.csv"))


class OneDagAuthManager(SimpleAuthManager):
    """Airflow's SimpleAuthManager, except that the user ``analyst`` may read ``dag_a`` only."""

    def get_authorized_dag_ids(self, *, user: Any, method: Any = "GET", **kwargs: Any) -> set[str]:
        dag_ids = super().get_authorized_dag_ids(user=user, method=method, **kwargs)
        return dag_ids & ANALYST_DAGS if user.get_name() == "analyst" else dag_ids


def _register_dags(*dag_ids: str) -> None:
    """DAG rows in the metadata database, as the DAG processor leaves them: what auth managers list."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(DagBundleModel(name="carbon-tests"))
        session.flush()
        for dag_id in dag_ids:
            session.add(DagModel(dag_id=dag_id, bundle_name="carbon-tests", fileloc=f"/dags/{dag_id}.py"))


def register_task_instance(dag_id: str, run_id: str, task_id: str, map_index: int = -1, *,
                           state: str | None = "deferred", try_number: int = 1) -> None:
    """A task instance (and its run) in the metadata database, or its state and try changed: what Airflow says."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import insert, select, update

    runs, tis = DagRun.__table__, TaskInstance.__table__
    with create_session() as session:
        if session.execute(select(runs.c.id).where(runs.c.dag_id == dag_id, runs.c.run_id == run_id)).first() is None:
            session.execute(insert(runs).values(dag_id=dag_id, run_id=run_id, run_type="manual", state="running",
                                                run_after=datetime.now(UTC)))
        key = (tis.c.dag_id == dag_id, tis.c.run_id == run_id, tis.c.task_id == task_id, tis.c.map_index == map_index)
        if session.execute(select(tis.c.id).where(*key)).first() is None:
            session.execute(insert(tis).values(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index,
                                               pool="default_pool", state=state, try_number=try_number))
        else:
            session.execute(update(tis).where(*key).values(state=state, try_number=try_number))


def _add_connection(conn_id: str, conn_type: str, extra: dict[str, Any]) -> None:
    """A connection as the UI creates it: a row in the metadata database."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(Connection(conn_id=conn_id, conn_type=conn_type, extra=json.dumps(extra)))


@contextmanager
def airflow_api_app(home: Path, *, users: tuple[tuple[str, str], ...], auth_manager: str,
                    seed: Callable[[MetricsStore], None]) -> Iterator[dict[str, Any]]:
    """A migrated AIRFLOW_HOME, this process pointed at it, the plugin mounted as the API server mounts it, the
    auth manager up with ``users`` (name, role) and the store seeded; what a test of the routes needs."""
    from airflow import settings
    from airflow.api_fastapi.app import init_auth_manager, init_plugins, purge_cached_app

    from airflow_carbon.hooks.metrics import CarbonMetricsHook
    from airflow_carbon.plugins import common, intensity

    metrics_url = f"sqlite:///{home / 'carbon_metrics.db'}"
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{name}:{role}" for name, role in users),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "carbon-plugin-tests-" + "0123456789abcdef" * 4,
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env={**os.environ, "AIRFLOW_HOME": str(home), **env}, check=True,
                   capture_output=True, timeout=300)
    with pytest.MonkeyPatch.context() as patch:
        # As in the API server (airflow/api_fastapi/main.py): connections come from the metadata database.
        server = {"AIRFLOW__CORE__AUTH_MANAGER": auth_manager, "_AIRFLOW_PROCESS_CONTEXT": "server"}
        for name, value in {**env, **server}.items():
            patch.setenv(name, value)
        patch.delenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT", raising=False)
        settings.configure_vars()
        settings.reconfigure_orm()
        common.reset_store_cache()
        CarbonMetricsHook.reset_store_cache()
        intensity.clear_intensity_cache()
        try:
            _register_dags("dag_a", "dag_b")
            _add_connection("carbon_metrics_default", "carbon_metrics", {"sqlalchemy_url": metrics_url})
            store = MetricsStore(metrics_url)
            seed(store)
            app = FastAPI()
            init_plugins(app)  # mounts the plugin's app at /carbon, as the API server does
            manager = init_auth_manager(app)
            tokens = {name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))
                      for name, role in users}
            with TestClient(app) as client:
                yield {"client": client, "tokens": tokens, "store": store, "auth_manager": manager}
            store.close()
        finally:
            purge_cached_app()
            common.reset_store_cache()
            CarbonMetricsHook.reset_store_cache()
    settings.configure_vars()
    settings.reconfigure_orm()


@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory) -> Iterator[dict[str, Any]]:
    with airflow_api_app(tmp_path_factory.mktemp("airflow_home"), users=(("admin", "admin"), ("analyst", "viewer")),
                         auth_manager=f"{__name__}.OneDagAuthManager", seed=seed_store) as api:
        yield api


def seed_store(store: MetricsStore) -> None:
    """The history of ``tests.metrics.seeds`` and, relative to the real clock, one waiting try in each DAG, its
    task instance deferred in Airflow."""
    seed_history(store)
    now = datetime.now(UTC)
    decide(store, TaskTryKey("dag_a", "translate", "manual__2024-06-01T00:00:00+00:00"), ready_at=now - H,
           start=now + H, deadline=now + 3 * H, now_g=120.0, at_start_g=60.0, energy_kwh=0.4)
    register_task_instance("dag_a", "manual__2024-06-01T00:00:00+00:00", "translate")
    decide(store, TaskTryKey("dag_b", "evaluate", "r9", map_index=3), ready_at=now - H, start=now + H,
           deadline=now + 3 * H, source="conn:secret_b", served_by="conn:secret_b")
    register_task_instance("dag_b", "r9", "evaluate", 3)


@pytest.fixture
def client(airflow_api) -> TestClient:
    client: TestClient = airflow_api["client"]
    client.headers.pop("Authorization", None)
    client.cookies.clear()
    return client


def as_user(airflow_api: dict[str, Any], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {airflow_api['tokens'][name]}"}


def upload(*files: tuple[str, Path | bytes, str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """``(field, content or path, file name)`` as multipart files."""
    return [(field, (name, content.read_bytes() if isinstance(content, Path) else content, "text/csv"))
            for field, content, name in files]


GETS = ["/carbon/api/deferred", "/carbon/api/history", "/carbon/api/history.csv", "/carbon/api/solar",
        "/carbon/api/tasks", "/carbon/api/decision/dag_a/r1/summarize", "/carbon/api/intensity?source=bundled:DE",
        "/carbon/openapi.json", "/carbon/docs"]


@pytest.mark.parametrize("path", GETS)
def test_anonymous_callers_get_401_everywhere(client, path):
    response = client.get(path)
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Not authenticated"}


def test_anonymous_upload_gets_401_and_a_forged_token_403(client):
    files = upload(("jobs", JOBS, "jobs.csv"), ("carbon", CARBON, "carbon.csv"))
    assert client.post("/carbon/api/simulate", files=files).status_code == 401
    forged = client.get("/carbon/api/deferred", headers={"Authorization": "Bearer not-a-jwt"})
    assert forged.status_code == 403


def test_the_ui_session_cookie_is_accepted(airflow_api, client):
    client.cookies.set("_token", airflow_api["tokens"]["admin"])
    assert client.get("/carbon/api/history").status_code == 200


def test_deferred_tasks_with_a_token(airflow_api, client):
    rows = client.get("/carbon/api/deferred", headers=as_user(airflow_api, "admin")).json()
    assert {(row["dag_id"], row["task_id"]) for row in rows} == {("dag_a", "translate"), ("dag_b", "evaluate")}
    translate = next(row for row in rows if row["dag_id"] == "dag_a")
    assert translate["current_intensity_g_per_kwh"] == pytest.approx(300.0)
    assert translate["expected_saving_g"] == 60.0 and translate["remaining_s"] > 0
    assert 3500 < translate["waited_s"] < 3700 and translate["run_id"] == "manual__2024-06-01T00:00:00+00:00"
    assert translate["airflow_state"] == "deferred" and translate["airflow_try_number"] == 1


def test_history_tasks_and_csv_with_a_token(airflow_api, client):
    headers = as_user(airflow_api, "admin")
    history = client.get("/carbon/api/history", headers=headers).json()
    assert [(row["dag_id"], row["day"]) for row in history] == [
        ("dag_a", "2024-06-01"), ("dag_b", "2024-06-01"), ("dag_a", "2024-06-02")]
    assert history[0]["saved_g"] == 50.0 and history[2]["forced_by_deadline"] == 1
    filtered = client.get("/carbon/api/history", params={"start": "2024-06-02", "end": "2024-06-02"},
                          headers=headers).json()
    assert [row["day"] for row in filtered] == ["2024-06-02"]
    response = client.get("/carbon/api/history.csv", params={"dag_id": "dag_a"}, headers=headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="carbon-history-dag_a.csv"'
    lines = response.text.splitlines()
    assert lines[0].startswith("dag_id,day,tasks_run") and len(lines) == 3
    tasks = client.get("/carbon/api/tasks", params={"region": "DE", "limit": 2}, headers=headers).json()
    assert [row["run_id"] for row in tasks] == ["r1", "r2"] and tasks[0]["ready_at"] == "2024-06-01T08:00:00Z"


def test_bad_query_values_are_refused(airflow_api, client):
    headers = as_user(airflow_api, "admin")
    response = client.get("/carbon/api/history", params={"start": "2024-06-02", "end": "2024-06-01"},
                          headers=headers)
    assert response.status_code == 400 and "before start" in response.json()["detail"]
    assert client.get("/carbon/api/history", params={"start": "June"}, headers=headers).status_code == 422
    assert client.get("/carbon/api/tasks", params={"limit": 0}, headers=headers).status_code == 422


def test_decision_of_one_task_instance(airflow_api, client):
    headers = as_user(airflow_api, "admin")
    [row] = client.get("/carbon/api/decision/dag_a/r1/summarize", headers=headers).json()
    assert row["state"] == "completed" and row["try_number"] == 1 and row["planned_start"] == "2024-06-01T10:00:00Z"
    # The UI leaves {MAP_INDEX} as it is on task instances that are not mapped.
    assert client.get("/carbon/api/decision/dag_a/r1/summarize?map_index={MAP_INDEX}", headers=headers).json()
    [mapped] = client.get("/carbon/api/decision/dag_b/r9/evaluate", params={"map_index": 3}, headers=headers).json()
    assert mapped["state"] == "deferred" and mapped["map_index"] == 3
    assert (mapped["airflow_state"], mapped["airflow_try_number"]) == ("deferred", 1)
    assert row["airflow_state"] is None  # no such task instance in Airflow's database
    missing = client.get("/carbon/api/decision/dag_a/r1/nothing", headers=headers)
    assert missing.status_code == 404 and "'nothing'" in missing.json()["detail"]


def test_a_decision_says_how_its_energy_was_obtained_and_what_was_expected(airflow_api, client):
    key = TaskTryKey("dag_a", "evaluate", "r_energy")
    started = datetime(2024, 6, 1, 10, tzinfo=UTC)
    energy = {"energy_method": "cpu=measured-rapl, gpu:0=measured-nvml", "energy_scope": "cpu=machine-split, "
              "gpu:0=device", "energy_breakdown_kwh": {"cpu": 0.25, "gpu:0": 0.75}, "pue": 1.2,
              "energy_notes": ["gpu:0: shared with another process"], "expected_duration_s": 1800.0,
              "expected_energy_kwh": 1.5, "expected_from": "history (n=3)"}
    airflow_api["store"].write(TaskTryRecord(
        **asdict(key), state="completed", region="DE", source="bundled:DE", policy="forecast", reason="immediate",
        ready_at=started, deadline=started + 4 * H, started_at=started, ended_at=started + H, energy_kwh=1.2,
        **energy))
    [row] = client.get("/carbon/api/decision/dag_a/r_energy/evaluate", headers=as_user(airflow_api, "admin")).json()
    assert {name: row[name] for name in energy} == energy


def test_a_user_sees_only_the_dags_they_may_read(airflow_api, client):
    headers = as_user(airflow_api, "analyst")
    assert {row["dag_id"] for row in client.get("/carbon/api/deferred", headers=headers).json()} == {"dag_a"}
    assert {row["dag_id"] for row in client.get("/carbon/api/history", headers=headers).json()} == {"dag_a"}
    assert {row["dag_id"] for row in client.get("/carbon/api/tasks", headers=headers).json()} == {"dag_a"}
    assert client.get("/carbon/api/history", params={"dag_id": "dag_b"}, headers=headers).json() == []
    assert "dag_b" not in client.get("/carbon/api/history.csv", headers=headers).text
    assert client.get("/carbon/api/decision/dag_b/r1/evaluate", headers=headers).status_code == 404
    # A connection only dag_b's tasks use is not loaded for this user.
    response = client.get("/carbon/api/intensity", params={"source": "conn:secret_b"}, headers=headers)
    assert response.status_code == 404


def test_intensity_of_a_bundled_source_is_cached(airflow_api, client, monkeypatch):
    from airflow_carbon.plugins import intensity

    intensity.clear_intensity_cache()
    calls = []
    real = intensity.load_first
    monkeypatch.setattr(intensity, "load_first", lambda *args: calls.append(args) or real(*args))
    headers = as_user(airflow_api, "analyst")
    first = client.get("/carbon/api/intensity", params={"source": "bundled:DE"}, headers=headers).json()
    assert first["region"] == "DE" and first["source"] == "bundled:DE" and first["period_s"] == 900
    assert 190 <= len(first["points"]) <= 194 and first["replayed"] is True
    point_time, value = first["points"][0]
    assert point_time.endswith("Z") and value > 0
    again = client.get("/carbon/api/intensity", params={"region": "DE"}, headers=headers).json()
    assert len(calls) == 1 and again["points"][:5] == first["points"][:5]
    day = client.get("/carbon/api/intensity", params={"source": "bundled:FR", "start": "2024-06-01",
                                                      "end": "2024-06-01"}, headers=headers)
    assert day.status_code == 200 and day.json()["period_s"] == 1800


@pytest.mark.parametrize(("params", "message"), [
    ({"source": "csv:/etc/passwd"}, "file sources are not read on request"),
    ({"source": "bundled:XX"}, "no bundled data for region 'XX'"),
    ({}, "give a source"),
    ({"source": "replay of /data/de_ci.csv"}, "expected bundled:<region>"),
    ({"source": "bundled:DE", "start": "yesterday"}, "start: not a date or an ISO 8601 instant"),
    ({"source": "bundled:DE", "start": "2024-06-01", "end": "2024-07-01"}, "at most 10 days apart"),
])
def test_intensity_refuses_file_sources_and_bad_values(airflow_api, client, params, message):
    response = client.get("/carbon/api/intensity", params=params, headers=as_user(airflow_api, "admin"))
    assert response.status_code == 400 and message in response.json()["detail"]


def test_simulate_uploads_give_the_cli_figures_table_and_plots(airflow_api, client):
    files = upload(("jobs", JOBS, "my_jobs.csv"), ("carbon", CARBON, "grid.csv"), ("solar", SOLAR, "solar.csv"))
    form = {"policies": "threshold", "max_delay": "4h", "solar_threshold_kw": "0.05", "threshold": ""}
    response = client.post("/carbon/api/simulate", files=files, data=form, headers=as_user(airflow_api, "analyst"))
    assert response.status_code == 200, response.text
    result = response.json()
    by_policy = {row["policy"]: row for row in result["policies"]}
    assert list(by_policy) == ["immediate", "threshold"]
    # The seed's figures, as tests/test_cli.py reads them from the CLI's table.
    assert round(by_policy["immediate"]["baseline_kg"], 3) == 1.262
    assert round(by_policy["threshold"]["scheduled_kg"], 3) == 1.195 and by_policy["threshold"]["delayed"] == 37
    assert "net change %" in result["table"].splitlines()[0]
    assert result["inputs"]["jobs"] == "my_jobs.csv" and result["headline"].startswith("110 jobs, US-TX carbon")
    assert len(result["figures"]) == 7
    assert all(uri.startswith("data:image/png;base64,iVBOR") for uri in result["figures"].values())


def test_an_oversize_upload_is_refused_with_413(airflow_api, client):
    big = b"job_id,timestamp,expected_power_kwh\n" + b"x" * (5 * 1024 * 1024)
    files = upload(("jobs", big, "huge.csv"), ("carbon", CARBON, "carbon.csv"))
    response = client.post("/carbon/api/simulate", files=files, data={"plots": "false"},
                           headers=as_user(airflow_api, "admin"))
    assert response.status_code == 413
    assert response.json()["detail"] == "jobs file 'huge.csv' is larger than 5 MiB"
    whole = upload(("jobs", b"x" * (16 * 1024 * 1024), "jobs.csv"), ("carbon", CARBON, "carbon.csv"))
    refused = client.post("/carbon/api/simulate", files=whole, headers=as_user(airflow_api, "admin"))
    assert refused.status_code == 413
    assert "larger than 15,990,784 bytes (15.25 MiB: 3 files of 5 MiB and 256 KiB" in refused.json()["detail"]


def test_a_malformed_csv_is_refused_naming_file_line_and_column(airflow_api, client):
    bad = b"timestamp,region,carbon_intensity\n2024-06-01 00:00,US-TX,200\n2024-06-01 01:00,US-TX,-5\n"
    files = upload(("jobs", JOBS, "jobs.csv"), ("carbon", bad, "../../my carbon.csv"))
    response = client.post("/carbon/api/simulate", files=files, data={"plots": "false"},
                           headers=as_user(airflow_api, "admin"))
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("my carbon.csv, line 3, column 'carbon_intensity'"), detail
    assert "carbon-simulate-" not in detail  # the server's temporary folder is not shown


@pytest.mark.parametrize(("form", "message"), [
    ({"policies": "greedy"}, "policies: unknown policy 'greedy'"),
    ({"max_delay": "soon"}, "max_delay: not a duration: 'soon'"),
    ({"forecast_error": "150%"}, "forecast_error: a forecast error must lie in [0, 1)"),
    ({"threshold": "-1"}, "threshold: must be a number >= 0"),
])
def test_bad_simulation_options_are_refused(airflow_api, client, form, message):
    files = upload(("jobs", JOBS, "jobs.csv"), ("carbon", CARBON, "carbon.csv"))
    response = client.post("/carbon/api/simulate", files=files, data=form, headers=as_user(airflow_api, "admin"))
    assert response.status_code == 400 and response.json()["detail"].startswith(message), response.text


def test_openapi_and_docs_behind_auth(airflow_api, client):
    headers = as_user(airflow_api, "analyst")
    schema = client.get("/carbon/openapi.json", headers=headers).json()
    assert schema["servers"] == [{"url": "/carbon"}]
    assert {"/api/deferred", "/api/history", "/api/history.csv", "/api/solar", "/api/tasks", "/api/intensity",
            "/api/simulate", "/api/decision/{dag_id}/{run_id}/{task_id}"} <= set(schema["paths"])
    docs = client.get("/carbon/docs", headers=headers)
    assert docs.status_code == 200 and "openapi.json" in docs.text


def test_the_extra_link_opens_the_task_page_under_the_base_url(airflow_api, client, monkeypatch):
    from airflow.models.taskinstancekey import TaskInstanceKey

    from airflow_carbon.links import CarbonDecisionLink

    run_id = "manual__2024-06-01T00:00:00+00:00"
    key = TaskInstanceKey(dag_id="dag_a", task_id="translate", run_id=run_id, try_number=1, map_index=-1)
    link = CarbonDecisionLink().get_link(None, ti_key=key)
    assert link == "/carbon/task/dag_a/manual__2024-06-01T00%3A00%3A00%2B00%3A00/translate?map_index=-1"
    # The link needs no XCom: the decision behind it is there while the task is still deferred.
    [row] = client.get(link.replace("/carbon/task/", "/carbon/api/decision/"),
                       headers=as_user(airflow_api, "admin")).json()
    assert row["state"] == "deferred" and row["run_id"] == run_id
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/team/")
    assert CarbonDecisionLink().get_link(None, ti_key=key._replace(map_index=4)) == (
        "https://airflow.example.com/team/carbon/task/dag_a/manual__2024-06-01T00%3A00%3A00%2B00%3A00/translate"
        "?map_index=4")


def test_the_plugin_mounts_the_app_and_has_the_three_views():
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    from airflow_carbon.plugins.app import app
    from airflow_carbon.plugins.plugin import CarbonPlugin

    assert CarbonPlugin.name == "carbon"
    assert CarbonPlugin.fastapi_apps == [{"app": app, "url_prefix": "/carbon", "name": "Carbon"}]
    assert isinstance(app, FastAPI) and not any(p.startswith(r) for p in ["/carbon"] for r in RESERVED_URL_PREFIXES)
    views = {view["destination"]: ExternalViewResponse.model_validate(view) for view in CarbonPlugin.external_views}
    assert set(views) == {"nav", "dag", "task_instance"}
    assert views["nav"].href == "carbon/" and views["nav"].name == "Carbon"
    assert views["dag"].href == "carbon/dag/{DAG_ID}"
    assert views["task_instance"].href == "carbon/task/{DAG_ID}/{RUN_ID}/{TASK_ID}?map_index={MAP_INDEX}"
    assert len({view.url_route for view in views.values()}) == 3


def test_the_api_server_computes_the_link_of_the_sensor_and_of_task_without_xcom(airflow_api):
    """Deserialized in the API server, the link of known classes is the plugin's: no XCom read."""
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, task
    from airflow.serialization.definitions.operatorlink import XComOperatorLink
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_carbon import CarbonAwareSensor, carbon_aware
    from airflow_carbon.plugins.plugin import ServerCarbonDecisionLink

    with DAG("linked", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)) as dag:
        @carbon_aware(max_delay=timedelta(hours=1))
        @task
        def summarize() -> None: ...

        summarize()
        CarbonAwareSensor(task_id="wait", max_delay=timedelta(hours=1))
        carbon_aware(BashOperator(task_id="translate", bash_command="true"), max_delay=timedelta(hours=1))
    served = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    links = {task_id: served.get_task(task_id).operator_extra_link_dict["Carbon decision"]
             for task_id in ("summarize", "wait", "translate")}
    assert isinstance(links["summarize"], ServerCarbonDecisionLink)
    assert isinstance(links["wait"], ServerCarbonDecisionLink)
    assert isinstance(links["translate"], XComOperatorLink)  # pushed by the worker when it defers or ends

    class TaskInstance:
        key = type("Key", (), {"dag_id": "linked", "run_id": "r", "task_id": "wait", "map_index": 1})()

    assert served.get_task("wait").get_extra_links(TaskInstance(), "Carbon decision") == (
        "/carbon/task/linked/r/wait?map_index=1")


def _airflow(home: Path, *args: str, **env: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, cwd=home,
                            env={**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                                 **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_airflow_plugins_lists_carbon_once_whatever_the_provider_discovery(tmp_path):
    listed = json.loads(_airflow(tmp_path, AIRFLOW, "plugins", "--output", "json"))
    [carbon] = [plugin for plugin in listed if plugin["name"] == "carbon"]
    assert carbon["fastapi_apps"] == [{"app": "fastapi.applications.FastAPI", "url_prefix": "/carbon",
                                       "name": "Carbon"}]
    assert [view["destination"] for view in carbon["external_views"]] == ["nav", "dag", "task_instance"]
    assert "airflow.plugins" in carbon["source"]
    # Providers discovered eagerly: still one plugin, and no "already registered" import error in the UI.
    code = ("import json; from airflow import plugins_manager as m; "
            "print(json.dumps([[p.name for p in m._get_plugins()[0]], m.get_import_errors()]))")
    names, errors = json.loads(_airflow(tmp_path, sys.executable, "-c", code,
                                        AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS="False").splitlines()[-1])
    assert names.count("carbon") == 1 and errors == {}
