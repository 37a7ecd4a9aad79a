"""The metrics store's migrations, on SQLite and on a real PostgreSQL (Debian's, started by the test).

A store as the code before migrations made it comes from the SQL in ``fixtures/`` (its ``CREATE
TABLE`` and indexes, and its rows as that code stored them).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, inspect, text

from airflow_carbon.errors import CarbonError
from airflow_carbon.metrics import TaskTryRecord, migrations
from airflow_carbon.metrics.migrations import VERSION_TABLE, StoreTooNewError, Upgrade
from airflow_carbon.metrics.record import KEY_FIELDS
from airflow_carbon.metrics.schema import METADATA, TABLE
from airflow_carbon.metrics.solar import SolarLedger
from airflow_carbon.metrics.store import MetricsStore
from airflow_carbon.signals import SOLAR_UNIT, Series
from airflow_carbon.units import parse_instant
from tests.e2e.distributed import PostgresServer
from tests.metrics.fixtures import INSTANT_FIELDS, create_main_store, main_rows

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

BACKENDS = ["sqlite", "postgresql"]
#: What the backfill makes of each signal of the fixture's rows.
KINDS = {
    "watttime:co2_moer": "marginal",
    "watttime:co2_aoer": "average",
    "electricitymaps": "average",
    "electricitymaps:persistence": "average",
    "ukgrid": "average",
    "ukgrid:regional": "average",
    "replay of /data/de_ci.csv": None,
    "watttime:co2_unknown": None,
    "watttime": None,
    "ukgrid_north": None,
    "UKGRID:north": None,
    None: None,
}

#: What 0003 adds to every row of the task try table: no site, no solar source, no solar basis.
SOLAR_COLUMNS = {"site": None, "solar_served_by": None, "solar_basis": None}
SOLAR_TABLES = ("carbon_solar_site", "carbon_solar_reservation", "carbon_solar_output")
#: What 0004 adds to every row of the task try table: nobody released it.
RELEASE_COLUMNS = {"released_by": None, "released_at": None, "release_reason": None}
CONTROL_TABLES = ("carbon_release", "carbon_eco_switch", "carbon_budget", "carbon_budget_alert", "carbon_audit")
#: What 0005 adds to every row of the task try table: no energy method nor expectation (declared or assumed energy).
ENERGY_COLUMNS = {"energy_method": None, "energy_scope": None, "energy_breakdown_kwh": None, "energy_notes": [],
                  "pue": None, "expected_duration_s": None, "expected_energy_kwh": None, "expected_from": None}
#: What 0006 adds to every row of the task try table: it chose no region.
REGION_COLUMNS = {"home_region": None, "chosen_task_id": None, "region_expected_g": None, "saved_time_g": None,
                  "saved_place_g": None}


def upgraded(row: dict[str, Any]) -> dict[str, Any]:
    """A row of the code before migrations as the head reads it."""
    return (row | {"signal_kind": KINDS[row["signal"]]} | SOLAR_COLUMNS | RELEASE_COLUMNS | ENERGY_COLUMNS
            | REGION_COLUMNS)


@pytest.fixture(params=BACKENDS)
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Makes empty databases and gives their URLs: SQLite files, or databases on the module's PostgreSQL."""
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path / uuid.uuid4().hex[:12]}.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database


@pytest.fixture
def url(new_database: Callable[[], str]) -> str:
    return new_database()


def schema(engine: Engine) -> dict[str, Any]:
    """Tables, columns (type, nullable), primary keys and indexes, as the database reports them."""
    found = inspect(engine)
    return {
        table: {
            "columns": {column["name"]: (str(column["type"]), column["nullable"])
                        for column in found.get_columns(table)},
            "primary_key": found.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted((index["name"], tuple(index["column_names"]), bool(index["unique"]))
                              for index in found.get_indexes(table)),
        }
        for table in sorted(found.get_table_names())
    }


def differences(engine: Engine) -> list[Any]:
    """What alembic's autogenerate would change to make the database ``schema.METADATA``."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return compare_metadata(context, METADATA)


def statements_of(engine: Engine) -> list[str]:
    """A list that fills with every SQL statement the engine runs from now on."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


def test_a_store_made_before_migrations_is_upgraded_and_every_row_reads_back(url):
    create_main_store(url)
    store = MetricsStore(url, upgrade=False)
    assert VERSION_TABLE not in inspect(store.engine).get_table_names()
    assert "signal_kind" not in {column["name"] for column in inspect(store.engine).get_columns("carbon_task_try")}

    assert migrations.upgrade(store.engine) == Upgrade("0001", migrations.head())

    expected = [upgraded(row) for row in main_rows()]
    assert {row["signal"] for row in expected} == set(KINDS)
    assert store.rows() == expected
    records = store.records()
    assert [record.to_json() for record in records] == [
        TaskTryRecord.from_values(row).to_json() for row in expected]
    by_key = {(r.dag_id, r.task_id, r.map_index, r.try_number): r for r in records}
    assert by_key[("dag_a", "summarize", -1, 2)].failed_sources == [
        "conn:em_default: HTTP 503 from api.electricitymap.org"]
    assert by_key[("dag_a", "summarize", -1, 1)].failed_sources == []
    assert by_key[("dag_a", "summarize", -1, 1)].signal_kind == "marginal"
    with store.engine.connect() as connection:
        # An empty list became NULL, as the store writes it now; the lists of failed sources stayed.
        empty = connection.execute(text("SELECT count(*) FROM carbon_task_try WHERE failed_sources IS NULL")).scalar()
    assert empty == sum(1 for row in expected if row["failed_sources"] == []) == 10
    store.close()


def test_an_upgraded_store_takes_new_records_beside_the_old(url):
    create_main_store(url)
    store = MetricsStore(url)
    [waiting] = store.records(dag_id="dag_a", task_id="summarize", state="deferred")
    done = TaskTryRecord.from_values({**waiting.to_json(), "state": "completed", "started_at": waiting.planned_start,
                                      "ended_at": waiting.planned_start, "emissions_g": 12.5, "failed_sources": []})
    store.write(done)
    fresh = TaskTryRecord("dag_d", "new", "r9", state="running", signal="watttime:co2_moer",
                          signal_kind="marginal", ready_at=waiting.ready_at)
    store.write(fresh)

    [completed] = [r for r in store.records(dag_id="dag_a", task_id="summarize") if r.try_number == 2]
    assert completed.state == "completed" and completed.emissions_g == 12.5
    # The decision's fields, and the failed sources main's code wrote, are kept.
    assert completed.failed_sources == waiting.failed_sources and completed.planned_start == waiting.planned_start
    [new] = store.records(dag_id="dag_d")
    assert new.signal_kind == "marginal" and new.failed_sources == [] and new.updated_at is not None
    assert len(store.rows()) == len(main_rows()) + 1
    store.close()


@pytest.mark.parametrize("way", ["create", "revisions", "upgraded"])
def test_the_head_schema_is_the_store_table_whichever_way_the_store_was_made(url, way):
    engine = create_engine(url)
    if way == "create":
        assert migrations.upgrade(engine) == Upgrade(None, migrations.head())
    elif way == "revisions":
        with engine.begin() as connection:
            command.upgrade(migrations.config(connection), "head")
    else:
        create_main_store(url)
        assert migrations.upgrade(engine).from_revision == "0001"
    assert differences(engine) == []
    with engine.connect() as connection:
        assert migrations.current_revision(connection) == migrations.head()
    engine.dispose()


def test_a_new_store_gets_the_same_schema_from_create_all_as_from_every_revision(new_database):
    created = create_engine(new_database())
    migrations.upgrade(created)
    by_revisions = create_engine(new_database())
    with by_revisions.begin() as connection:
        command.upgrade(migrations.config(connection), "head")
    first, second = schema(created), schema(by_revisions)
    assert set(first) == {"carbon_alembic_version", "carbon_task_try", *SOLAR_TABLES, *CONTROL_TABLES,
                           "carbon_gated_energy"}
    assert first == second
    created.dispose()
    by_revisions.dispose()


def test_opening_an_up_to_date_store_twice_runs_no_migration(url):
    MetricsStore(url).close()
    engine = create_engine(url)
    engine.connect().close()  # the dialect's own first queries
    seen = statements_of(engine)
    MetricsStore.from_engine(engine)
    MetricsStore.from_engine(engine)
    assert seen == [f"SELECT version_num FROM {VERSION_TABLE}"] * 2
    engine.dispose()


def test_airflows_own_version_table_is_left_alone(url):
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('29ce7909c52b')")
    create_main_store(url)
    assert migrations.upgrade(engine) == Upgrade("0001", migrations.head())
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [
            "29ce7909c52b"]
    engine.dispose()


def test_a_store_a_newer_release_upgraded_is_refused_and_left_alone(url):
    MetricsStore(url).close()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '0099'")
    before = schema(engine)
    seen = statements_of(engine)
    with pytest.raises(StoreTooNewError, match=r"revision '0099'.*Upgrade airflow-carbon") as raised:
        MetricsStore.from_engine(engine)
    assert isinstance(raised.value, CarbonError)
    assert seen == [f"SELECT version_num FROM {VERSION_TABLE}"]
    assert schema(engine) == before
    engine.dispose()


def test_an_upgrade_that_fails_midway_leaves_the_store_as_it_was(url):
    create_main_store(url)
    engine = create_engine(url)
    before = schema(engine)

    def fail_on_backfill(_conn, _cursor, statement, *_args):
        if statement.startswith("UPDATE carbon_task_try SET signal_kind"):
            raise RuntimeError("the backfill broke")

    event.listen(engine, "before_cursor_execute", fail_on_backfill)
    with pytest.raises(RuntimeError, match="the backfill broke"):
        migrations.upgrade(engine)
    event.remove(engine, "before_cursor_execute", fail_on_backfill)
    assert schema(engine) == before  # no version table, no new column: the DDL was rolled back too
    assert migrations.upgrade(engine) == Upgrade("0001", migrations.head())
    assert len(MetricsStore.from_engine(engine).rows()) == len(main_rows())
    engine.dispose()


def test_downgrading_to_0001_gives_back_the_schema_and_rows_of_before(url, tmp_path):
    create_main_store(url)
    engine = create_engine(url)
    before = schema(engine)
    migrations.upgrade(engine)
    with engine.begin() as connection:
        command.downgrade(migrations.config(connection), "0001")
    after = schema(engine)
    assert after.pop(VERSION_TABLE)["columns"] == {"version_num": ("VARCHAR(32)", False)}
    assert after == before
    with engine.connect() as connection:
        assert migrations.current_revision(connection) == "0001"
        stored = connection.exec_driver_sql("SELECT failed_sources FROM carbon_task_try ORDER BY dag_id, task_id, "
                                            "run_id, map_index, try_number").scalars().all()
    assert [value if isinstance(value, list) else json.loads(value) for value in stored] == [
        row["failed_sources"] for row in main_rows()]
    engine.dispose()


@pytest.fixture(scope="module")
def carbon_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The plugin's app as Airflow's API server mounts it, as ``tests/plugins/test_api.py`` builds it, with an
    admin's token; it reads the store that ``carbon_metrics_default`` names (see ``serve``)."""
    from airflow import settings
    from airflow.api_fastapi.app import init_auth_manager, init_plugins, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "carbon-migration-tests-" + "0123456789abcdef" * 4,
    }
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                   env={**os.environ, "AIRFLOW_HOME": str(home), **env}, capture_output=True, timeout=300)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**env, "_AIRFLOW_PROCESS_CONTEXT": "server"}.items():
            patch.setenv(name, value)
        settings.configure_vars()
        settings.reconfigure_orm()
        try:
            with create_session() as session:
                session.add(DagBundleModel(name="carbon-migrations"))
                session.flush()
                for dag_id in sorted({row["dag_id"] for row in main_rows()} | {"dag_d"}):
                    session.add(DagModel(dag_id=dag_id, bundle_name="carbon-migrations", fileloc=f"/dags/{dag_id}.py"))
            app = FastAPI()
            init_plugins(app)
            token = init_auth_manager(app).generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
            with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
                yield client
        finally:
            purge_cached_app()
            forget_stores()
    settings.configure_vars()
    settings.reconfigure_orm()


def forget_stores() -> None:
    from airflow_carbon.hooks.metrics import CarbonMetricsHook
    from airflow_carbon.plugins import common

    common.reset_store_cache()
    CarbonMetricsHook.reset_store_cache()


def serve(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point ``carbon_metrics_default`` at ``url``, as an environment variable (looked up before the database)."""
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT", json.dumps(
        {"conn_type": "carbon_metrics", "extra": {"sqlalchemy_url": url}}))
    forget_stores()


def same_values(answer: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The fields of an API answer whose value differs from the row's (instants compared as instants)."""
    return {name: value for name, value in answer.items() if name in row
            and (parse_instant(value) if name in INSTANT_FIELDS and value is not None else value) != row[name]}


def test_every_row_of_a_store_made_before_migrations_reads_back_through_the_json_api(url, carbon_api, monkeypatch):
    from tests.plugins.test_api import register_task_instance

    create_main_store(url)
    serve(monkeypatch, url)  # the API opens the store, which upgrades it: nobody ran --upgrade
    expected = [upgraded(row) for row in main_rows()]

    instances = sorted({(row["dag_id"], row["run_id"], row["task_id"], row["map_index"]) for row in expected})
    for dag_id, run_id, task_id, map_index in instances:
        response = carbon_api.get(f"/carbon/api/decision/{dag_id}/{quote(run_id, safe='')}/{task_id}",
                                  params={"map_index": map_index})
        assert response.status_code == 200, response.text
        tries = [row for row in expected if (row["dag_id"], row["run_id"], row["task_id"], row["map_index"]) == (
            dag_id, run_id, task_id, map_index)]
        answers = response.json()
        assert [answer["try_number"] for answer in answers] == [row["try_number"] for row in tries]
        for answer, row in zip(answers, tries, strict=True):
            assert set(row) <= set(answer) and same_values(answer, row) == {}, (answer, row)

    completed = [row for row in expected if row["state"] == "completed"]
    tasks = carbon_api.get("/carbon/api/tasks").json()
    assert len(tasks) == len(completed) == 7
    by_key = {tuple(row[name] for name in KEY_FIELDS): row for row in completed}
    for answer in tasks:
        assert same_values(answer, by_key[tuple(answer[name] for name in KEY_FIELDS)]) == {}, answer

    history = {(day["dag_id"], day["day"]): day for day in carbon_api.get("/carbon/api/history").json()}
    for dag_day in {(row["dag_id"], row["started_at"].date().isoformat()) for row in completed}:
        runs = [row for row in completed if (row["dag_id"], row["started_at"].date().isoformat()) == dag_day]
        day = history.pop(dag_day)
        assert day["tasks_run"] == len(runs)
        assert day["emissions_g"] == pytest.approx(sum(row["emissions_g"] for row in runs))
        assert day["served_by_fallback"] == sum(
            1 for row in runs if row["failed_sources"] or row["served_by"] not in (None, row["source"]))
    assert history == {}

    waiting = {("dag_a", "summarize", 2), ("dag_b", "tag", 1), ("dag_c", "evaluate", 3), ("dag_c", "score", 1)}
    for row in expected:  # a try waits only while Airflow has its task instance deferred at that try
        if (row["dag_id"], row["task_id"], row["try_number"]) in waiting:
            register_task_instance(row["dag_id"], row["run_id"], row["task_id"], row["map_index"],
                                   try_number=row["try_number"])
    deferred = carbon_api.get("/carbon/api/deferred").json()
    assert {(answer["dag_id"], answer["task_id"], answer["try_number"]) for answer in deferred} == waiting
    for answer in deferred:
        [row] = [row for row in expected if all(row[name] == answer[name] for name in KEY_FIELDS)]
        assert same_values(answer, row) == {}, answer


def sqlite_engine_that_waits_briefly(path: Path) -> Engine:
    """A main store in WAL mode (as the store puts it), opened with a busy timeout of a fifth of a second."""
    url = f"sqlite:///{path}"
    create_main_store(url)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
    return create_engine(url, connect_args={"timeout": 0.2})


def test_on_sqlite_an_upgrade_that_waited_out_the_lock_finds_it_done_by_the_holder(tmp_path):
    engine = sqlite_engine_that_waits_briefly(tmp_path / "metrics.db")
    holder = sqlite3.connect(tmp_path / "metrics.db", isolation_level=None)

    def another_process_upgrades_and_keeps_the_lock(context):
        """Once this engine found no version table, before it takes the lock."""
        if not holder.in_transaction:
            assert migrations.upgrade(create_engine(f"sqlite:///{tmp_path / 'metrics.db'}")).changed
            holder.execute("BEGIN IMMEDIATE")

    event.listen(engine, "handle_error", another_process_upgrades_and_keeps_the_lock)
    assert migrations.upgrade(engine) == Upgrade(migrations.head(), migrations.head())
    assert holder.in_transaction
    holder.close()
    engine.dispose()


def test_on_sqlite_a_lock_held_through_every_wait_is_a_clear_error(tmp_path):
    engine = sqlite_engine_that_waits_briefly(tmp_path / "metrics.db")
    holder = sqlite3.connect(tmp_path / "metrics.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(migrations.MigrationError, match=r"another process held it .*airflow-carbon metrics --upgrade"):
        migrations.upgrade(engine)
    holder.execute("ROLLBACK")
    assert migrations.upgrade(engine) == Upgrade("0001", migrations.head())
    holder.close()
    engine.dispose()


def _upgrade_in_a_process(url: str, barrier: Any) -> tuple[str | None, str]:
    store = MetricsStore(url, upgrade=False)
    barrier.wait()
    try:
        return tuple(migrations.upgrade(store.engine))
    finally:
        store.close()


def test_processes_upgrading_at_once_all_succeed_and_one_does_the_work(url):
    create_main_store(url)
    context = multiprocessing.get_context("spawn")
    processes = 3
    with context.Manager() as manager, context.Pool(processes) as pool:
        barrier = manager.Barrier(processes, timeout=120)
        results = pool.starmap(_upgrade_in_a_process, [(url, barrier)] * processes, chunksize=1)
    head = migrations.head()
    assert sorted(results, key=str) == sorted([("0001", head)] + [(head, head)] * (processes - 1), key=str)
    assert len(MetricsStore(url).rows()) == len(main_rows())




#: Tries as the previous release (schema revision 0002, record version 2) wrote them: its record JSON, which has
#: no solar fields; one ran on solar, one still waits.
RECORDS_0002 = [
    {"version": 2, "dag_id": "dag_s", "task_id": "infer", "run_id": "r1", "map_index": -1, "try_number": 1,
     "state": "completed", "region": "DE", "source": "conn:em", "served_by": "conn:em", "signal": "electricitymaps",
     "signal_kind": "average", "failed_sources": ["conn:wt: HTTP 503"], "policy": "threshold", "reason": "solar",
     "ready_at": "2024-06-01T10:00:00+00:00", "deadline": "2024-06-01T14:00:00+00:00", "energy_kwh": 0.5,
     "decided_at": "2024-06-01T10:00:00+00:00", "planned_start": "2024-06-01T11:00:00+00:00",
     "expected_emissions_now_g": 100.0, "expected_emissions_at_start_g": 20.0,
     "started_at": "2024-06-01T11:00:00+00:00", "ended_at": "2024-06-01T11:30:00+00:00", "delay_s": 3600.0,
     "intensity_g_per_kwh": 200.0, "baseline_intensity_g_per_kwh": 250.0, "solar_kwh": 0.4, "grid_kwh": 0.1,
     "emissions_g": 20.0, "baseline_emissions_g": 125.0, "saved_g": 105.0, "estimated": True},
    {"version": 2, "dag_id": "dag_s", "task_id": "tag", "run_id": "r1", "map_index": 4, "try_number": 2,
     "state": "deferred", "region": "DE", "source": "conn:em", "policy": "forecast", "reason": "green_window",
     "ready_at": "2024-06-01T10:00:00+00:00", "deadline": "2024-06-01T16:00:00+00:00", "energy_kwh": 0.2,
     "decided_at": "2024-06-01T10:05:00+00:00", "planned_start": "2024-06-01T12:00:00+00:00"},
]


def store_at_0002(url: str) -> Engine:
    """The main store upgraded to 0002, as the previous release left it, with the tries that release wrote.

    That release upserted every field its record had (no failed source as NULL): the same row as an INSERT of
    those columns, which the head's table compiles without naming the columns 0003 adds.
    """
    create_main_store(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        cfg = migrations.config(connection)
        command.stamp(cfg, "0001")
        command.upgrade(cfg, "0002")
    with engine.begin() as connection:
        assert migrations.current_revision(connection) == "0002"
        assert "site" not in {column["name"] for column in inspect(connection).get_columns("carbon_task_try")}
        rows = [{name: value for name, value in TaskTryRecord.from_json(data).to_json().items()
                 if name in TABLE.c and name not in SOLAR_COLUMNS | RELEASE_COLUMNS | ENERGY_COLUMNS
                 | REGION_COLUMNS}
                for data in RECORDS_0002]
        connection.execute(TABLE.insert(), [row | {"failed_sources": row["failed_sources"] or None,
                                                   "updated_at": "2024-06-01T12:00:00+00:00"} for row in rows])
    return engine


def test_a_store_at_0002_keeps_its_rows_and_takes_the_solar_fields_and_ledger(url):
    engine = store_at_0002(url)
    assert migrations.upgrade(engine) == Upgrade("0002", migrations.head())
    assert differences(engine) == []
    assert set(SOLAR_TABLES) <= set(inspect(engine).get_table_names())

    store = MetricsStore.from_engine(engine)
    old = [TaskTryRecord.from_json(data) for data in RECORDS_0002]
    assert [record for record in store.records() if record.dag_id == "dag_s"] == [
        replace(record, updated_at=parse_instant("2024-06-01T12:00:00+00:00")) for record in old]
    assert [row for row in store.rows() if row["dag_id"] != "dag_s"] == [upgraded(row) for row in main_rows()]

    # The waiting try decides again, now with a site, then completes on the site's solar.
    waiting = replace(old[1], site="roof", solar_served_by="conn:inverter")
    store.write(waiting)
    ledger = SolarLedger(store)
    start = parse_instant("2024-06-01T12:00:00+00:00")
    sun = Series(np.array([int(start.timestamp())]), np.array([2.0]), 3600, "roof", unit=SOLAR_UNIT,
                 kind="measured", source="conn:inverter")
    ledger.reserve("roof", waiting.key, start, start + timedelta(minutes=30), 1.0, sun, peak_kw=3.0)
    used, basis = ledger.claim("roof", waiting.key, start, start + timedelta(minutes=30), 1.0, measured=sun,
                               forecast=None)
    assert basis == "measured" and np.allclose(used.values, 1.0)
    store.write(replace(waiting, state="completed", started_at=start, ended_at=start + timedelta(minutes=30),
                        solar_kwh=0.5, grid_kwh=0.0, solar_basis=basis))
    [done] = store.records(dag_id="dag_s", task_id="tag")
    assert (done.site, done.solar_served_by, done.solar_basis, done.state) == (
        "roof", "conn:inverter", "measured", "completed")
    assert done.planned_start == old[1].planned_start  # kept from the decision 0002's code wrote
    assert ledger.site_days(start)[0]["used_kwh"] == pytest.approx(0.5)
    store.close()


def test_a_store_at_0003_keeps_its_rows_and_takes_the_release_fields_and_control_tables(url):
    """The previous release's store (0003, with a solar try) upgraded: every row reads back, nobody released any,
    and a try it left waiting can be released and switched."""
    engine = store_at_0002(url)
    with engine.begin() as connection:
        command.upgrade(migrations.config(connection), "0003")
    solar_try = {"dag_id": "dag_s", "task_id": "solar_try", "run_id": "r9", "map_index": -1, "try_number": 1,
                 "state": "deferred", "site": "roof", "solar_served_by": "conn:inverter",
                 "ready_at": "2024-06-01T12:00:00+00:00", "updated_at": "2024-06-01T12:00:00+00:00"}
    with engine.begin() as connection:
        connection.execute(TABLE.insert(), [solar_try])
        before = [dict(row) for row in connection.execute(text("SELECT * FROM carbon_task_try")).mappings()]
    assert migrations.upgrade(engine) == Upgrade("0003", migrations.head())
    assert differences(engine) == []
    assert set(CONTROL_TABLES) <= set(inspect(engine).get_table_names())
    store = MetricsStore.from_engine(engine)
    rows = store.rows()
    assert len(rows) == len(before)
    assert all({name: row[name] for name in RELEASE_COLUMNS} == RELEASE_COLUMNS for row in rows)
    [waiting] = store.records(dag_id="dag_s", task_id="solar_try")
    assert (waiting.site, waiting.state) == ("roof", "deferred")

    from airflow_carbon.metrics import control

    now = parse_instant("2024-06-01T12:05:00+00:00")
    released = control.release(engine, "dag_s", "r9", "solar_try", -1, actor="ann", reason="now", now=now)
    assert released["try_number"] == 1
    assert control.control_state(engine).override(waiting.key, now).by == "ann"
    store.write(replace(waiting, state="running", reason="released", released_by="ann", released_at=now,
                        release_reason="now"))
    [ran] = store.records(dag_id="dag_s", task_id="solar_try")
    assert (ran.released_by, ran.released_at, ran.release_reason, ran.site) == ("ann", now, "now", "roof")
    store.close()


def test_a_store_at_0004_keeps_its_rows_and_takes_the_energy_fields_and_gated_energy_table(url):
    """The previous release's store (0004, with a released try) upgraded: every row reads back with no energy method
    (its energy was declared or assumed), and a new try's measured energy and history plan are kept beside it."""
    engine = store_at_0002(url)
    with engine.begin() as connection:
        command.upgrade(migrations.config(connection), "0004")
    released = {"dag_id": "dag_r", "task_id": "evaluate", "run_id": "r7", "map_index": -1, "try_number": 1,
                "state": "completed", "energy_kwh": 0.15, "released_by": "ann", "released_reason": None,
                "started_at": "2024-06-01T12:00:00+00:00", "ended_at": "2024-06-01T12:30:00+00:00",
                "ready_at": "2024-06-01T11:00:00+00:00", "updated_at": "2024-06-01T12:30:00+00:00"}
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO carbon_task_try (dag_id, task_id, run_id, map_index, try_number, state, energy_kwh, "
            "released_by, started_at, ended_at, ready_at, updated_at) VALUES (:dag_id, :task_id, :run_id, "
            ":map_index, :try_number, :state, :energy_kwh, :released_by, :started_at, :ended_at, :ready_at, "
            ":updated_at)"), released)
        before = [dict(row) for row in connection.execute(text("SELECT * FROM carbon_task_try")).mappings()]
    assert migrations.upgrade(engine) == Upgrade("0004", migrations.head())
    assert differences(engine) == []
    assert "carbon_gated_energy" in inspect(engine).get_table_names()
    store = MetricsStore.from_engine(engine)
    rows = store.rows()
    assert len(rows) == len(before)
    assert all({name: row[name] for name in ENERGY_COLUMNS} == ENERGY_COLUMNS for row in rows)
    [old] = store.records(dag_id="dag_r", task_id="evaluate")
    assert (old.released_by, old.energy_kwh, old.energy_method) == ("ann", 0.15, None)

    new = replace(old, run_id="r8", energy_kwh=0.02, energy_method="cpu=estimated-cpu-model, ram=estimated-ram-model",
                  energy_scope="process", energy_breakdown_kwh={"cpu": 0.012, "ram": 0.008}, pue=1.0,
                  energy_notes=["gpu:0: the device vanished"], expected_duration_s=1800.0, expected_energy_kwh=0.15,
                  expected_from="history (n=1)", released_by=None)
    store.write(new)
    [read] = store.records(dag_id="dag_r", run_id="r8")
    assert read.to_json() == replace(new, updated_at=read.updated_at).to_json()
    store.close()


def test_a_store_at_0005_keeps_its_rows_and_gated_rows_and_takes_the_region_fields(url):
    """The previous release's store (0005, a sensor's record and one gated row) upgraded: both read back as they were,
    with no region chosen, and a region choice's record and gated row with its home emissions are kept beside them."""
    engine = store_at_0002(url)
    with engine.begin() as connection:
        command.upgrade(migrations.config(connection), "0005")
    sensor = {"dag_id": "dag_g", "task_id": "wait", "run_id": "r1", "map_index": -1, "try_number": 1,
              "state": "completed", "energy_kwh": 0.002, "energy_method": "gated: cpu=estimated-cpu-model",
              "region": "DE", "ready_at": "2024-06-01T11:00:00+00:00", "updated_at": "2024-06-01T12:30:00+00:00"}
    gated_row = {"dag_id": "dag_g", "task_id": "work", "run_id": "r1", "map_index": -1, "try_number": 1,
                 "sensor_task_id": "wait", "sensor_map_index": -1, "sensor_try_number": 1,
                 "started_at": "2024-06-01T12:00:00+00:00", "ended_at": "2024-06-01T12:30:00+00:00",
                 "energy_kwh": 0.002, "energy_method": "cpu=estimated-cpu-model", "energy_scope": "process",
                 "emissions_g": 0.6, "baseline_emissions_g": 0.8, "updated_at": "2024-06-01T12:30:00+00:00"}
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO carbon_task_try (dag_id, task_id, run_id, map_index, try_number, state, energy_kwh, "
            "energy_method, region, ready_at, updated_at) VALUES (:dag_id, :task_id, :run_id, :map_index, "
            ":try_number, :state, :energy_kwh, :energy_method, :region, :ready_at, :updated_at)"), sensor)
        connection.execute(text(
            "INSERT INTO carbon_gated_energy (dag_id, task_id, run_id, map_index, try_number, sensor_task_id, "
            "sensor_map_index, sensor_try_number, started_at, ended_at, energy_kwh, energy_method, energy_scope, "
            "emissions_g, baseline_emissions_g, updated_at) VALUES (:dag_id, :task_id, :run_id, :map_index, "
            ":try_number, :sensor_task_id, :sensor_map_index, :sensor_try_number, :started_at, :ended_at, "
            ":energy_kwh, :energy_method, :energy_scope, :emissions_g, :baseline_emissions_g, :updated_at)"),
            gated_row)
    assert migrations.upgrade(engine) == Upgrade("0005", migrations.head())
    assert differences(engine) == []
    store = MetricsStore.from_engine(engine)
    rows = store.rows()
    assert all({name: row[name] for name in REGION_COLUMNS} == REGION_COLUMNS for row in rows)
    [old] = [row for row in rows if row["dag_id"] == "dag_g"]
    assert (old["energy_method"], old["region"], old["energy_kwh"]) == ("gated: cpu=estimated-cpu-model", "DE", 0.002)
    with engine.connect() as connection:
        [kept] = connection.execute(text("SELECT task_id, emissions_g, baseline_emissions_g, home_emissions_g "
                                         "FROM carbon_gated_energy")).all()
    assert tuple(kept) == ("work", 0.6, 0.8, None)

    [record] = store.records(dag_id="dag_g", task_id="wait")
    chose = replace(record, task_id="choose_region", region="FR", home_region="DE", chosen_task_id="evaluate_fr",
                    region_expected_g={"DE": 3.5, "FR": 0.4, "PL": None}, saved_time_g=0.2, saved_place_g=2.9)
    store.write(chose)
    [read] = store.records(dag_id="dag_g", task_id="choose_region")
    assert read.to_json() == replace(chose, updated_at=read.updated_at).to_json()
    store.close()
