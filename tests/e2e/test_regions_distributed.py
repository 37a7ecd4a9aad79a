"""A choice between regions in a distributed Airflow: each region's task runs on that region's own Celery worker.

The deployment is ``DistributedAirflowCluster`` (Postgres, Redis, CeleryExecutor) with three Celery workers: one on
the default queue, which runs ``choose_region``, and one each on the queues ``fr`` and ``de``. ``carbon_regions``
(``dags_regions/``) chooses between DE (home) and FR, each planned on its own CSV connection; both read one file
with a region column.

Run 1 makes FR greener: the choice defers (its row says ``deferred`` while it waits), then follows ``evaluate_fr``,
which the ``fr`` worker runs, and ``evaluate_de`` is skipped; the choice's row, the only one of the run, says FR,
home DE, both candidates' expected grams and, once ``evaluate_fr`` finished, its energy and the saving split into
time and place. Run 2 makes DE greener and goes the other way.

As in ``test_distributed.py``, the green window stays ``FAR_S`` away (inside the choice's max_delay, so it defers
whenever it gets to decide) until the test has seen it defer, and is ``GREEN_AFTER_CHECKS_S`` away after that.

Run with ``make test-distributed`` (which installs Debian's postgresql and redis-server when missing).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_carbon.metrics import MetricsStore
from tests.e2e.distributed import DistributedAirflowCluster, celery_executions

SIGNAL = Path(tempfile.mkdtemp(prefix="carbon_regions_")) / "regions.csv"
AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_regions"
AIRFLOW_ENV = {
    f"AIRFLOW_CONN_CARBON_REGIONS_{region}": json.dumps(
        {"conn_type": "carbon_csv", "extra": {"path": str(SIGNAL), "region": region}})
    for region in ("DE", "FR")
}
DAG_ID, CHOICE, HOME = "carbon_regions", "choose_region", "DE"
TASKS = {"DE": "evaluate_de", "FR": "evaluate_fr"}
QUEUES = {"DE": "de", "FR": "fr"}
REFRESH = timedelta(seconds=20)  # choose_region's refresh_interval
TRIGGER_CLASS = "airflow_carbon.triggers.regions.CarbonRegionsTrigger"
FAR_S = 300  # within choose_region's 15 minutes: it defers whenever it decides, and waits while checked
GREEN_AFTER_CHECKS_S = 15
PERIOD_S = 5
#: g/kWh before the window (DE a little cleaner, so running at once would stay home) and in it, where the other
#: region gets cleaner too but less: run 1 saves by time and by place, run 2 by time only.
DIRTY = {"DE": 400.0, "FR": 450.0}
GREEN, LESS_GREEN = 100.0, 300.0
#: The listener adds the chosen task's energy after that task reported success, so it may come after the run ended.
RECORD_TIMEOUT_S = 90

pytestmark = pytest.mark.timeout(900)


def write_regions_signal(path: Path, *, green: str, green_in_s: float) -> Path:
    """Both regions, ``PERIOD_S`` apart, an hour back and a day ahead: dirty until ``green_in_s`` from now, then
    ``green`` at ``GREEN`` and the other at ``LESS_GREEN``; the file is replaced at once, never read half-written."""
    now_s = int(datetime.now(UTC).timestamp())
    green_s = now_s + green_in_s
    rows = ["timestamp,region,carbon_intensity"]
    for start_s in range(now_s - now_s % PERIOD_S - 3600, now_s + 86400, PERIOD_S):
        instant = datetime.fromtimestamp(start_s, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        for region in ("DE", "FR"):
            value = DIRTY[region] if start_s < green_s else GREEN if region == green else LESS_GREEN
            rows.append(f"{instant},{region},{value}")
    staged = path.with_name(path.name + ".new")
    staged.write_text("\n".join(rows) + "\n")
    os.replace(staged, path)
    return path


@pytest.fixture(scope="module")
def airflow_cluster() -> Iterator[DistributedAirflowCluster]:
    """Overrides conftest's fixture (same name, so failures still get the process logs attached)."""
    started = time.monotonic()
    keep = os.environ.get("AIRFLOW_E2E_KEEP_HOME", "") not in ("", "0")
    cluster = DistributedAirflowCluster(AIRFLOW_DAGS_FOLDER, env=AIRFLOW_ENV, keep_home=keep, triggerers=1,
                                        worker_concurrency=1, queues=tuple(QUEUES.values()))
    try:
        with cluster:
            print(f"\nregions e2e: started in {time.monotonic() - started:.1f} s")
            yield cluster
    finally:
        if keep:
            print(f"\nAIRFLOW_HOME kept at {cluster.home}")
        print(f"\nregions e2e: {time.monotonic() - started:.1f} s in all")


@pytest.fixture(scope="module")
def store(airflow_cluster: DistributedAirflowCluster) -> Iterator[MetricsStore]:
    metrics = MetricsStore(airflow_cluster.metrics_url)
    yield metrics
    metrics.close()


def executions(cluster: DistributedAirflowCluster, worker: str, run_id: str) -> dict[str, int]:
    """Task id -> how many times ``worker``'s log shows it executing that task of ``run_id``."""
    log = cluster.process(worker).log_path
    return {task_id: celery_executions(log, task_id, run_id) for task_id in (CHOICE, *TASKS.values())}


def completed_rows(store: MetricsStore, run_id: str) -> list[dict]:
    """The run's rows once the choice's has the chosen task's energy and saving, which the listener adds to it."""
    deadline = time.monotonic() + RECORD_TIMEOUT_S
    while True:
        rows = store.rows(dag_id=DAG_ID, run_id=run_id)
        added = len(rows) == 1 and bool(rows[0]["energy_kwh"]) and rows[0]["saved_time_g"] is not None
        if added or time.monotonic() > deadline:
            return rows
        time.sleep(1.0)


def choose(cluster: DistributedAirflowCluster, store: MetricsStore, green: str) -> dict:
    """One run on a signal that makes ``green`` the greener region: checks it defers, then goes there; its row."""
    [other] = [region for region in TASKS if region != green]
    write_regions_signal(SIGNAL, green=green, green_in_s=FAR_S)
    run_id = cluster.trigger(DAG_ID)
    ti = cluster.wait_for_state(DAG_ID, run_id, CHOICE, "deferred", timeout_s=300)
    assert ti["trigger"]["classpath"] == TRIGGER_CLASS, ti["trigger"]
    [waiting] = store.rows(dag_id=DAG_ID, run_id=run_id)  # the decision, written while it waits
    assert (waiting["task_id"], waiting["state"], waiting["home_region"]) == (CHOICE, "deferred", HOME), waiting
    assert waiting["region"] == green and waiting["chosen_task_id"] == TASKS[green], waiting  # the plan so far
    planned = waiting["region_expected_g"]  # each region at its own best start: the green one's window is ahead
    assert set(planned) == set(TASKS) and planned[green] < planned[other], waiting

    green_at = datetime.now(UTC) + timedelta(seconds=GREEN_AFTER_CHECKS_S)
    write_regions_signal(SIGNAL, green=green, green_in_s=GREEN_AFTER_CHECKS_S)
    ran = cluster.wait_for_state(DAG_ID, run_id, TASKS[green], "success", timeout_s=300)
    assert cluster.wait_for_state(DAG_ID, run_id, TASKS[other], "skipped", timeout_s=120)["state"] == "skipped"
    assert cluster.wait_for_run(DAG_ID, run_id, timeout_s=120)["state"] == "success"

    # The chosen task ran on its region's worker, once; nothing of this run ran on the other region's worker.
    here, there, default = (executions(cluster, name, run_id) for name in (
        f"celery-worker-{QUEUES[green]}", f"celery-worker-{QUEUES[other]}", "celery-worker"))
    assert here == {CHOICE: 0, TASKS[green]: 1, TASKS[other]: 0}, here
    assert there == {CHOICE: 0, TASKS["DE"]: 0, TASKS["FR"]: 0}, there
    assert default[CHOICE] >= 1 and default[TASKS["DE"]] == default[TASKS["FR"]] == 0, default
    where = cluster.xcom(DAG_ID, run_id, TASKS[green])
    assert where["queue"] == ran["queue"] == QUEUES[green], (where, ran)
    assert where["worker"].split("@")[0] == QUEUES[green] and ran["hostname"], where  # Celery node fr@<host>

    rows = completed_rows(store, run_id)
    assert len(rows) == 1, rows  # the choice's record, once; the region tasks have none of their own
    [record] = rows
    assert record["task_id"] == CHOICE and record["state"] == "completed", record
    assert (record["region"], record["home_region"], record["chosen_task_id"]) == (green, HOME, TASKS[green])
    expected = record["region_expected_g"]
    assert set(expected) == set(TASKS) and expected[green] < expected[other], expected
    # it went when the window opened, not before (bounds on the trigger's own release, not on Airflow's speed)
    assert min(record["decided_at"], record["planned_start"]) >= green_at - timedelta(seconds=1), record
    assert record["energy_kwh"] > 0 and record["emissions_g"] > 0, record
    assert record["saved_time_g"] + record["saved_place_g"] == pytest.approx(record["saved_g"], abs=1e-9), record
    assert record["saved_time_g"] > 0, record  # the home region got cleaner too
    return record


def test_a_choice_that_defers_then_runs_in_france_on_the_fr_worker(airflow_cluster, store):
    cluster: DistributedAirflowCluster = airflow_cluster
    assert "Loaded executor: :CeleryExecutor:" in cluster.process("scheduler").log_path.read_text()
    cluster.wait_for_dag(DAG_ID)
    record = choose(cluster, store, "FR")
    assert record["saved_place_g"] > 0, record  # France was cleaner than Germany then
    print(f"\nrun 1 (FR): saved {record['saved_g']:.6f} g = time {record['saved_time_g']:.6f} g "
          f"+ place {record['saved_place_g']:.6f} g; expected {record['region_expected_g']}")


def test_a_second_choice_on_data_that_favours_germany_stays_home(airflow_cluster, store):
    cluster: DistributedAirflowCluster = airflow_cluster
    cluster.wait_for_dag(DAG_ID)
    write_regions_signal(SIGNAL, green="DE", green_in_s=FAR_S)
    # A triggerer shares one read of a source among its triggers for up to a refresh interval: let run 1's expire,
    # so the new choice plans on this file, whatever the machine's speed.
    time.sleep(REFRESH.total_seconds() + 1)
    record = choose(cluster, store, "DE")
    assert record["saved_place_g"] == pytest.approx(0, abs=1e-9), record  # it stayed home: no saving by place
    print(f"\nrun 2 (DE): saved {record['saved_g']:.6f} g = time {record['saved_time_g']:.6f} g "
          f"+ place {record['saved_place_g']:.6f} g; expected {record['region_expected_g']}")
