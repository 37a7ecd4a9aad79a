"""The sensor books no invented energy, in a running Airflow: the tasks it let run meter themselves and add theirs.

``carbon_gated`` is a ``CarbonAwareSensor`` (policy ``immediate``) >> two PythonOperators, each busy on a CPU for
about two seconds. Each of them is metered in its own task process by the Carbon plugin's listener; after the run,
the sensor's row in the store is the sum of their two rows in ``carbon_gated_energy`` and still spans no time. A task
process writes its row after it reported success, so the run can end a moment before the last row is there.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from airflow_carbon.metrics import MetricsStore
from airflow_carbon.metrics.gated import gated_rows
from tests.e2e.airflow_cluster import AirflowCluster

AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_gated"
DAG_ID, SENSOR, GATED = "carbon_gated", "wait", ("first", "second")
#: How long after the run succeeded the last task's row may take: its process writes it after reporting success.
ROWS_TIMEOUT_S = 60

pytestmark = pytest.mark.timeout(300)


def test_the_sensor_record_is_the_energy_its_downstream_tasks_drew(airflow_cluster):
    cluster: AirflowCluster = airflow_cluster
    cluster.wait_for_dag(DAG_ID)
    run_id = cluster.trigger(DAG_ID)
    run = cluster.wait_for_run(DAG_ID, run_id, timeout_s=150)
    assert run["state"] == "success", run

    # The listener writes a task's row after the task reported success, so the run may end first: wait for both.
    store = MetricsStore(f"sqlite:///{cluster.home}/carbon_metrics.db")
    try:
        deadline = time.monotonic() + ROWS_TIMEOUT_S
        while len(rows := gated_rows(store.engine, DAG_ID, run_id, SENSOR)) < len(GATED):
            if time.monotonic() > deadline:
                break
            time.sleep(1.0)
        recorded = store.rows(dag_id=DAG_ID, run_id=run_id)
    finally:
        store.close()
    [sensor] = [row for row in recorded if row["task_id"] == SENSOR]
    assert not set(GATED) & {row["task_id"] for row in recorded}  # not carbon-aware: no record of their own
    assert sorted(row["task_id"] for row in rows) == sorted(GATED)
    assert all(row["energy_kwh"] > 0 and row["ended_at"] > row["started_at"] for row in rows), rows
    assert sensor["state"] == "completed"
    assert sensor["energy_kwh"] > 0
    assert sensor["energy_kwh"] == pytest.approx(sum(row["energy_kwh"] for row in rows))
    assert sensor["energy_method"].startswith("gated: "), sensor["energy_method"]
    assert sensor["energy_scope"] == "gated"
    assert sensor["energy_breakdown_kwh"] == {row["task_id"]: pytest.approx(row["energy_kwh"]) for row in rows}
    assert sensor["ended_at"] == sensor["started_at"]  # no 30 minutes in the future
