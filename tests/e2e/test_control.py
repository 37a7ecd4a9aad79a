"""People in control, in a running Airflow: release a waiting task, refuse those who may not, switch eco-mode off.

``carbon_control`` waits on a CSV signal that stays dirty for two hours (inside its 3-hour max_delay, so each task
defers whenever it decides, however late it starts). The module defers three runs of it at once, then:
a ``viewer`` (SimpleAuthManager role that may read, not edit) and an anonymous caller are refused and nothing
changes; the admin releases one run through ``POST /carbon/api/release``; the CLI releases another against the
cluster's own store; eco-mode off for the DAG releases the third and lets a new run start at once. Each bound on
lateness is on the trigger's own fire time (``decided_at``) from the release's own ``released_at``.
"""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from airflow_carbon.metrics import MetricsStore
from airflow_carbon.metrics.schema import ECO_SWITCH, RELEASE
from airflow_carbon.triggers.control import POLL_INTERVAL_S
from tests.e2e.airflow_cluster import AirflowCluster
from tests.e2e.signal_window import write_signal_file

SIGNAL = Path(tempfile.mkdtemp(prefix="carbon_control_")) / "signal.csv"
VIEWER = "viewer"
AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_control"
AIRFLOW_ENV = {
    "AIRFLOW__CARBON__SOURCE": "control_signal",
    "AIRFLOW__CARBON__REGION": "TEST",
    "AIRFLOW_CONN_CONTROL_SIGNAL": json.dumps(
        {"conn_type": "carbon_csv", "extra": {"path": str(SIGNAL), "region": "TEST"}}),
    # The api-server adds a generated password for each user missing from the cluster's passwords file.
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{VIEWER}:viewer",
}
DAG_ID, TASK_ID = "carbon_control", "summarize"
GREEN_IN_S = 2 * 3600  # dirty until then: a task deciding within the next hour plans to wait about two hours
PERIOD_S = 600
ENERGY_KWH, DIRTY_G_PER_KWH = 0.05, 400
#: A release reaches its trigger at the next poll; the margin is for the trigger's turn on a busy machine.
FIRE_BOUND = timedelta(seconds=POLL_INTERVAL_S + 15)
#: The planner counts whole seconds: a decision made at the task's start says ``decided_at`` rounded down.
WHOLE_SECOND = timedelta(seconds=1)
RUNS = ("released", "cli", "eco")
CARBON_CLI = str(Path(sys.executable).with_name("airflow-carbon"))

pytestmark = pytest.mark.timeout(600)


def instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() is not None, f"{text!r} has no time zone"
    return moment


def carbon_api(cluster: AirflowCluster, method: str, path: str, token: str | None, *, expect: int = 200,
               **kwargs: Any) -> Any:
    """A call to the Carbon API as the holder of ``token`` (None: anonymous); the answer's JSON."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = cluster.client.request(method, f"/carbon/api{path}", headers=headers, **kwargs)
    assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text[:500]}"
    return response.json()


def store_of(cluster: AirflowCluster) -> MetricsStore:
    return MetricsStore(f"sqlite:///{cluster.home}/carbon_metrics.db")


def admin_token(cluster: AirflowCluster) -> str:
    return cluster.login()


def viewer_token(cluster: AirflowCluster) -> str:
    password = json.loads((cluster.home / "passwords.json").read_text())[VIEWER]
    response = cluster.client.post("/auth/token", json={"username": VIEWER, "password": password})
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def fired_within_bound(record: dict, told_at: datetime) -> None:
    """The trigger fired (``decided_at``) after the release or switch and at most one poll plus a margin later."""
    fired = instant(record["decided_at"])
    assert told_at - WHOLE_SECOND <= fired <= told_at + FIRE_BOUND, f"fired at {fired}, told at {told_at}"


def ran_dirty_as_when_ready(record: dict) -> None:
    """Run early, in the same dirty hours as at its ready time: ``saved_g`` is there, and honestly nothing."""
    assert record["emissions_g"] == pytest.approx(ENERGY_KWH * DIRTY_G_PER_KWH)
    assert record["baseline_emissions_g"] == pytest.approx(ENERGY_KWH * DIRTY_G_PER_KWH)
    assert record["saved_g"] is not None and record["saved_g"] == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def waiting(airflow_cluster: AirflowCluster) -> dict[str, str]:
    """Three runs whose task waits for the window two hours away, by name: their run ids."""
    cluster = airflow_cluster
    cluster.wait_for_dag(DAG_ID)
    write_signal_file(SIGNAL, green_in_s=GREEN_IN_S, period_s=PERIOD_S)
    runs = {name: cluster.trigger(DAG_ID, run_id=f"control__{name}") for name in RUNS}
    for run_id in runs.values():
        cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "deferred", timeout_s=180)
    return runs


def test_a_viewer_may_read_but_not_release_and_an_anonymous_caller_is_refused(airflow_cluster, waiting):
    cluster: AirflowCluster = airflow_cluster
    run_id = waiting["released"]
    admin, viewer = admin_token(cluster), viewer_token(cluster)
    audit_before = carbon_api(cluster, "GET", "/audit", admin)
    listed = carbon_api(cluster, "GET", "/deferred", viewer, params={"dag_id": DAG_ID})
    assert run_id in {row["run_id"] for row in listed}  # it may read

    release = f"/release/{DAG_ID}/{run_id}/{TASK_ID}"
    refused = carbon_api(cluster, "POST", release, viewer, expect=403, json={"reason": "I am in a hurry"})
    assert VIEWER in refused["detail"] and DAG_ID in refused["detail"]
    carbon_api(cluster, "POST", "/eco/off", viewer, expect=403, json={"dag_id": DAG_ID, "reason": "me too"})
    carbon_api(cluster, "POST", release, None, expect=401, json={"reason": "who am I"})
    carbon_api(cluster, "POST", "/eco/off", None, expect=401, json={"dag_id": DAG_ID})
    carbon_api(cluster, "GET", "/audit", None, expect=401)

    time.sleep(POLL_INTERVAL_S + 2)  # a poll passes: had anything been written, the trigger would have fired
    assert cluster.task_instance(DAG_ID, run_id, TASK_ID)["state"] == "deferred"
    store = store_of(cluster)
    with store.engine.connect() as connection:
        assert connection.execute(select(RELEASE)).all() == []
        assert connection.execute(select(ECO_SWITCH)).all() == []
    [row] = store.rows(dag_id=DAG_ID, run_id=run_id)
    assert row["state"] == "deferred" and row["released_by"] is None
    assert carbon_api(cluster, "GET", "/audit", admin) == audit_before


def test_an_admin_releases_a_task_that_would_wait_hours_and_it_runs_at_the_next_poll(airflow_cluster, waiting):
    cluster: AirflowCluster = airflow_cluster
    run_id = waiting["released"]
    admin = admin_token(cluster)
    assert cluster.task_instance(DAG_ID, run_id, TASK_ID)["state"] == "deferred"
    [listed] = [row for row in carbon_api(cluster, "GET", "/deferred", admin, params={"dag_id": DAG_ID})
                if row["run_id"] == run_id]
    assert listed["airflow_state"] == "deferred" and listed["reason"] == "green_window"
    planned = instant(listed["planned_start"])
    assert planned - instant(listed["ready_at"]) > timedelta(hours=1)  # it would wait hours

    reason = "board report due at 9, needs these summaries"
    release = f"/release/{DAG_ID}/{run_id}/{TASK_ID}"
    answer = carbon_api(cluster, "POST", release, admin, params={"map_index": -1}, json={"reason": reason})
    assert answer["released_by"] == cluster.username and answer["reason"] == reason
    assert (answer["map_index"], answer["try_number"]) == (-1, 1)
    released_at = instant(answer["released_at"])

    cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "success", timeout_s=120)
    record = cluster.xcom(DAG_ID, run_id, TASK_ID, key="carbon")
    assert record["reason"] == "released" and record["released_by"] == cluster.username
    assert record["release_reason"] == reason and instant(record["released_at"]) == released_at
    fired_within_bound(record, released_at)
    assert instant(record["started_at"]) < planned
    ran_dirty_as_when_ready(record)

    [row] = store_of(cluster).rows(dag_id=DAG_ID, run_id=run_id)
    assert row["state"] == "completed" and row["reason"] == "released" and row["released_by"] == cluster.username
    assert row["release_reason"] == reason
    assert run_id not in {row["run_id"] for row in carbon_api(cluster, "GET", "/deferred", admin)}
    [entry] = [entry for entry in carbon_api(cluster, "GET", "/audit", admin, params={"dag_id": DAG_ID})
               if entry["action"] == "release" and entry["run_id"] == run_id]
    assert entry["actor"] == cluster.username and entry["reason"] == reason
    assert (entry["task_id"], entry["map_index"]) == (TASK_ID, -1) and instant(entry["at"]) == released_at
    carbon_api(cluster, "POST", release, admin, expect=404, json={"reason": "again"})  # no longer waiting


def test_the_cli_releases_a_waiting_task_through_the_clusters_store(airflow_cluster, waiting):
    cluster: AirflowCluster = airflow_cluster
    run_id = waiting["cli"]
    reason = "rerun before the deploy"
    result = subprocess.run([CARBON_CLI, "release", DAG_ID, run_id, TASK_ID, "--reason", reason], env=cluster.env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"released {TASK_ID} in run {run_id} of {DAG_ID}" in result.stdout

    cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "success", timeout_s=120)
    record = cluster.xcom(DAG_ID, run_id, TASK_ID, key="carbon")
    actor = f"cli:{getpass.getuser()}"
    assert record["reason"] == "released" and record["released_by"] == actor
    assert record["release_reason"] == reason
    fired_within_bound(record, instant(record["released_at"]))
    ran_dirty_as_when_ready(record)
    [entry] = [entry for entry in carbon_api(cluster, "GET", "/audit", admin_token(cluster))
               if entry["action"] == "release" and entry["run_id"] == run_id]
    assert entry["actor"] == actor and entry["reason"] == reason


def test_eco_mode_off_releases_the_waiting_task_and_a_new_one_runs_at_once(airflow_cluster, waiting):
    cluster: AirflowCluster = airflow_cluster
    admin = admin_token(cluster)
    waiting_run = waiting["eco"]
    assert cluster.task_instance(DAG_ID, waiting_run, TASK_ID)["state"] == "deferred"
    reason = "incident 42: drain the queue"
    switch = carbon_api(cluster, "POST", "/eco/off", admin, json={"dag_id": DAG_ID, "reason": reason})
    assert switch["active"] and switch["dag_id"] == DAG_ID and switch["set_by"] == cluster.username
    set_at = instant(switch["set_at"])

    new_run = cluster.trigger(DAG_ID, run_id="control__while_off")
    new_history = cluster.wait_for_state(DAG_ID, new_run, TASK_ID, "success", timeout_s=120)["history"]
    cluster.wait_for_state(DAG_ID, waiting_run, TASK_ID, "success", timeout_s=120)
    released = cluster.xcom(DAG_ID, waiting_run, TASK_ID, key="carbon")
    assert released["reason"] == "eco_off" and released["released_by"] == cluster.username
    assert released["release_reason"] == reason and instant(released["released_at"]) == set_at
    fired_within_bound(released, set_at)
    ran_dirty_as_when_ready(released)

    at_once = cluster.xcom(DAG_ID, new_run, TASK_ID, key="carbon")
    assert at_once["reason"] == "eco_off" and at_once["released_by"] == cluster.username
    decided = instant(at_once["decided_at"])
    assert decided >= set_at - WHOLE_SECOND and instant(at_once["planned_start"]) == decided
    assert "deferred" not in new_history and " defers (" not in cluster.logs(DAG_ID, new_run, TASK_ID)
    [row] = store_of(cluster).rows(dag_id=DAG_ID, run_id=new_run)
    assert row["state"] == "completed" and row["reason"] == "eco_off"

    cleared = carbon_api(cluster, "POST", "/eco/on", admin, json={"dag_id": DAG_ID, "reason": "incident closed"})
    assert cleared == {"dag_id": DAG_ID, "cleared": True}
    eco = carbon_api(cluster, "GET", "/eco", admin)
    assert eco["switches"] == [] and not eco["off_everywhere"]
    switched = [(entry["action"], entry["actor"], entry["reason"])
                for entry in carbon_api(cluster, "GET", "/audit", admin, params={"dag_id": DAG_ID})
                if entry["action"].startswith("eco_")]
    assert switched == [("eco_on", cluster.username, "incident closed"), ("eco_off", cluster.username, reason)]
