"""The store's upserts, on SQLite and on a real PostgreSQL (Debian's, started by the test)."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql

from airflow_carbon.metrics import (
    COMPLETED,
    DEFERRED,
    FAILED,
    RUNNING,
    MetricsStore,
    TaskTryKey,
    TaskTryRecord,
    UnsupportedDialectError,
)
from airflow_carbon.metrics.store import write_statement
from tests.e2e.distributed import PostgresServer
from tests.helpers import T0

HOUR = timedelta(hours=1)
BACKENDS = ["sqlite", "postgresql"]
KEY = TaskTryKey("dag", "summarize", "manual__2024-06-01", map_index=-1, try_number=1)
INSTANTS = ("ready_at", "deadline", "decided_at", "planned_start", "started_at", "ended_at", "updated_at")
DECISION_ONLY = ("decided_at", "planned_start", "expected_emissions_now_g", "expected_emissions_at_start_g")
COMPLETION_ONLY = ("started_at", "ended_at", "delay_s", "intensity_g_per_kwh", "baseline_intensity_g_per_kwh",
                   "solar_kwh", "grid_kwh", "emissions_g", "baseline_emissions_g", "saved_g", "estimated")


def decision(key: TaskTryKey = KEY, *, ready_at: datetime = T0, **changes) -> TaskTryRecord:
    """A try that planned to wait two hours, served by a fallback after the configured source failed."""
    record = TaskTryRecord(
        **asdict(key), state=DEFERRED, region="DE", source="conn:watttime_default",
        served_by="conn:electricitymaps_default", signal="electricitymaps:DE", signal_kind="average",
        failed_sources=["conn:watttime_default: AuthError: 401"], policy="forecast", reason="green_window",
        ready_at=ready_at, deadline=ready_at + 4 * HOUR, energy_kwh=0.5, decided_at=ready_at,
        planned_start=ready_at + 2 * HOUR, expected_emissions_now_g=30.0, expected_emissions_at_start_g=10.0)
    return replace(record, **changes)


def completion(key: TaskTryKey = KEY, **changes) -> TaskTryRecord:
    """What the try emitted, without the fields only its decision knew."""
    record = TaskTryRecord(
        **asdict(key), state=COMPLETED, region="FR", policy="forecast", reason="green_window", ready_at=T0,
        deadline=T0 + 4 * HOUR, energy_kwh=0.4, started_at=T0 + 2 * HOUR, ended_at=T0 + 3 * HOUR, delay_s=7200.0,
        intensity_g_per_kwh=100.0, baseline_intensity_g_per_kwh=300.0, solar_kwh=0.0, grid_kwh=0.4,
        emissions_g=40.0, baseline_emissions_g=120.0, saved_g=80.0, estimated=True)
    return replace(record, **changes)


@pytest.fixture(scope="module")
def postgres_url(postgres) -> str:
    """One database for the module's tests, emptied before each: creating one per test is slow on a busy host."""
    return postgres.new_database()


@pytest.fixture(params=BACKENDS)
def new_url(request: pytest.FixtureRequest, tmp_path) -> Callable[[], str]:
    """Makes empty databases and gives their URLs: SQLite files, or databases on the module's PostgreSQL."""
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path / uuid.uuid4().hex[:12]}.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[MetricsStore]:
    if request.param == "sqlite":
        store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    else:
        store = MetricsStore(request.getfixturevalue("postgres_url"))
        with store.engine.begin() as connection:
            connection.execute(text("DELETE FROM carbon_task_try"))
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[MetricsStore]:
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield store
    store.close()


def only_row(store: MetricsStore) -> dict:
    [row] = store.rows()
    return row


def test_decision_then_completion_is_one_completed_row_with_aware_utc_datetimes(store):
    store.write(decision())
    row = only_row(store)
    assert row["state"] == DEFERRED and row["energy_kwh"] == 0.5 and row["started_at"] is None
    assert row["decided_at"] == T0 and row["planned_start"] == T0 + 2 * HOUR
    assert row["expected_emissions_now_g"] == 30.0 and row["expected_emissions_at_start_g"] == 10.0

    store.write(completion())
    row = only_row(store)
    assert row["state"] == COMPLETED
    for name in COMPLETION_ONLY:
        assert row[name] == getattr(completion(), name), name
    assert row["region"] == "FR" and row["energy_kwh"] == 0.4  # the completion's values win: energy used, not planned
    # what only the decision knew survives the completion, which has none of it
    for name in (*DECISION_ONLY, "source", "served_by", "signal", "signal_kind", "failed_sources"):
        assert row[name] == getattr(decision(), name), name
    for name in INSTANTS:
        assert row[name].tzinfo is not None and row[name].utcoffset() == timedelta(0), name


def test_records_read_back_equal_what_was_written(store):
    written = [decision(), decision(replace(KEY, task_id="running"), state=RUNNING, failed_sources=[]),
               completion(replace(KEY, task_id="failed"), state=FAILED, emissions_g=None, saved_g=None)]
    for record in written:
        store.write(record)
    read = {record.task_id: record for record in store.records()}
    assert set(read) == {"summarize", "running", "failed"}
    for record in written:
        assert replace(read[record.task_id], updated_at=None) == record
        assert read[record.task_id].updated_at is not None


def test_datetimes_round_trip_as_utc_whatever_the_input_zone(sqlite_store):
    paris = timezone(timedelta(hours=2))
    sqlite_store.write(decision(ready_at=datetime(2024, 6, 1, 2, 0, tzinfo=paris)))
    sqlite_store.write(TaskTryRecord("dag", "naive", "r", ready_at=datetime(2024, 6, 1, 0, 0),
                                     deadline=datetime(2024, 6, 1, 4, 0)))
    rows = {row["task_id"]: row for row in sqlite_store.rows()}
    assert rows["summarize"]["ready_at"] == T0 and rows["summarize"]["ready_at"].tzinfo == UTC
    assert rows["naive"]["ready_at"] == T0 and rows["naive"]["deadline"] == T0 + 4 * HOUR
    with sqlite_store.engine.connect() as connection:  # SQLite holds naive UTC text, so text order is time order
        assert connection.execute(text("SELECT ready_at FROM carbon_task_try WHERE task_id = 'summarize'")
                                  ).scalar_one().startswith("2024-06-01 00:00:00")


def test_writing_a_decision_again_leaves_one_row_with_the_latest_plan(store):
    store.write(decision())
    store.write(decision(decided_at=T0 + HOUR, planned_start=T0 + 3 * HOUR, state=RUNNING,
                         served_by="conn:watttime_default"))
    row = only_row(store)
    assert row["state"] == RUNNING and row["planned_start"] == T0 + 3 * HOUR and row["decided_at"] == T0 + HOUR
    assert row["served_by"] == "conn:watttime_default"


def test_a_missing_value_never_overwrites_a_known_one(store):
    store.write(decision())
    store.write(decision(served_by=None, signal="", failed_sources=[], expected_emissions_now_g=None,
                         planned_start=T0 + 3 * HOUR))
    row = only_row(store)
    assert row["served_by"] == "conn:electricitymaps_default" and row["signal"] == "electricitymaps:DE"
    assert row["failed_sources"] == ["conn:watttime_default: AuthError: 401"]
    assert row["expected_emissions_now_g"] == 30.0 and row["planned_start"] == T0 + 3 * HOUR
    store.write(completion(reason=None, served_by="bundled:DE"))
    row = only_row(store)
    assert row["reason"] == "green_window" and row["served_by"] == "bundled:DE"


def test_writing_a_completion_twice_leaves_the_same_row(store):
    def write() -> None:
        with store.engine.begin() as connection:
            connection.execute(write_statement(store.engine.dialect.name, completion(), now=T0 + 3 * HOUR))

    write()
    first = store.rows()
    write()
    assert store.rows() == first
    row = only_row(store)
    assert row["state"] == COMPLETED and row["emissions_g"] == 40.0 and row["updated_at"] == T0 + 3 * HOUR
    assert row["failed_sources"] == [] and row["planned_start"] is None


@pytest.mark.parametrize("state", [COMPLETED, FAILED])
def test_a_late_decision_does_not_take_a_finished_row_back(store, state):
    store.write(completion(state=state, served_by="bundled:DE"))
    store.write(decision(region="DE", served_by="conn:electricitymaps_default", state=RUNNING))
    row = only_row(store)
    assert row["state"] == state
    assert row["region"] == "FR" and row["served_by"] == "bundled:DE" and row["energy_kwh"] == 0.4
    assert row["started_at"] == T0 + 2 * HOUR and row["emissions_g"] == 40.0
    # fields the finished row lacked are filled in
    assert row["planned_start"] == T0 + 2 * HOUR and row["expected_emissions_at_start_g"] == 10.0
    assert row["source"] == "conn:watttime_default"


def test_a_failed_try_is_finished_and_a_later_completion_rewrites_it(store):
    store.write(decision())
    store.write(completion(state=FAILED, emissions_g=None, saved_g=None))
    assert only_row(store)["state"] == FAILED and only_row(store)["emissions_g"] is None
    store.write(completion())
    row = only_row(store)
    assert row["state"] == COMPLETED and row["emissions_g"] == 40.0 and row["planned_start"] == T0 + 2 * HOUR


def test_each_try_has_its_own_row(store):
    store.write(decision())
    retry = replace(KEY, try_number=2)
    store.write(decision(retry, ready_at=T0 + HOUR))
    store.write(completion(retry))
    assert [(row["try_number"], row["state"]) for row in store.rows()] == [(1, DEFERRED), (2, COMPLETED)]


def test_earliest_ready_at_spans_tries_and_mapped_instances(store):
    assert store.earliest_ready_at("dag", "summarize", KEY.run_id, -1) is None
    for map_index, try_number, ready_at in [(0, 1, T0 + HOUR), (0, 2, T0 + 3 * HOUR), (1, 1, T0 + 2 * HOUR),
                                            (1, 2, T0 + 30 * timedelta(minutes=1))]:
        store.write(decision(TaskTryKey("dag", "summarize", KEY.run_id, map_index, try_number), ready_at=ready_at))
    store.write(decision(TaskTryKey("dag", "summarize", "other_run", 0, 1), ready_at=T0))
    store.write(decision(TaskTryKey("dag", "other_task", KEY.run_id, 0, 1), ready_at=T0))
    assert store.earliest_ready_at("dag", "summarize", KEY.run_id, 0) == T0 + HOUR
    assert store.earliest_ready_at("dag", "summarize", KEY.run_id, 1) == T0 + 30 * timedelta(minutes=1)
    earliest = store.earliest_ready_at("dag", "summarize", KEY.run_id, None)
    assert earliest == T0 + 30 * timedelta(minutes=1) and earliest.tzinfo is not None
    assert store.earliest_ready_at("dag", "summarize", KEY.run_id, 7) is None


def test_history_is_the_last_completed_tries_of_the_task_with_only_metered_energy_learned(store):
    """Mapped instances pool; failed and waiting tries, other tasks and declared or assumed energy teach nothing."""
    def ran(run: int, minutes: float, **changes) -> TaskTryRecord:
        key = TaskTryKey("dag", "summarize", f"r{run}", map_index=changes.pop("map_index", -1))
        start = T0 + run * HOUR
        return completion(key, started_at=start, ended_at=start + timedelta(minutes=minutes), **changes)

    store.write(ran(0, 40, energy_kwh=9.0, energy_method="declared"))  # the oldest: beyond the last three
    store.write(ran(2, 10, energy_kwh=0.02, pue=2.0, energy_method="cpu=estimated-cpu-model, ram=estimated-ram-model"))
    store.write(ran(3, 20, energy_kwh=0.5, energy_method="assumed-power-x-time", map_index=0))
    store.write(ran(4, 30, energy_kwh=0.03, pue=1.0, energy_method="measured-nvml", map_index=1))
    store.write(ran(5, 1, state=FAILED, energy_method="measured-nvml"))
    store.write(decision(TaskTryKey("dag", "summarize", "r6")))
    store.write(completion(TaskTryKey("dag", "other_task", "r7"), energy_method="measured-nvml"))
    history = store.history("dag", "summarize", 3)
    assert history.durations_s == (1800.0, 1200.0, 600.0)
    assert history.energies_kwh == (0.03, 0.01)  # IT energy: 0.02 kWh at PUE 2
    assert store.history("dag", "summarize", 0).durations_s == ()
    assert store.history("dag", "nobody", 10).durations_s == ()


def test_rows_filter_by_dag_task_run_and_state(sqlite_store):
    for key in (TaskTryKey("a", "t1", "r1"), TaskTryKey("a", "t2", "r1"), TaskTryKey("a", "t1", "r2"),
                TaskTryKey("b", "t1", "r1")):
        sqlite_store.write(decision(key))
    sqlite_store.write(completion(TaskTryKey("a", "t2", "r1")))

    def keys(**filters):
        return [(row["dag_id"], row["task_id"], row["run_id"]) for row in sqlite_store.rows(**filters)]

    assert len(keys()) == 4
    assert keys(dag_id="a") == [("a", "t1", "r1"), ("a", "t1", "r2"), ("a", "t2", "r1")]
    assert keys(dag_id="a", task_id="t1") == [("a", "t1", "r1"), ("a", "t1", "r2")]
    assert keys(run_id="r1", task_id="t1") == [("a", "t1", "r1"), ("b", "t1", "r1")]
    assert keys(state=COMPLETED) == [("a", "t2", "r1")]
    assert keys(dag_id="b", state=COMPLETED) == []
    assert [record.key for record in sqlite_store.records(state=COMPLETED)] == [TaskTryKey("a", "t2", "r1")]


def test_a_second_store_on_the_same_file_sees_the_rows_and_wal_is_on(sqlite_store, tmp_path):
    sqlite_store.write(decision())
    other = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    try:
        assert len(other.rows()) == 1
        with other.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar_one() >= 1000
    finally:
        other.close()


def test_unsupported_dialects_are_refused_without_showing_the_password(tmp_path):
    with pytest.raises(UnsupportedDialectError, match="mysql") as excinfo:
        MetricsStore("mysql://carbon:hunter2secret@db.example/metrics")
    assert "hunter2secret" not in str(excinfo.value) and "***" in str(excinfo.value)
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    engine.dialect.name = "oracle"  # stands for any dialect without INSERT ... ON CONFLICT, no driver needed
    with pytest.raises(UnsupportedDialectError, match="oracle"):
        MetricsStore.from_engine(engine)
    assert not (tmp_path / "x.db").exists()  # refused before touching the database
    with pytest.raises(UnsupportedDialectError, match="mssql"):
        write_statement("mssql", decision())


def test_from_engine_wraps_a_configured_engine(tmp_path):
    store = MetricsStore.from_engine(create_engine(f"sqlite:///{tmp_path / 'own.db'}"))
    try:
        store.write(decision())
        assert len(store.rows()) == 1
        store.ping()
    finally:
        store.close()


def test_postgres_statements_are_atomic_upserts_on_the_primary_key():
    for record in (decision(), completion()):
        sql = str(write_statement("postgresql", record).compile(dialect=postgresql.dialect()))
        assert sql.startswith("INSERT INTO carbon_task_try")
        assert "ON CONFLICT (dag_id, task_id, run_id, map_index, try_number) DO UPDATE" in sql


def test_concurrent_writers_end_with_one_row_per_try(new_url):
    """Two writers, each with its own engine as two processes would have, racing on the same keys."""
    url = new_url()
    errors: list[BaseException] = []
    tries = 40
    barrier = threading.Barrier(2)

    def writer(worker: int) -> None:
        try:
            barrier.wait()
            store = MetricsStore(url)  # both bring the new database to the current schema at once
            try:
                for i in range(tries):
                    key = TaskTryKey("dag", f"task{i % 10}", "run", map_index=i, try_number=1)
                    store.write(decision(key))
                    store.write(completion(key, served_by=f"writer{worker}"))
                    store.write(decision(key, state=RUNNING))  # late: must not take the row back
            finally:
                store.close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(worker,)) for worker in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    reader = MetricsStore(url)
    try:
        rows = reader.rows()
    finally:
        reader.close()
    assert len(rows) == tries
    assert {row["state"] for row in rows} == {COMPLETED}
    assert {row["served_by"] for row in rows} <= {"writer0", "writer1"}


def test_the_store_never_imports_airflow():
    code = ("import sys, airflow_carbon.metrics; "
            "sys.exit(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
