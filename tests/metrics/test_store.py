from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql

from airflow_carbon.accounting import account
from airflow_carbon.metrics import COMPLETED, DEFERRED, MetricsStore, TaskTryKey, UnsupportedDialectError
from airflow_carbon.metrics.store import completion_statement, decision_statement
from airflow_carbon.planning.decision import Decision, Reason
from tests.helpers import T0, series

HOUR = timedelta(hours=1)
KEY = TaskTryKey("dag", "summarize", "manual__2024-06-01", map_index=-1, try_number=1)


@pytest.fixture
def store(tmp_path):
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield store
    store.close()


def decision(now: datetime = T0, start: datetime = T0 + 2 * HOUR) -> dict:
    return Decision(policy="forecast", now=now, start=start, deadline=T0 + 4 * HOUR, reason=Reason.GREEN_WINDOW,
                    expected_emissions_now_g=30.0, expected_emissions_at_start_g=10.0).to_dict()


def record_decision(store: MetricsStore, key: TaskTryKey = KEY, *, ready_at: datetime = T0, **kwargs) -> None:
    fields = {"region": "DE", "source": "csv", "policy": "forecast", "ready_at": ready_at,
              "deadline": T0 + 4 * HOUR, "decision": decision(now=ready_at)} | kwargs
    store.record_decision(key, **fields)


def job_record() -> dict:
    return account(job_id="summarize", policy="forecast", reason="green_window", ready_at=T0, deadline=T0 + 4 * HOUR,
                   started_at=T0 + 2 * HOUR, ended_at=T0 + 3 * HOUR, energy_kwh=0.5,
                   intensity=series([300, 250, 100, 120, 400])).to_dict()


def test_decision_then_completion_is_one_completed_row_with_aware_utc_datetimes(store):
    record_decision(store, signal="co2_moer", served_by="watttime", failed_sources=["electricity_maps"])
    [row] = store.rows()
    assert row["state"] == DEFERRED
    assert row["decided_at"] == T0 and row["planned_start"] == T0 + 2 * HOUR
    assert row["expected_emissions_now_g"] == 30.0 and row["expected_emissions_at_start_g"] == 10.0
    assert row["reason"] == "green_window" and row["started_at"] is None

    store.record_completion(KEY, job_record(), served_by="watttime")
    [row] = store.rows()
    record = job_record()
    assert row["state"] == COMPLETED
    for name in ("region", "policy", "reason", "delay_s", "intensity_g_per_kwh",
                 "baseline_intensity_g_per_kwh", "energy_kwh", "solar_kwh", "grid_kwh", "emissions_g",
                 "baseline_emissions_g", "saved_g", "estimated"):
        assert row[name] == (pytest.approx(record[name]) if isinstance(record[name], float) else record[name]), name
    assert row["ready_at"] == T0 and row["deadline"] == T0 + 4 * HOUR
    assert row["started_at"] == T0 + 2 * HOUR and row["ended_at"] == T0 + 3 * HOUR
    assert row["saved_g"] == pytest.approx(0.5 * 300 - 0.5 * 100)
    # the decision's own fields, the signal and the failed sources survive the completion
    assert row["planned_start"] == T0 + 2 * HOUR and row["expected_emissions_now_g"] == 30.0
    assert row["signal"] == "co2_moer" and row["served_by"] == "watttime"
    assert row["failed_sources"] == ["electricity_maps"]
    for name in ("ready_at", "deadline", "decided_at", "planned_start", "started_at", "ended_at", "updated_at"):
        assert row[name].tzinfo is not None and row[name].utcoffset() == timedelta(0), name
    assert row["region"] == "TEST"  # from the record, not the decision
    assert row["source"] == "csv"  # the record has none (""), so the decision's is kept


def test_datetimes_round_trip_as_utc_whatever_the_input_zone(store):
    paris = timezone(timedelta(hours=2))
    record_decision(store, ready_at=datetime(2024, 6, 1, 2, 0, tzinfo=paris))
    store.record_decision(TaskTryKey("dag", "naive", "r"), region="DE", source="csv", policy="forecast",
                          ready_at=datetime(2024, 6, 1, 0, 0), deadline="2024-06-01T04:00:00Z", decision={})
    rows = {row["task_id"]: row for row in store.rows()}
    assert rows["summarize"]["ready_at"] == T0 and rows["summarize"]["ready_at"].tzinfo == UTC
    assert rows["naive"]["ready_at"] == T0 and rows["naive"]["deadline"] == T0 + 4 * HOUR
    with store.engine.connect() as connection:  # SQLite holds naive UTC text, so text order is time order
        assert connection.execute(text("SELECT ready_at FROM carbon_task_try WHERE task_id = 'summarize'")
                                  ).scalar_one().startswith("2024-06-01 00:00:00")


def test_writing_a_decision_twice_leaves_one_row_with_the_latest_plan(store):
    record_decision(store)
    later = decision(now=T0 + HOUR, start=T0 + 3 * HOUR)
    record_decision(store, decision=later)
    [row] = store.rows()
    assert row["state"] == DEFERRED and row["planned_start"] == T0 + 3 * HOUR and row["decided_at"] == T0 + HOUR


def test_writing_a_completion_twice_leaves_one_row(store):
    store.record_completion(KEY, job_record())
    store.record_completion(KEY, job_record())
    [row] = store.rows()
    assert row["state"] == COMPLETED and row["emissions_g"] == pytest.approx(50.0)
    assert row["failed_sources"] == [] and row["planned_start"] is None


def test_a_late_decision_does_not_downgrade_a_completed_row(store):
    store.record_completion(KEY, job_record(), served_by="csv")
    record_decision(store, region="FR", served_by="watttime", failed_sources=["uk"])
    [row] = store.rows()
    assert row["state"] == COMPLETED
    assert row["region"] == "TEST" and row["served_by"] == "csv" and row["failed_sources"] == []
    assert row["started_at"] == T0 + 2 * HOUR and row["emissions_g"] == pytest.approx(50.0)
    # fields only the decision knows are filled in, since the completed row lacked them
    assert row["planned_start"] == T0 + 2 * HOUR and row["expected_emissions_at_start_g"] == 10.0


def test_each_try_has_its_own_row(store):
    record_decision(store)
    retry = TaskTryKey(KEY.dag_id, KEY.task_id, KEY.run_id, KEY.map_index, try_number=2)
    record_decision(store, retry, ready_at=T0 + HOUR)
    store.record_completion(retry, job_record())
    assert [(row["try_number"], row["state"]) for row in store.rows()] == [(1, DEFERRED), (2, COMPLETED)]


def test_earliest_ready_at_spans_tries_and_mapped_instances(store):
    assert store.earliest_ready_at("dag", "summarize", KEY.run_id, -1) is None
    for map_index, try_number, ready_at in [(0, 1, T0 + HOUR), (0, 2, T0 + 3 * HOUR), (1, 1, T0 + 2 * HOUR),
                                            (1, 2, T0 + 30 * timedelta(minutes=1))]:
        record_decision(store, TaskTryKey("dag", "summarize", KEY.run_id, map_index, try_number), ready_at=ready_at)
    record_decision(store, TaskTryKey("dag", "summarize", "other_run", 0, 1), ready_at=T0)
    record_decision(store, TaskTryKey("dag", "other_task", KEY.run_id, 0, 1), ready_at=T0)
    assert store.earliest_ready_at("dag", "summarize", KEY.run_id, 0) == T0 + HOUR
    assert store.earliest_ready_at("dag", "summarize", KEY.run_id, 1) == T0 + 30 * timedelta(minutes=1)
    earliest = store.earliest_ready_at("dag", "summarize", KEY.run_id, None)
    assert earliest == T0 + 30 * timedelta(minutes=1) and earliest.tzinfo is not None
    assert store.earliest_ready_at("dag", "summarize", KEY.run_id, 7) is None


def test_rows_filter_by_dag_task_run_and_state(store):
    record_decision(store, TaskTryKey("a", "t1", "r1"))
    record_decision(store, TaskTryKey("a", "t2", "r1"))
    record_decision(store, TaskTryKey("a", "t1", "r2"))
    record_decision(store, TaskTryKey("b", "t1", "r1"))
    store.record_completion(TaskTryKey("a", "t2", "r1"), job_record())

    def keys(**filters):
        return [(row["dag_id"], row["task_id"], row["run_id"]) for row in store.rows(**filters)]

    assert len(keys()) == 4
    assert keys(dag_id="a") == [("a", "t1", "r1"), ("a", "t1", "r2"), ("a", "t2", "r1")]
    assert keys(dag_id="a", task_id="t1") == [("a", "t1", "r1"), ("a", "t1", "r2")]
    assert keys(run_id="r1", task_id="t1") == [("a", "t1", "r1"), ("b", "t1", "r1")]
    assert keys(state=COMPLETED) == [("a", "t2", "r1")]
    assert keys(dag_id="b", state=COMPLETED) == []
    assert all(isinstance(row, dict) for row in store.rows())


def test_a_second_store_on_the_same_file_sees_the_rows_and_wal_is_on(store, tmp_path):
    record_decision(store)
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
    with pytest.raises(UnsupportedDialectError):
        decision_statement("mssql", KEY, region=None, source=None, policy=None, ready_at=None, deadline=None,
                           decision={})


def test_from_engine_wraps_a_configured_engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'own.db'}")
    store = MetricsStore.from_engine(engine)
    try:
        record_decision(store)
        assert len(store.rows()) == 1
        store.ping()
    finally:
        store.close()


def test_postgres_statements_are_atomic_upserts_on_the_primary_key():
    dialect = postgresql.dialect()
    for stmt in (decision_statement("postgresql", KEY, region="DE", source="csv", policy="forecast", ready_at=T0,
                                    deadline=T0, decision=decision()),
                 completion_statement("postgresql", KEY, job_record())):
        sql = str(stmt.compile(dialect=dialect))
        assert sql.startswith("INSERT INTO carbon_task_try")
        assert "ON CONFLICT (dag_id, task_id, run_id, map_index, try_number) DO UPDATE" in sql


def test_concurrent_writers_end_with_one_row_per_try(tmp_path):
    """Two writers, each with its own engine as two processes would have, racing on the same keys."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    errors: list[BaseException] = []
    tries = 40
    barrier = threading.Barrier(2)

    def writer(worker: int) -> None:
        try:
            barrier.wait()
            store = MetricsStore(url)  # both create the table at once
            try:
                for i in range(tries):
                    key = TaskTryKey("dag", f"task{i % 10}", "run", map_index=i, try_number=1)
                    record_decision(store, key)
                    store.record_completion(key, job_record(), served_by=f"writer{worker}")
                    record_decision(store, key)  # late: must not downgrade
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


def test_the_store_never_imports_airflow():
    code = ("import sys, airflow_carbon.metrics; "
            "sys.exit(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
