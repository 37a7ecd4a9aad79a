"""The e2e harness itself: a real Airflow defers a sensor to the triggerer, runs a task, and goes away cleanly."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.airflow_cluster import AirflowCluster, processes_with_home

AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_harness"
DAG_ID = "harness_probe"

pytestmark = pytest.mark.timeout(420)


def test_a_deferrable_sensor_goes_deferred_then_success_and_the_next_task_pushes_its_xcom(airflow_cluster):
    cluster: AirflowCluster = airflow_cluster
    print(f"cluster started in {cluster.startup_s:.1f}s on port {cluster.port}")
    health = cluster.health()
    assert {health[c]["status"] for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {"healthy"}

    # The public API wants the token; only the health endpoint is open.
    assert httpx.get(f"{cluster.base_url}/api/v2/dags", trust_env=False).status_code == 401

    assert cluster.wait_for_dag(DAG_ID)["is_paused"] is False
    started = time.monotonic()
    run_id = cluster.trigger(DAG_ID)

    deferred = cluster.wait_for_state(DAG_ID, run_id, "wait", "deferred", timeout_s=120)
    assert deferred["state"] == "deferred"
    done = cluster.wait_for_state(DAG_ID, run_id, "wait", "success", timeout_s=120)
    assert done["history"][0] == "deferred" and done["history"][-1] == "success"
    report = cluster.wait_for_state(DAG_ID, run_id, "report", "success", timeout_s=120)
    print(
        f"sensor deferred {deferred['history']} then {done['history']}; report {report['history']}; "
        f"{time.monotonic() - started:.1f}s after the trigger"
    )

    assert cluster.xcom(DAG_ID, run_id, "report") == {"probe": "ok", "answer": 42}
    assert cluster.wait_for_run(DAG_ID, run_id, timeout_s=60)["state"] == "success"
    assert {ti["task_id"]: ti["state"] for ti in cluster.task_instances(DAG_ID, run_id)} == {
        "wait": "success",
        "report": "success",
    }
    assert "Pushing xcom" in cluster.logs(DAG_ID, run_id, "report")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_every_process_of_the_cluster_is_gone_after_exit(airflow_cluster):
    cluster: AirflowCluster = airflow_cluster
    names = {proc.name for proc in cluster.processes}
    assert names == {"api-server", "scheduler", "dag-processor", "triggerer-1"}
    main_pids = {proc.pid for proc in cluster.processes}
    assert cluster.running_pids() >= main_pids  # all alive before (with their current children)
    pids = cluster.pids()
    assert len(pids) > len(main_pids)  # LocalExecutor workers, the trigger runner, task processes seen so far

    started = time.monotonic()
    cluster.__exit__(None, None, None)  # what the fixture does after the module; stopping twice is harmless
    print(f"cluster stopped in {time.monotonic() - started:.1f}s")

    assert [pid for pid in pids if not _gone(pid)] == [], f"of {sorted(pids)}"
    assert cluster.running_pids() == set()
    assert processes_with_home(cluster.home) == []
    assert all(proc.popen.returncode is not None for proc in cluster.processes)
