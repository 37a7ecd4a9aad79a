"""Carbon-aware tasks in a distributed Airflow: Postgres, Redis, a Celery worker and two triggerers.

The deployment is ``DistributedAirflowCluster`` (``distributed.py``): real processes, no Docker. Airflow is driven and
observed through the REST API v2 only; the metrics store is read from its own Postgres database.

1. Three runs of ``carbon_demo`` defer; their triggers are spread over both triggerers; each task resumes on the Celery
   worker, succeeds, and leaves its ``carbon`` XCom and exactly one completed metrics row per try.
2. Three more runs defer; the triggerer holding most of their triggers is SIGKILLed; the other one takes them over
   (``trigger.triggerer_id`` changes through the API, and the survivor's log starts them) and every task still runs
   at its planned start, so by its deadline, with exactly one completed row per try.
3. Everything is stopped: no Airflow, Celery, Postgres or Redis process of the run remains.

``carbon_demo`` takes its source from ``[carbon]``: a CSV connection whose green window stays ``FAR_S`` away until
the test has seen what it checks while the tasks wait, and is ``GREEN_AFTER_CHECKS_S`` away after that.

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
from tests.e2e.airflow_cluster import AirflowCluster, processes_with_home
from tests.e2e.distributed import (
    TRIGGERER_HEALTH_CHECK_THRESHOLD_S,
    DistributedAirflowCluster,
    celery_executions,
    missing_services,
)
from tests.e2e.signal_window import write_signal_file

SIGNAL = Path(tempfile.mkdtemp(prefix="carbon_distributed_")) / "signal.csv"
AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_carbon"
AIRFLOW_ENV = {
    "AIRFLOW__CARBON__SOURCE": "carbon_demo_signal",
    "AIRFLOW__CARBON__REGION": "TEST",
    "AIRFLOW_CONN_CARBON_DEMO_SIGNAL": json.dumps(
        {"conn_type": "carbon_csv", "extra": {"path": str(SIGNAL), "region": "TEST"}}),
}
DAG_ID, TASK_ID = "carbon_demo", "summarize_logs"
RUNS = 3
REFRESH = timedelta(seconds=10)  # carbon_demo's refresh_interval
TRIGGER_CLASS = "airflow_carbon.triggers.carbon.CarbonWindowTrigger"
FAR_S = 240  # within carbon_demo's 5 minutes: every task defers whenever it decides, and waits while checked
GREEN_AFTER_CHECKS_S = 10

pytestmark = pytest.mark.timeout(600)


def test_the_services_are_installed():
    """``make test`` installs Debian's postgresql and redis-server; without them this test says so, not skips."""
    assert not missing_services(), f"needs {' and '.join(missing_services())}: run make test-distributed"

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def airflow_cluster() -> Iterator[DistributedAirflowCluster]:
    """Overrides conftest's fixture (same name, so failures still get the process logs attached)."""
    started = time.monotonic()
    keep = os.environ.get("AIRFLOW_E2E_KEEP_HOME", "") not in ("", "0")
    cluster = DistributedAirflowCluster(AIRFLOW_DAGS_FOLDER, env=AIRFLOW_ENV, keep_home=keep)
    try:
        with cluster:
            TIMINGS["start (postgres, redis, migrate, 6 airflow processes)"] = time.monotonic() - started
            yield cluster
    finally:
        TIMINGS["total"] = time.monotonic() - started
        if keep:
            print(f"\nAIRFLOW_HOME kept at {cluster.home}")
        print("\ndistributed e2e timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def _phase(name: str, started: float) -> None:
    TIMINGS[name] = time.monotonic() - started


def triggerer_names(cluster: AirflowCluster) -> list[str]:
    return [p.name for p in cluster.processes if p.name.startswith("triggerer")]


def trigger_of(cluster: AirflowCluster, run_id: str) -> dict | None:
    ti = cluster.task_instance(DAG_ID, run_id, TASK_ID)
    return ti["trigger"] if ti else None


def wait_assigned(cluster: AirflowCluster, run_ids: list[str], *, not_to: int | None = None,
                  timeout_s: float = 120) -> dict[str, dict]:
    """Until each run's trigger is held by a triggerer (other than job ``not_to``): run id -> trigger (API)."""
    deadline = time.monotonic() + timeout_s
    while True:
        cluster.check_processes()
        triggers = {run_id: trigger_of(cluster, run_id) for run_id in run_ids}
        if all(t and t["triggerer_id"] is not None and t["triggerer_id"] != not_to for t in triggers.values()):
            return triggers
        if time.monotonic() > deadline:
            raise cluster._fail(f"triggers not assigned (not to {not_to}) after {timeout_s:.0f}s: {triggers}")
        time.sleep(0.5)


def trigger_log(cluster: DistributedAirflowCluster, run_id: str, job_id: int, try_number: int = 1) -> Path:
    """The log a triggerer writes for the trigger of a task try: Airflow names the file after the triggerer's job."""
    return (cluster.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={TASK_ID}"
            / f"attempt={try_number}.log.trigger.{job_id}.log")


def wait_started(cluster: DistributedAirflowCluster, run_id: str, trigger: dict, job_id: int,
                 timeout_s: float = 60) -> None:
    """Until the triggerer of job ``job_id`` logs that it started ``trigger`` (for ``run_id``)."""
    path, needle = trigger_log(cluster, run_id, job_id), f"(ID {trigger['id']}) starting"
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and needle in path.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise cluster._fail(f"no {needle!r} in {path}")
        time.sleep(0.5)


def owners_of(cluster: DistributedAirflowCluster, triggers: dict[str, dict]) -> dict[str, str]:
    """Run id -> the triggerer process running its trigger (API ``triggerer_id``, confirmed by the trigger's log)."""
    names = {job: name for name, job in cluster.triggerer_jobs.items()}
    for run_id, trigger in triggers.items():
        wait_started(cluster, run_id, trigger, trigger["triggerer_id"])
    return {run_id: names[trigger["triggerer_id"]] for run_id, trigger in triggers.items()}


def ran_on_celery(cluster: AirflowCluster, run_id: str) -> int:
    """How many times the Celery worker's log shows it executing ``summarize_logs`` of ``run_id``."""
    return celery_executions(cluster.process("celery-worker").log_path, TASK_ID, run_id)


def check_run(cluster: AirflowCluster, store: MetricsStore, run_id: str) -> dict:
    """The run succeeded; its carbon task ran on Celery, has its XCom and exactly one completed row per try."""
    done = cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "success", timeout_s=240)
    assert cluster.wait_for_run(DAG_ID, run_id, timeout_s=120)["state"] == "success"
    assert ran_on_celery(cluster, run_id) >= 2, f"{run_id}: the Celery worker did not run it twice (start, resume)"
    record = cluster.xcom(DAG_ID, run_id, TASK_ID, key="carbon")
    assert record["reason"] == "green_window" and record["region"] == "TEST"
    # declared energy is not measured: the record is estimated, and says so
    assert record["estimated"] is True and record["energy_method"] == "declared"
    assert cluster.xcom(DAG_ID, run_id, TASK_ID) == {"INFO": 3, "WARN": 1, "ERROR": 1}
    assert cluster.xcom(DAG_ID, run_id, "report") == record  # the downstream task read it through XCom
    started, planned, deadline = (datetime.fromisoformat(record[k]) for k in ("started_at", "planned_start",
                                                                               "deadline"))
    assert planned <= started <= deadline + REFRESH
    rows = store.rows(dag_id=DAG_ID, task_id=TASK_ID, run_id=run_id)
    assert [(r["try_number"], r["state"]) for r in rows] == [(done["try_number"], "completed")]
    assert rows[0]["saved_g"] == pytest.approx(record["saved_g"]) and rows[0]["started_at"] == started
    return {**record, "ti": done}


def test_carbon_tasks_defer_fail_over_and_record_in_a_distributed_airflow(airflow_cluster):
    cluster: DistributedAirflowCluster = airflow_cluster
    store = MetricsStore(cluster.metrics_url)
    assert sorted(triggerer_names(cluster)) == ["triggerer-1", "triggerer-2"]
    # Airflow 3.3 leaves the scheduler job's executor_class empty in the API; its log names the executor.
    assert "Loaded executor: :CeleryExecutor:" in cluster.process("scheduler").log_path.read_text()
    listening = cluster.listening()
    assert listening and {ip for _, ip, _ in listening} == {"127.0.0.1"}, listening  # api, postgres, redis only
    started = time.monotonic()
    cluster.wait_for_dag(DAG_ID)
    _phase("DAG parsed", started)

    # 1. three runs defer, spread over both triggerers, resume on the Celery worker and record in Postgres
    started = time.monotonic()
    write_signal_file(SIGNAL, green_in_s=FAR_S, period_s=5)
    run_ids = [cluster.trigger(DAG_ID) for _ in range(RUNS)]
    for run_id in run_ids:
        ti = cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "deferred", timeout_s=180)
        assert ti["trigger"]["classpath"] == TRIGGER_CLASS
    triggers = wait_assigned(cluster, run_ids)
    owners = owners_of(cluster, triggers)
    print(f"\nphase 1: {RUNS} runs deferred; trigger id -> triggerer: "
          f"{ {t['id']: owners[r] for r, t in triggers.items()} }")
    assert set(owners.values()) <= set(cluster.triggerer_jobs)
    waiting = store.rows(dag_id=DAG_ID, state="deferred")  # the decision rows, written while they wait
    assert {r["run_id"] for r in waiting} == set(run_ids)
    _phase("phase 1: 3 runs deferred and assigned", started)
    write_signal_file(SIGNAL, green_in_s=GREEN_AFTER_CHECKS_S, period_s=5)
    for run_id in run_ids:
        check_run(cluster, store, run_id)
    _phase("phase 1: total", started)

    # 2. three more runs defer; SIGKILL the triggerer holding most of them; the other takes them over in time
    started = time.monotonic()
    write_signal_file(SIGNAL, green_in_s=FAR_S, period_s=5)
    # Each triggerer shares one read of a source among its triggers for up to a refresh interval; until then a new
    # trigger would plan on phase 1's series, in which it is already green. Let those reads expire first: any read
    # made before the file was written is older than a refresh after this sleep, whatever the machine's speed.
    time.sleep(REFRESH.total_seconds() + 1)
    run_ids2 = [cluster.trigger(DAG_ID) for _ in range(RUNS)]
    for run_id in run_ids2:
        cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "deferred", timeout_s=180)
    before = wait_assigned(cluster, run_ids2)
    owners = owners_of(cluster, before)
    held = {name: [r for r in run_ids2 if owners[r] == name] for name in cluster.triggerer_jobs}
    victim = max(held, key=lambda name: len(held[name]))
    [survivor] = [name for name in cluster.triggerer_jobs if name != victim]
    victim_job, survivor_job, moved = cluster.triggerer_jobs[victim], cluster.triggerer_jobs[survivor], held[victim]
    print(f"phase 2: {victim} (job {victim_job}) runs {len(moved)} of the {RUNS} new triggers "
          f"{[before[r]['id'] for r in moved]}; SIGKILL")
    assert moved and all(cluster.task_instance(DAG_ID, r, TASK_ID)["state"] == "deferred" for r in run_ids2)
    killed = time.monotonic()
    cluster.kill_process(victim)
    assert not cluster.process(victim).alive()

    after = wait_assigned(cluster, run_ids2, not_to=victim_job, timeout_s=TRIGGERER_HEALTH_CHECK_THRESHOLD_S + 60)
    reassigned_s = time.monotonic() - killed
    assert {t["triggerer_id"] for t in after.values()} == {survivor_job}, after
    for run_id in moved:
        assert after[run_id]["id"] == before[run_id]["id"]  # the same trigger row, now held by the survivor
        wait_started(cluster, run_id, before[run_id], survivor_job)  # ... and running there
        assert cluster.task_instance(DAG_ID, run_id, TASK_ID)["state"] == "deferred"  # not fired early, not re-run
    takeover_s = time.monotonic() - killed
    green_at = datetime.now(UTC) + timedelta(seconds=GREEN_AFTER_CHECKS_S)
    write_signal_file(SIGNAL, green_in_s=GREEN_AFTER_CHECKS_S, period_s=5)
    TIMINGS["phase 2: reassigned after SIGKILL"] = reassigned_s
    TIMINGS["phase 2: running on the survivor after SIGKILL"] = takeover_s
    print(f"phase 2: {survivor} (job {survivor_job}) took over {[before[r]['id'] for r in moved]}: reassigned "
          f"{reassigned_s:.1f} s and running {takeover_s:.1f} s after the SIGKILL")
    records = [check_run(cluster, store, run_id) for run_id in run_ids2]
    for record in records:  # the recreated trigger went on waiting, and fired at the window, within a refresh
        fired_at = datetime.fromisoformat(record["decided_at"])  # the trigger's last plan: run now
        assert green_at - timedelta(seconds=1) <= fired_at <= green_at + REFRESH + timedelta(seconds=20), record
    _phase("phase 2: total", started)

    all_rows = store.rows(dag_id=DAG_ID, task_id=TASK_ID)
    assert len(all_rows) == 2 * RUNS and {r["state"] for r in all_rows} == {"completed"}
    assert not (cluster.home / "carbon_metrics.db").exists()  # nothing fell back to the SQLite default
    store.close()

    # 3. everything stops: Airflow, the Celery worker and its task processes, Postgres and Redis
    pids, service_pids = cluster.pids(), cluster.service_pids()
    assert service_pids and len(pids) >= 7
    stopping = time.monotonic()
    cluster.stop()
    TIMINGS["stop"] = time.monotonic() - stopping
    left = cluster.running_pids() | cluster.running_service_pids()  # psutil handles: never a recycled pid
    assert not left, f"still running: {left}"
    assert not processes_with_home(cluster.home)
    assert not cluster.postgres.root.exists() and not cluster.redis.root.exists()

