"""A task's energy metered in a running Airflow, and the task then planned on what its earlier tries measured.

``carbon_energy.crunch`` burns 2 s of CPU and declares neither energy nor duration. This machine has no RAPL, so
codecarbon estimates the CPU from its model and the process's load, and the memory from what the process holds; where
RAPL is readable the CPU is measured instead, and the test accepts either.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from statistics import median

import pytest

from tests.e2e.airflow_cluster import AirflowCluster

AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_energy"
DAG_ID, TASK_ID = "carbon_energy", "crunch"
RUNS = 4

pytestmark = pytest.mark.timeout(900)


def run_once(cluster: AirflowCluster) -> dict:
    run_id = cluster.trigger(DAG_ID)
    cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "success", timeout_s=240)
    return cluster.xcom(DAG_ID, run_id, TASK_ID, key="carbon")


def run_s(record: dict) -> float:
    return (datetime.fromisoformat(record["ended_at"]) - datetime.fromisoformat(record["started_at"])).total_seconds()


def test_a_cpu_bound_task_is_metered_then_planned_on_its_history(airflow_cluster):
    cluster: AirflowCluster = airflow_cluster
    cluster.wait_for_dag(DAG_ID)
    records = [run_once(cluster) for _ in range(RUNS)]

    for record in records:
        # how its energy was obtained, per component, and non-zero
        assert record["energy_method"] in ("cpu=estimated-cpu-model, ram=estimated-ram-model",
                                           "cpu=measured-rapl, ram=estimated-ram-model", "measured-rapl"), record
        assert record["energy_kwh"] > 0 and record["energy_breakdown_kwh"]["cpu"] > 0
        assert record["energy_kwh"] == pytest.approx(sum(record["energy_breakdown_kwh"].values()) * record["pue"])
        assert record["energy_scope"] in ("process", "cpu=machine-split, ram=process") and record["estimated"]
        assert run_s(record) >= 2.0  # it burned 2 s of CPU inside the metered interval

    # the first knew nothing; each later one learned from the tries before it
    assert [r["expected_from"] for r in records] == ["defaults (no history)", "history (n=1)", "history (n=2)",
                                                     "history (n=3)"]
    assert records[0]["expected_duration_s"] == 1800.0  # [carbon] expected_duration
    learned = records[-1]
    assert learned["expected_duration_s"] == pytest.approx(median(run_s(r) for r in records[:3]), abs=1e-3)
    assert learned["expected_energy_kwh"] == pytest.approx(median(r["energy_kwh"] / r["pue"] for r in records[:3]))
    print(f"\nenergy per run (kWh): {[r['energy_kwh'] for r in records]}; method {learned['energy_method']}; run (s): "
          f"{[round(run_s(r), 2) for r in records]}; planned the last on {learned['expected_duration_s']:.2f} s and "
          f"{learned['expected_energy_kwh']:.3g} kWh ({learned['expected_from']})")
    logs = cluster.logs(DAG_ID, learned["run_id"], TASK_ID)
    assert "energy meter" not in logs  # no meter failed or warned
