"""Faults injected into a running Airflow while carbon-aware tasks wait, and what must survive them.

One night of batch work in miniature: the ten tasks of ``carbon_faults`` defer at once, each reading WattTime
through a loopback server that plays one fault (or a closed port), with a green window ``GREEN_IN_S`` after that
server's first forecast request (the task's own first decision, however long the machine took to get there) and
a deadline ``MAX_DELAY_S`` after each task became ready. While they wait:

- the triggerer holding them is SIGKILLed and a new one started (the old one's triggers move after
  ``TRIGGERER_HEALTH_CHECK_THRESHOLD_S``);
- the Postgres of ``store_down``'s metrics store is shut down, and started again only after that task finished;
- ``worker_killed`` SIGKILLs its own task process on its first try, after the work, before the record.

Then ``carbon_faults_drain`` runs a task against the store that was down, and last, ``carbon_clock_jump`` waits for
a window half an hour away until the triggerer's clock (libfaketime) jumps two hours forward.

For every fault: every task runs, no trigger fires after its deadline plus one refresh, every record is there
exactly once. The measured figures are printed (``pytest -s``) and quoted in the README's reliability section.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_carbon.metrics import MetricsStore
from tests.e2e.airflow_cluster import AirflowCluster, faketime_library
from tests.e2e.distributed import TRIGGERER_HEALTH_CHECK_THRESHOLD_S, PostgresServer
from tests.fakes.signal_server import WATTTIME_PASSWORD, WATTTIME_USERNAME, FakeSignalServer

DAGS = Path(__file__).parent / "dags_faults"
FAULTS = ("healthy", "down", "flapping", "storm_429", "slow", "malformed", "empty", "short", "store_down",
          "worker_killed")
REFRESH_S = 10
MAX_DELAY_S = 90
GREEN_IN_S = 60
SLOW_ANSWER_S = 15  # the clients time out after 10 s, three tries a read
CLOCK_JUMP = timedelta(hours=2)
ATTEMPTS_PER_READ = 3

pytestmark = pytest.mark.timeout(900)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class Rig:
    """What surrounds Airflow: a loopback server per fault, the Postgres of ``store_down``, a scratch directory."""

    servers: dict[str, FakeSignalServer]
    postgres: PostgresServer
    runs_dir: Path


@dataclass
class Night:
    """What the test saw: task instances, records, metrics rows, requests and timings, for the assertions."""

    cluster: AirflowCluster
    rig: Rig
    run_id: str = ""
    tis: dict[str, dict] = field(default_factory=dict)
    records: dict[str, dict] = field(default_factory=dict)
    rows: dict[str, list[dict]] = field(default_factory=dict)
    spooled_while_down: list[str] = field(default_factory=list)
    spooled_after_drain: list[str] = field(default_factory=list)
    waiting_when_killed: int = 0
    taken_over: int = 0
    figures: dict[str, Any] = field(default_factory=dict)

    def store_rows(self) -> list[dict]:
        sqlite_rows = MetricsStore(f"sqlite:///{self.cluster.home / 'carbon_metrics.db'}").rows(dag_id="carbon_faults")
        postgres_rows = MetricsStore(self.rig.postgres.url("carbon")).rows(dag_id="carbon_faults")
        return sqlite_rows + postgres_rows

    def spool_files(self) -> list[str]:
        return sorted(str(path.relative_to(self.cluster.home)) for path in
                      (self.cluster.home / "carbon_spool").glob("*/*.json"))


def start_servers() -> dict[str, FakeSignalServer]:
    servers = {name: FakeSignalServer().start() for name in (*FAULTS, "clock") if name != "down"}
    for name in FAULTS:
        if name in servers:
            servers[name].green_window(after_first_request_s=GREEN_IN_S)
    # Every other read fails as a whole (all its tries), counted in requests, not by the clock: the trigger
    # alternates between a fresh forecast and its last good one, however fast the machine is.
    servers["flapping"].flap("/v3/forecast", 503, up=1, down=ATTEMPTS_PER_READ)
    servers["storm_429"].fail("/v3/", 429, times=None, headers={"Retry-After": "1"})
    servers["slow"].slow("/v3/forecast", SLOW_ANSWER_S, times=None)
    servers["malformed"].malformed("/v3/forecast", times=None)
    servers["empty"].truncate("/v3/forecast", 0)
    servers["short"].truncate("/v3/forecast", 4)  # 20 s of forecast for a 90 s wait
    return servers


def connections(servers: dict[str, FakeSignalServer], postgres: PostgresServer) -> dict[str, str]:
    def watttime(url: str) -> str:
        return json.dumps({"conn_type": "watttime", "login": WATTTIME_USERNAME, "password": WATTTIME_PASSWORD,
                           "host": url, "extra": {"region": "CAISO_NORTH", "horizon_hours": 3}})

    env = {f"AIRFLOW_CONN_FAULT_{name.upper()}": watttime(server.base_url) for name, server in servers.items()}
    env["AIRFLOW_CONN_FAULT_DOWN"] = watttime(closed_port_url())
    env["AIRFLOW_CONN_CARBON_METRICS_PG"] = json.dumps(
        {"conn_type": "carbon_metrics", "extra": {"sqlalchemy_url": postgres.url("carbon")}})
    return env


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    assert faketime_library(), "needs Debian's faketime package: make test installs it"
    runs_dir = Path(tempfile.mkdtemp(prefix="carbon_faults_"))
    servers = start_servers()
    postgres = PostgresServer(databases=("carbon",))
    try:
        postgres.start()
        yield Rig(servers, postgres, runs_dir)
    finally:
        postgres.stop()
        for server in servers.values():
            server.stop()
        shutil.rmtree(runs_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def airflow_cluster(rig: Rig) -> Iterator[AirflowCluster]:
    """Overrides conftest's fixture (same name, so a failure still gets the process logs attached)."""
    keep = os.environ.get("AIRFLOW_E2E_KEEP_HOME", "") not in ("", "0")
    env = {
        **connections(rig.servers, rig.postgres),
        "CARBON_FAULTS_DIR": str(rig.runs_dir),
        "CARBON_FAULTS_REFRESH_S": str(REFRESH_S),
        "CARBON_FAULTS_MAX_DELAY_S": str(MAX_DELAY_S),
        "AIRFLOW__CORE__PARALLELISM": "16",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH_CHECK_THRESHOLD_S),
    }
    with AirflowCluster(DAGS, env=env, keep_home=keep, triggerer_clock=rig.runs_dir / "triggerer-clock") as cluster:
        yield cluster
    if keep:
        print(f"\nAIRFLOW_HOME kept at {cluster.home}")


def wait_until(condition, timeout_s: float, what: str, cluster: AirflowCluster, poll_s: float = 0.5):
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        cluster.check_processes()
        if value := condition():
            return value
        time.sleep(poll_s)
    raise AssertionError(f"not {what} after {timeout_s:.0f} s\n{cluster.process_logs()}")


def states(cluster: AirflowCluster, run_id: str) -> dict[str, dict]:
    return {ti["task_id"]: ti for ti in cluster.task_instances("carbon_faults", run_id)}


@pytest.fixture(scope="module")
def night(airflow_cluster: AirflowCluster, rig: Rig) -> Night:
    cluster = airflow_cluster
    night = Night(cluster, rig)
    cluster.wait_for_dag("carbon_faults")
    started = time.monotonic()
    night.run_id = cluster.trigger("carbon_faults")

    # Faults while they wait: the store of store_down goes away, the triggerer dies and another takes over.
    deferred: set[str] = set()

    def most_wait() -> bool:
        deferred.update(task for task, ti in states(cluster, night.run_id).items() if ti["state"] == "deferred")
        return {"store_down", "healthy"} <= deferred and len(deferred) >= len(FAULTS) - 2

    wait_until(most_wait, 180, "deferred", cluster)
    waiting = [ti for ti in states(cluster, night.run_id).values() if ti["state"] == "deferred" and ti["trigger"]]
    night.waiting_when_killed = len(waiting)
    killed_job = {ti["trigger"]["triggerer_id"] for ti in waiting} - {None}
    night.rig.postgres.pause()
    cluster.kill_process("triggerer-1")
    killed = time.monotonic()
    night.figures["triggerer killed after s"] = round(killed - started, 1)
    cluster.start_triggerer("triggerer-2")

    def taken_over() -> int:
        waiting = [ti for ti in states(cluster, night.run_id).values() if ti["state"] == "deferred"]
        owners = {ti["trigger"]["triggerer_id"] if ti["trigger"] else None for ti in waiting}
        return len(waiting) if waiting and not owners & (killed_job | {None}) else 0

    night.taken_over = wait_until(taken_over, 120, "taken over by the new triggerer", cluster)
    night.figures["takeover s"] = round(time.monotonic() - killed, 1)
    night.figures["waiting when the triggerer was killed"] = night.waiting_when_killed
    night.figures["taken over"] = night.taken_over

    def store_down_done() -> bool:
        return cluster.task_instance("carbon_faults", night.run_id, "store_down")["state"] in ("success", "failed")

    wait_until(store_down_done, MAX_DELAY_S + 120, "store_down finished", cluster)
    night.spooled_while_down = night.spool_files()
    night.rig.postgres.resume()
    cluster.wait_for_run("carbon_faults", night.run_id, timeout_s=MAX_DELAY_S + 240)
    night.figures["night took s"] = round(time.monotonic() - started, 1)

    drain = cluster.trigger("carbon_faults_drain")
    cluster.wait_for_run("carbon_faults_drain", drain, timeout_s=240)
    night.spooled_after_drain = night.spool_files()

    night.tis = states(cluster, night.run_id)
    for task_id in FAULTS:
        night.records[task_id] = cluster.xcom("carbon_faults", night.run_id, task_id, key="carbon")
    for row in night.store_rows():
        night.rows.setdefault(row["task_id"], []).append(row)
    lateness = {task_id: (datetime.fromisoformat(record["started_at"])
                          - datetime.fromisoformat(record["deadline"])).total_seconds()
                for task_id, record in night.records.items()}
    night.figures["latest start after deadline s"] = round(max(lateness.values()), 1)
    night.figures["reasons"] = {task_id: record["reason"] for task_id, record in night.records.items()}
    night.figures["lost tasks"] = sum(ti["state"] != "success" for ti in night.tis.values())
    night.figures["lost or doubled records"] = sum(
        sum(row["state"] == "completed" for row in night.rows.get(task_id, [])) != 1 for task_id in FAULTS)
    night.figures["429 storm requests"] = rig.servers["storm_429"].count("/v3/")
    print(f"\nfault-injection figures: {json.dumps(night.figures, sort_keys=True)}")
    return night


def deadline_of(record: dict) -> datetime:
    return datetime.fromisoformat(record["deadline"])


def started_at(record: dict) -> datetime:
    return datetime.fromisoformat(record["started_at"])


def decided_at(record: dict) -> datetime:
    """When the task's last plan was made: for a task resumed by its trigger, when the trigger fired."""
    return datetime.fromisoformat(record["decided_at"])


# -- what must hold for every fault -----------------------------------------------------------------------

def test_every_task_ran_and_none_was_released_after_its_deadline_plus_one_refresh(night):
    assert {task_id: ti["state"] for task_id, ti in night.tis.items()} == dict.fromkeys(FAULTS, "success")
    # Released: the trigger fired (or the worker decided to run); starting then is Airflow's own latency, and so is
    # a retry's start (worker_killed's second try, whose deadline is checked below).
    late = {task_id: decided_at(record) - deadline_of(record) for task_id, record in night.records.items()
            if record["try_number"] == 1 and decided_at(record) > deadline_of(record) + timedelta(seconds=REFRESH_S)}
    assert not late, f"released more than one refresh ({REFRESH_S} s) after the deadline: {late}"
    assert all(started_at(record) >= decided_at(record) for record in night.records.values())


def test_every_record_is_there_exactly_once_and_matches_xcom(night):
    for task_id, record in night.records.items():
        completed = [row for row in night.rows.get(task_id, []) if row["state"] == "completed"]
        assert len(completed) == 1, f"{task_id}: {len(completed)} completed rows: {night.rows.get(task_id)}"
        [row] = completed
        assert row["try_number"] == record["try_number"] and row["reason"] == record["reason"]
        assert row["started_at"] == started_at(record) and row["energy_kwh"] == pytest.approx(record["energy_kwh"])


# -- each fault -------------------------------------------------------------------------------------------

def test_a_healthy_source_waits_for_the_green_window(night):
    record = night.records["healthy"]
    green_at = datetime.fromtimestamp(night.rig.servers["healthy"].green_at_s, UTC)
    assert record["reason"] == "green_window" and decided_at(record) >= green_at - timedelta(seconds=5)
    assert record["served_by"] == "conn:fault_healthy" and record["emissions_g"] is not None


def test_a_source_down_for_the_whole_wait_runs_at_the_deadline_and_says_why(night):
    record = night.records["down"]
    assert record["reason"] == "deadline" and record["served_by"] is None
    assert any(failure.startswith("conn:fault_down: ") for failure in record["failed_sources"])


def test_a_flapping_source_plans_on_its_last_good_forecast(night):
    record = night.records["flapping"]
    assert record["reason"] == "green_window" and record["served_by"] == "conn:fault_flapping"
    server = night.rig.servers["flapping"]
    assert server.count("/v3/forecast") > 1


def test_a_429_storm_is_not_answered_with_a_flood(night):
    record = night.records["storm_429"]
    assert record["reason"] == "deadline" and any("429" in failure for failure in record["failed_sources"])
    reads = MAX_DELAY_S / REFRESH_S + 4  # one per refresh, plus the task's start, the new triggerer and the record
    asked = night.figures["429 storm requests"]
    assert asked <= ATTEMPTS_PER_READ * reads, f"{asked} requests in a 429 storm"


def test_answers_slower_than_the_timeout_do_not_hold_the_task_past_its_deadline(night):
    record = night.records["slow"]
    assert record["reason"] == "deadline" and any("timed out" in f or "no answer" in f
                                                  for f in record["failed_sources"])


@pytest.mark.parametrize("fault", ["malformed", "empty"])
def test_a_malformed_or_empty_forecast_is_a_failed_source_not_a_failed_task(night, fault):
    record = night.records[fault]
    assert record["reason"] == "deadline" and record["served_by"] is None
    assert any(failure.startswith(f"conn:fault_{fault}: ") for failure in record["failed_sources"])


def test_a_forecast_ending_before_the_deadline_still_plans_and_runs(night):
    record = night.records["short"]
    assert record["served_by"] == "conn:fault_short" and record["reason"] in ("green_window", "deadline")


def test_a_killed_triggerer_is_replaced_and_its_waiting_tasks_still_run(night):
    assert night.waiting_when_killed >= len(FAULTS) - 2
    assert night.taken_over >= night.waiting_when_killed - 1  # all still waiting moved to the new triggerer


def test_a_store_down_at_the_end_keeps_the_record_and_writes_it_once_when_back(night):
    assert night.tis["store_down"]["state"] == "success"
    assert night.spooled_while_down, "the record was not kept while the store was down"
    assert night.spooled_after_drain == []
    [row] = [row for row in night.rows["store_down"] if row["state"] == "completed"]
    assert row["emissions_g"] == pytest.approx(night.records["store_down"]["emissions_g"])
    log = night.cluster.logs("carbon_faults", night.run_id, "store_down")
    assert "kept" in log and "ERROR" in log.upper()


def test_a_worker_killed_after_the_work_is_retried_and_recorded_once(night):
    ti, record = night.tis["worker_killed"], night.records["worker_killed"]
    assert ti["try_number"] == 2 and record["try_number"] == 2
    assert (night.rig.runs_dir / "worker_killed.runs").read_text().split() == ["1", "2"]  # the work ran twice
    tries = {row["try_number"]: row["state"] for row in night.rows["worker_killed"]}
    assert tries[2] == "completed" and tries.get(1) != "completed"
    [first] = [row for row in night.rows["worker_killed"] if row["try_number"] == 1]
    assert deadline_of(record) == first["deadline"]  # the retry kept the first try's deadline


def test_the_triggerers_clock_jumping_past_the_deadline_fires_within_a_refresh(night):
    cluster = night.cluster
    night.rig.servers["clock"].green_window(time.time() + 1800)
    run_id = cluster.trigger("carbon_clock_jump")
    cluster.wait_for_state("carbon_clock_jump", run_id, "overnight", "deferred", timeout_s=120)
    time.sleep(2)  # the trigger is asleep until its next refresh or the window, half an hour away
    cluster.set_triggerer_clock(CLOCK_JUMP.total_seconds())
    jumped_at = datetime.now(UTC)
    cluster.wait_for_run("carbon_clock_jump", run_id, timeout_s=180)
    record = cluster.xcom("carbon_clock_jump", run_id, "overnight", key="carbon")
    assert record["reason"] == "deadline"
    fired_after_s = (decided_at(record) - CLOCK_JUMP - jumped_at).total_seconds()  # on the triggerer's clock
    resumed_after_s = (started_at(record) - jumped_at).total_seconds()
    night.figures["clock jump: fired after s"] = round(fired_after_s, 1)
    night.figures["clock jump: started after s"] = round(resumed_after_s, 1)
    print(f"\nclock jump: the trigger fired {fired_after_s:.1f} s and the task started {resumed_after_s:.1f} s after"
          f" the triggerer's clock jumped {CLOCK_JUMP}")
    # Within a refresh (plus the second libfaketime takes to read the new offset), not at the window half an hour
    # away; from there to the task's start is Airflow's latency, printed but not asserted.
    assert -1 < fired_after_s <= REFRESH_S + 5
    rows = MetricsStore(f"sqlite:///{cluster.home / 'carbon_metrics.db'}").rows(dag_id="carbon_clock_jump")
    assert [row["state"] for row in rows] == ["completed"]
