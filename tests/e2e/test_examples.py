"""Every DAG in ``dags/`` as a new user meets it: a fresh Airflow with nothing configured, each DAG triggered through
the REST API v2 with ``logical_date: null`` (what the UI's trigger button and a scheduler-less trigger send), and
every run must succeed, each carbon-aware task with its ``carbon`` record. The one thing configured is what an
example cannot do without: ``solar_site``'s solar connection (the shipped solar profile of Berlin on 30 kWp).

With nothing configured, every carbon-aware task plans on the data shipped in the package (``bundled:DE``, replayed
onto today) and may wait as long as its DAG allows, four hours for ``log_summaries``. So that every run of the test
sees the same grid, Airflow's processes run under libfaketime from ``AIRFLOW_CLOCK_AT``, a Tuesday morning when all
but ``carbon_demo`` wait for a window between 15 minutes and 2 hours away. The DAGs are not changed to make those
waits short: once every carbon-aware task has made its first decision (on a worker), the test moves the triggerer's
clock ahead ``STEP_S`` each second, so each trigger re-plans as the hours pass and fires at its window (or its
deadline). The workers' clock is not moved, so a record's ``started_at`` is when its work started on that clock,
before the planned start. No scheduled runs are made (``use_job_schedule`` off): only the ones the test triggers.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_carbon.signals.bundled import bundled_path
from tests.e2e.airflow_cluster import TERMINAL_RUN_STATES, TERMINAL_TI_STATES, AirflowCluster

AIRFLOW_DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
#: The one connection an example needs: ``solar_site``'s panels, the shipped Berlin profile on 30 kWp.
SITE_SOLAR = {"conn_type": "carbon_solar_csv",
              "extra": {"path": str(bundled_path("solar_5min_normalised.csv")), "column": "Berlin", "peak_kw": 30,
                        "site": "roof"}}
AIRFLOW_ENV = {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False", "AIRFLOW_CONN_SITE_SOLAR": json.dumps(SITE_SOLAR)}
AIRFLOW_TRIGGERER_CLOCK = True
AIRFLOW_CLOCK_AT = datetime(2026, 12, 1, 10, 16, tzinfo=UTC)
#: Modules in ``dags/`` that define no DAG: what the examples import when they run.
HELPER_MODULES = {"digits_model"}
DAG_IDS = sorted(path.stem for path in AIRFLOW_DAGS_FOLDER.glob("*.py") if path.stem not in HELPER_MODULES)
#: dag id -> (carbon-aware task, map index, the max_delay its DAG gives it)
CARBON_TASKS = {
    "batch_translation": [("translate", -1, timedelta(minutes=30))],
    "carbon_demo": [("summarize_logs", -1, timedelta(minutes=5))],
    "carbon_what_if": [],
    "image_tagging": [("tag", index, timedelta(hours=1)) for index in range(3)],
    "log_summaries": [("summarize_logs", -1, timedelta(hours=4))],
    "model_evaluation": [("wait_green", -1, timedelta(hours=2))],
    "solar_site": [(f"translate_{batch}", -1, timedelta(hours=1)) for batch in ("contracts", "manuals", "tickets")],
}
STEP_S = 120  # of the triggerer's clock per real second: a trigger wakes at most this late for its window
LONGEST_WAIT = timedelta(hours=4, minutes=30)  # the longest max_delay, and a refresh past it
DECIDED = frozenset({"deferred", *TERMINAL_TI_STATES})

pytestmark = pytest.mark.timeout(600)


def wait_until(condition, timeout_s: float, what: str, cluster: AirflowCluster, every=None):
    """Poll ``condition`` each second (calling ``every`` first) until it is true."""
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        cluster.check_processes()
        if every is not None:
            every()
        if value := condition():
            return value
        time.sleep(1)
    raise AssertionError(f"not {what} after {timeout_s:.0f} s\n{cluster.process_logs()}")


def test_every_example_dag_triggered_through_the_api_with_nothing_configured_succeeds(airflow_cluster):
    cluster: AirflowCluster = airflow_cluster
    assert sorted(CARBON_TASKS) == DAG_IDS, "a DAG was added to dags/: say which of its tasks are carbon-aware"
    started = time.monotonic()
    for dag_id in DAG_IDS:
        cluster.wait_for_dag(dag_id, timeout_s=180)
    assert cluster.get("/importErrors")["total_entries"] == 0
    runs = {dag_id: cluster.trigger(dag_id) for dag_id in DAG_IDS}

    def states(dag_id: str) -> dict[tuple[str, int], str | None]:
        return {(ti["task_id"], ti["map_index"]): ti["state"] for ti in cluster.task_instances(dag_id, runs[dag_id])}

    def all_decided() -> bool:
        for dag_id, tasks in CARBON_TASKS.items():
            now = states(dag_id) if tasks else {}
            if any(now.get((task_id, map_index)) not in DECIDED for task_id, map_index, _ in tasks):
                return False
        return True

    wait_until(all_decided, 300, "every carbon-aware task decided", cluster)
    decided_s = time.monotonic() - started

    offset = timedelta(0)

    def step_the_triggerers_clock() -> None:
        nonlocal offset
        if offset < LONGEST_WAIT:
            offset += timedelta(seconds=STEP_S)
            cluster.set_triggerer_clock(offset.total_seconds())

    def all_finished() -> dict[str, str]:
        finished = {dag_id: cluster.dag_run(dag_id, run_id)["state"] for dag_id, run_id in runs.items()}
        return finished if set(finished.values()) <= TERMINAL_RUN_STATES else {}

    finished = wait_until(all_finished, 300, "every run finished", cluster, every=step_the_triggerers_clock)
    print(f"\nexamples: every carbon-aware task decided {decided_s:.0f} s after the cluster was up; every run "
          f"finished {time.monotonic() - started:.0f} s after, the triggerer's clock {offset} ahead")
    assert finished == dict.fromkeys(DAG_IDS, "success")
    for dag_id in DAG_IDS:
        assert set(states(dag_id).values()) == {"success"}, f"{dag_id}: {states(dag_id)}"

    for dag_id, tasks in CARBON_TASKS.items():
        for task_id, map_index, max_delay in tasks:
            record = cluster.xcom(dag_id, runs[dag_id], task_id, key="carbon", map_index=map_index)
            where = f"{dag_id}.{task_id}[{map_index}]: {record}"
            assert record["source"] == record["served_by"] == "bundled:DE", where  # what ships in the package
            if dag_id == "solar_site":  # its panels may cover all of a job: no grid emissions then
                assert record["site"] == "roof" and record["solar_served_by"] == "conn:site_solar", where
                assert record["reason"] in ("solar", "green_window", "deadline") and record["emissions_g"] >= 0, where
            elif record["energy_scope"] == "gated":  # the sensor draws nothing itself: evaluate's energy is added
                assert record["reason"] in ("green_window", "deadline") and record["energy_method"] == "none", where
                assert record["energy_kwh"] == record["emissions_g"] == 0, where
                assert record["started_at"] == record["ended_at"], where
            else:
                assert record["reason"] in ("green_window", "deadline") and record["emissions_g"] > 0, where
            ready_at, deadline = (datetime.fromisoformat(record[k]) for k in ("ready_at", "deadline"))
            assert deadline - ready_at == max_delay, where
    summary = cluster.xcom("carbon_demo", runs["carbon_demo"], "summarize_logs")
    assert summary == {"INFO": 3, "WARN": 1, "ERROR": 1}
    demo_record = cluster.xcom("carbon_demo", runs["carbon_demo"], "summarize_logs", key="carbon")
    assert cluster.xcom("carbon_demo", runs["carbon_demo"], "report") == demo_record
    assert cluster.xcom("batch_translation", runs["batch_translation"], "translate") == "3"  # its templates rendered
    # Real inference: a classifier of scikit-learn's digits over noisy held-out images, deterministic.
    evaluation = cluster.xcom("model_evaluation", runs["model_evaluation"], "evaluate")
    assert evaluation["images"] == 300_000 and evaluation["accuracy"] > 0.9, evaluation
    chunks = [cluster.xcom("image_tagging", runs["image_tagging"], "tag", map_index=index) for index in range(3)]
    assert sum(chunk["images"] for chunk in chunks) == 150_000 and all(c["accuracy"] > 0.9 for c in chunks), chunks
    for index in range(3):  # it declares no duration nor power: a fresh store has no history to plan on
        record = cluster.xcom("image_tagging", runs["image_tagging"], "tag", key="carbon", map_index=index)
        assert record["expected_from"] == "defaults (no history)" and record["energy_method"], record
