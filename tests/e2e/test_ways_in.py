"""Every way in, in a real Airflow: ``airflow dags test`` runs each example DAG, its trigger inline.

The signal is a CSV connection whose green window is ``FAR_S`` away (inside every task's max_delay, so the
first task defers whenever it gets to its decision) until the command says a task deferred; the test then
moves the window ``GREEN_AFTER_DEFERRAL_S`` ahead, and the trigger, at its next refresh, waits for it. So each
carbon-aware task really defers, is resumed by its trigger, runs and writes its record, on a busy machine too.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from airflow_carbon.metrics import MetricsStore
from tests.e2e.airflow_cli import airflow_watching, migrated_home
from tests.e2e.signal_window import write_signal_file

CARBON_TASKS = {
    "batch_translation": ["translate"],
    "log_summaries": ["summarize_logs"],
    "image_tagging": ["tag"] * 3,
    "model_evaluation": ["wait_green"],
}
FAR_S = 20 * 60  # batch_translation may wait 30 minutes
GREEN_AFTER_DEFERRAL_S = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    signal = home / "signal.csv"
    connection = {"conn_type": "carbon_csv", "extra": {"path": str(signal), "region": "TEST"}}
    return migrated_home(home, AIRFLOW__CARBON__SOURCE="test_signal", AIRFLOW__CARBON__REFRESH_INTERVAL="2s",
                         AIRFLOW_CONN_TEST_SIGNAL=json.dumps(connection)), signal, home


@pytest.mark.parametrize("dag_id", sorted(CARBON_TASKS))
def test_each_way_in_defers_resumes_and_records(env, dag_id):
    environment, signal, home = env
    write_signal_file(signal, green_in_s=FAR_S, period_s=1)
    out = airflow_watching(environment, "dags", "test", dag_id, when="Pausing task as DEFERRED",
                           then=lambda: write_signal_file(signal, green_in_s=GREEN_AFTER_DEFERRAL_S, period_s=1))
    assert "state=success" in out
    assert "Pausing task as DEFERRED" in out and "carbon window: green_window" in out

    rows = MetricsStore(f"sqlite:///{home}/carbon_metrics.db").rows(dag_id=dag_id)
    assert sorted(r["task_id"] for r in rows) == sorted(CARBON_TASKS[dag_id])  # one row per task try
    for row in rows:
        assert row["state"] == "completed" and row["reason"] == "green_window"
        assert row["served_by"] == "conn:test_signal"
        assert row["ready_at"] <= row["started_at"] <= row["deadline"]
        assert row["emissions_g"] == pytest.approx(row["energy_kwh"] * 120, rel=0.01)  # ran in the clean period
    deferred = [r for r in rows if r["planned_start"] is not None and r["planned_start"] > r["ready_at"]]
    assert deferred and all(r["started_at"] >= r["planned_start"] for r in deferred)
    assert all(isinstance(r["decided_at"], datetime) for r in rows)
