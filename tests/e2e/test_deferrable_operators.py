"""Deferrable and mapped classic operators made carbon-aware, in a running Airflow (scheduler, triggerer, workers).

Each task defers on the carbon trigger until its deadline, 10 s after it became ready; then the
wrapped sensors defer on their own triggers; the try is recorded when their own resume ends.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_carbon.metrics import MetricsStore
from tests.e2e.airflow_cluster import AirflowCluster

SIGNAL = Path(tempfile.mkdtemp(prefix="carbon_e2e_deferrable_")) / "signal.csv"
AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_deferrable"
AIRFLOW_ENV = {
    "AIRFLOW_CONN_FALLING_SIGNAL": json.dumps(
        {"conn_type": "carbon_csv", "extra": {"path": str(SIGNAL), "region": "TEST"}}),
}
DAG_ID = "carbon_deferrable"

pytestmark = pytest.mark.timeout(600)


def write_falling_signal(path: Path) -> None:
    """Intensity falling by 1 g/kWh a minute, from an hour ago to a day ahead: the best start is the deadline."""
    now_s = int(datetime.now(UTC).timestamp()) // 60 * 60
    rows = [f"{datetime.fromtimestamp(now_s + 60 * step, UTC):%Y-%m-%dT%H:%M:%S},TEST,{2000 - step}"
            for step in range(-60, 1441)]
    path.write_text("timestamp,region,carbon_intensity\n" + "\n".join(rows) + "\n")


def instants(record: dict, *names: str) -> list[datetime]:
    return [datetime.fromisoformat(record[name]) for name in names]


def test_deferrable_and_mapped_operators_wait_for_the_grid_then_for_themselves_and_record(airflow_cluster):
    cluster: AirflowCluster = airflow_cluster
    cluster.wait_for_dag(DAG_ID)
    write_falling_signal(SIGNAL)
    triggered = time.monotonic()
    run_id = cluster.trigger(DAG_ID)
    store = MetricsStore(f"sqlite:///{cluster.home}/carbon_metrics.db")

    cluster.wait_for_state(DAG_ID, run_id, "remote_inference", "deferred", timeout_s=90)
    [waiting] = store.rows(dag_id=DAG_ID, task_id="remote_inference")  # the carbon trigger's wait
    assert waiting["state"] == "deferred" and waiting["planned_start"] > waiting["ready_at"]

    assert cluster.wait_for_run(DAG_ID, run_id, timeout_s=120)["state"] == "success"
    print(f"cluster started in {cluster.startup_s:.1f}s; the run took {time.monotonic() - triggered:.1f}s")
    for task_id in ("remote_inference", "remote_batch"):
        log = cluster.logs(DAG_ID, run_id, task_id)
        assert log.count("Pausing task as DEFERRED") == 2, log  # on the carbon trigger, then on its own
    assert cluster.xcom(DAG_ID, run_id, "remote_batch", key="carbon_work")["method"] == "execute_complete"

    record = cluster.xcom(DAG_ID, run_id, "report")  # what a downstream task pulls
    assert record == cluster.xcom(DAG_ID, run_id, "remote_inference", key="carbon")
    started, ended, deadline = instants(record, "started_at", "ended_at", "deadline")
    assert record["reason"] == "deadline" and started >= deadline.replace(microsecond=0)  # whole seconds
    assert ended - started >= timedelta(seconds=5)  # the record spans the sensor's own wait
    [row] = store.rows(dag_id=DAG_ID, task_id="remote_inference")
    assert row["state"] == "completed" and (row["started_at"], row["ended_at"]) == (started, ended)
    assert (row["ready_at"], row["deadline"]) == (waiting["ready_at"], waiting["deadline"])
    [batch] = store.rows(dag_id=DAG_ID, task_id="remote_batch")
    assert batch["state"] == "completed" and batch["reason"] == "deadline"

    shards = store.rows(dag_id=DAG_ID, task_id="shards")
    assert [row["map_index"] for row in shards] == [0, 1, 2] and {row["state"] for row in shards} == {"completed"}
    # Each waited for the carbon deadline; instances started together each count as the first to become ready.
    assert all(row["reason"] == "deadline" and row["started_at"] >= row["deadline"].replace(microsecond=0)
               for row in shards)
    for index in range(3):
        assert cluster.xcom(DAG_ID, run_id, "shards", map_index=index) == str(index)  # its own work ran
        assert cluster.xcom(DAG_ID, run_id, "shards", key="carbon", map_index=index)["map_index"] == index
