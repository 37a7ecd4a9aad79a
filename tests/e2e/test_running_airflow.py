"""The product as a DAG author meets it: a running Airflow defers a carbon-aware task, then runs and records it.

Only the REST API v2 is used to drive and observe Airflow; the metrics store is read as
the UI plugin will read it, from its own SQLite file. ``carbon_demo`` takes its source from
``[carbon]``, here a CSV connection whose green window is 4 minutes away until the test has seen
the task defer, and ``GREEN_AFTER_DEFERRAL_S`` after that.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

from airflow_carbon.metrics import MetricsStore
from tests.e2e.airflow_cluster import AirflowCluster
from tests.e2e.signal_window import write_signal_file

SIGNAL = Path(tempfile.mkdtemp(prefix="carbon_e2e_")) / "signal.csv"
AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_carbon"
AIRFLOW_ENV = {
    "AIRFLOW__CARBON__SOURCE": "carbon_demo_signal",
    "AIRFLOW__CARBON__REGION": "TEST",
    "AIRFLOW_CONN_CARBON_DEMO_SIGNAL": json.dumps(
        {"conn_type": "carbon_csv", "extra": {"path": str(SIGNAL), "region": "TEST"}}),
}
DAG_ID, TASK_ID = "carbon_demo", "summarize_logs"
FAR_S = 240  # within carbon_demo's 5 minutes: the task defers whenever it decides
GREEN_AFTER_DEFERRAL_S = 10

pytestmark = pytest.mark.timeout(480)


def test_a_carbon_aware_task_defers_resumes_and_records(airflow_cluster):
    cluster: AirflowCluster = airflow_cluster
    cluster.wait_for_dag(DAG_ID)
    write_signal_file(SIGNAL, green_in_s=FAR_S, period_s=5)
    run_id = cluster.trigger(DAG_ID)

    deferred = cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "deferred", timeout_s=180)
    store = MetricsStore(f"sqlite:///{cluster.home}/carbon_metrics.db")
    [waiting] = store.rows(dag_id=DAG_ID, state="deferred")  # visible while it waits, before it runs
    assert waiting["planned_start"] > waiting["ready_at"] and waiting["reason"] == "green_window"
    write_signal_file(SIGNAL, green_in_s=GREEN_AFTER_DEFERRAL_S, period_s=5)  # its trigger re-plans on it

    done = cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "success", timeout_s=240)
    assert deferred["history"][-1] == "deferred" and done["history"][-1] == "success"
    record = cluster.xcom(DAG_ID, run_id, TASK_ID, key="carbon")
    assert record["reason"] == "green_window" and record["region"] == "TEST"
    # declared energy is not measured: the record is estimated, and says so
    assert record["estimated"] is True and record["energy_method"] == "declared"
    started, planned = (datetime.fromisoformat(record[k]) for k in ("started_at", "planned_start"))
    assert started >= planned and record["delay_s"] > 0
    assert record["emissions_g"] == pytest.approx(0.05 * 120) and record["baseline_emissions_g"] == pytest.approx(20)
    assert record["saved_g"] == pytest.approx(14)
    assert cluster.xcom(DAG_ID, run_id, TASK_ID) == {"INFO": 3, "WARN": 1, "ERROR": 1}  # its own return value

    [row] = store.rows(dag_id=DAG_ID, task_id=TASK_ID)  # one row for the one try
    assert row["state"] == "completed" and row["saved_g"] == pytest.approx(14) and row["run_id"] == run_id
    assert cluster.wait_for_run(DAG_ID, run_id, timeout_s=120)["state"] == "success"
