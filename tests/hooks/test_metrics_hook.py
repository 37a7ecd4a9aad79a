"""The hook against Airflow's real connection lookup (environment variables), not a mock of ``get_connection``."""

from __future__ import annotations

import json
import logging
import re
import socket
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowNotFoundException
from tenacity import Retrying

from airflow_carbon.hooks import CarbonMetricsHook
from airflow_carbon.metrics import COMPLETED, DEFERRED, MetricsStore, Spool, TaskTryKey
from airflow_carbon.metrics.store import COMPLETION_COLUMNS
from tests.helpers import T0

HOUR = timedelta(hours=1)
KEY = TaskTryKey("dag", "summarize", "manual__1", map_index=3, try_number=2)
PASSWORD = "s3cr@t/Hunter2-pw"  # URL-quoted as s3cr%40t%2FHunter2-pw
DECISION = {"policy": "forecast", "now": T0.isoformat(), "start": (T0 + 2 * HOUR).isoformat(),
            "deadline": (T0 + 4 * HOUR).isoformat(), "reason": "green_window", "run_now": False, "wait_s": 7200.0,
            "expected_emissions_now_g": 30.0, "expected_emissions_at_start_g": 10.0, "expected_saving_g": 20.0,
            "extrapolated": False}
RECORD = {"job_id": "summarize", "policy": "forecast", "region": "DE", "source": "csv", "reason": "green_window",
          "ready_at": T0.isoformat(), "deadline": (T0 + 4 * HOUR).isoformat(),
          "started_at": (T0 + 2 * HOUR).isoformat(), "ended_at": (T0 + 3 * HOUR).isoformat(), "energy_kwh": 0.5,
          "solar_kwh": 0.0, "intensity_g_per_kwh": 100.0, "baseline_intensity_g_per_kwh": 300.0, "emissions_g": 50.0,
          "baseline_emissions_g": 150.0, "estimated": False, "delay_s": 7200.0, "grid_kwh": 0.5, "saved_g": 100.0}
CONN_ENV = "AIRFLOW_CONN_CARBON_METRICS_DEFAULT"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    monkeypatch.delenv(CONN_ENV, raising=False)
    yield
    CarbonMetricsHook.reset_store_cache()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_decision(hook: CarbonMetricsHook) -> bool:
    return hook.write_decision(KEY, region="DE", source="csv", policy="forecast", ready_at=T0,
                               deadline=T0 + 4 * HOUR, decision=DECISION, served_by="csv")


def test_without_a_connection_the_store_is_a_sqlite_file_under_airflow_home(tmp_path, caplog):
    hook = CarbonMetricsHook()
    with caplog.at_level(logging.WARNING):
        assert hook.url() == f"sqlite:///{tmp_path}/airflow_home/carbon_metrics.db"
    assert "carbon_metrics_default" in caplog.text  # the fallback is never silent
    assert write_decision(hook)
    assert hook.write_completion(KEY, RECORD)
    assert (tmp_path / "airflow_home" / "carbon_metrics.db").exists()
    [row] = hook.get_store().rows()
    assert row["state"] == COMPLETED and row["map_index"] == 3 and row["try_number"] == 2
    assert row["planned_start"] == T0 + 2 * HOUR and row["served_by"] == "csv" and row["saved_g"] == 100.0


def test_airflow_home_default_is_home_airflow(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert CarbonMetricsHook().url() == f"sqlite:///{tmp_path}/home/airflow/carbon_metrics.db"


def test_a_json_sqlite_connection_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "sqlite", "host": f"{tmp_path}/x.db"}))
    hook = CarbonMetricsHook()
    assert hook.url() == f"sqlite:///{tmp_path}/x.db"
    assert write_decision(hook)
    assert MetricsStore(f"sqlite:///{tmp_path}/x.db").rows()[0]["state"] == DEFERRED
    assert not (tmp_path / "airflow_home" / "carbon_metrics.db").exists()


def test_a_uri_sqlite_connection_names_the_file(monkeypatch, tmp_path):
    # Airflow parses sqlite:////abs/path into schema="/abs/path", host="" (the JSON form uses host).
    monkeypatch.setenv("AIRFLOW_CONN_METRICS_URI", f"sqlite:///{tmp_path}/uri.db")
    hook = CarbonMetricsHook("metrics_uri")
    assert hook.url() == f"sqlite:///{tmp_path}/uri.db"
    assert write_decision(hook) and (tmp_path / "uri.db").exists()


def test_the_sqlalchemy_url_extra_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "carbon_metrics", "host": "ignored",
                                             "extra": {"sqlalchemy_url": f"sqlite:///{tmp_path}/y.db"}}))
    hook = CarbonMetricsHook()
    assert hook.url() == f"sqlite:///{tmp_path}/y.db"
    assert hook.write_completion(KEY, RECORD)
    assert hook.get_store().rows()[0]["emissions_g"] == 50.0
    ok, message = hook.test_connection()
    assert ok and "y.db" in message


def test_a_postgres_connection_becomes_a_postgresql_url(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PG_METRICS", "postgres://carbon:s3cr%40t%2FHunter2-pw@db.example:5432/metrics"
                                                  "?sslmode=require")
    assert CarbonMetricsHook("pg_metrics").url() == (
        "postgresql://carbon:s3cr%40t%2FHunter2-pw@db.example:5432/metrics?sslmode=require"
    )
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "carbon_metrics", "extra": {
        "sqlalchemy_url": "postgres+psycopg://carbon@db.example/metrics"}}))
    assert CarbonMetricsHook().url() == "postgresql+psycopg://carbon@db.example/metrics"


def test_a_connection_of_our_type_without_a_url_fails_the_write_loudly(monkeypatch, caplog):
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "carbon_metrics", "host": "db.example"}))
    hook = CarbonMetricsHook(attempts=1)
    with caplog.at_level(logging.ERROR):
        assert not write_decision(hook)
    assert "sqlalchemy_url" in caplog.text and '"policy": "forecast"' in caplog.text


def test_a_failed_write_logs_the_record_at_error_and_never_the_password(monkeypatch, caplog):
    port = closed_port()
    monkeypatch.setenv(CONN_ENV, json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "carbon", "password": PASSWORD,
        "schema": "metrics"}))
    hook = CarbonMetricsHook(attempts=3, retry_wait_s=0)
    with caplog.at_level(logging.DEBUG):
        assert write_decision(hook) is False
        assert hook.write_completion(KEY, RECORD, failed_sources=["watttime"]) is False
        ok, message = hook.test_connection()
    assert not ok and f"127.0.0.1:{port}" in message
    for secret in (PASSWORD, "s3cr%40t%2FHunter2-pw", "Hunter2"):
        assert secret not in caplog.text and secret not in message
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all(f"127.0.0.1:{port}" in record.getMessage() for record in errors)
    decision_json = json.loads(errors[0].getMessage().split("record: ", 1)[1])
    assert decision_json["kind"] == "decision" and decision_json["decision"] == DECISION
    assert decision_json["key"] == {"dag_id": "dag", "task_id": "summarize", "run_id": "manual__1", "map_index": 3,
                                    "try_number": 2}
    assert decision_json["ready_at"] == T0.isoformat()
    completion_json = json.loads(errors[1].getMessage().split("record: ", 1)[1])
    assert completion_json["record"] == RECORD and completion_json["failed_sources"] == ["watttime"]
    retries = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(retries) == 4  # two waits before each of the two failed writes' last attempt
    spooled = hook.spool().pending()
    assert [path.name for path in spooled] == [re.search(r"kept in \S+/([^/ ]+\.json)", error.getMessage())[1]
                                               for error in errors]
    kept = [path.read_text() for path in spooled[0].parent.iterdir()]  # the records and store.txt
    assert f"postgresql://carbon:***@127.0.0.1:{port}/metrics\n" in kept  # store.txt, for humans
    for secret in (PASSWORD, "s3cr%40t%2FHunter2-pw", "Hunter2"):
        assert all(secret not in text for text in kept) and secret not in str(spooled[0])


def test_a_password_change_keeps_the_spool_of_the_same_store(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OLD", f"postgres://carbon:{PASSWORD.replace('@', '%40').replace('/', '%2F')}"
                                           "@db.example/metrics")
    monkeypatch.setenv("AIRFLOW_CONN_NEW", "postgres://carbon:rotated@db.example/metrics")
    monkeypatch.setenv("AIRFLOW_CONN_OTHER", "postgres://carbon:rotated@db.example/other")
    old, new, other = (CarbonMetricsHook(conn_id).spool().directory for conn_id in ("old", "new", "other"))
    assert old == new != other
    assert old.parent.name == "carbon_spool" and len(old.name) == 16


def test_a_driver_error_that_echoes_the_dsn_is_redacted(monkeypatch, caplog):
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "postgres", "host": "db.example", "login": "carbon",
                                             "password": PASSWORD, "schema": "metrics"}))

    def leaky_store(url: str) -> MetricsStore:
        raise RuntimeError(f"cannot connect to {url} (password={PASSWORD})")

    monkeypatch.setattr(CarbonMetricsHook, "_store_for", staticmethod(leaky_store))
    hook = CarbonMetricsHook(retry_wait_s=0)
    with caplog.at_level(logging.WARNING):
        assert not hook.write_completion(KEY, RECORD)
        ok, message = hook.test_connection()
    assert not ok and "password=***" in message
    assert "cannot connect to postgresql://carbon:***@db.example/metrics" in caplog.text
    for secret in (PASSWORD, "s3cr%40t%2FHunter2-pw", "Hunter2"):
        assert secret not in caplog.text and secret not in message


def test_retries_back_off_exponentially_from_half_a_second(monkeypatch, tmp_path):
    waits: list[float] = []
    original = Retrying.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, sleep=waits.append, **{k: v for k, v in kwargs.items() if k != "sleep"})

    monkeypatch.setattr(Retrying, "__init__", recording_init)
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "carbon_metrics", "host": "db.example"}))
    assert not write_decision(CarbonMetricsHook())
    assert waits == [0.5, 1.0]  # three attempts


def test_a_transient_failure_is_retried(monkeypatch, tmp_path):
    calls = []
    original = MetricsStore.record_decision

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk hiccup")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MetricsStore, "record_decision", flaky)
    hook = CarbonMetricsHook(retry_wait_s=0)
    assert write_decision(hook) and len(calls) == 2
    assert len(hook.get_store().rows()) == 1


def test_one_store_per_url_in_the_process(monkeypatch, tmp_path):
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "sqlite", "host": f"{tmp_path}/x.db"}))
    monkeypatch.setenv("AIRFLOW_CONN_OTHER", json.dumps({"conn_type": "sqlite", "host": f"{tmp_path}/y.db"}))
    assert CarbonMetricsHook().get_store() is CarbonMetricsHook().get_store()
    assert CarbonMetricsHook().get_store() is not CarbonMetricsHook("other").get_store()


def test_a_named_connection_that_is_missing_is_an_error_not_a_silent_fallback(caplog):
    hook = CarbonMetricsHook("metrics_prod", attempts=1)
    with caplog.at_level(logging.ERROR):
        assert not write_decision(hook)
    assert "metrics_prod" in caplog.text and '"kind": "decision"' in caplog.text


async def _aurl(hook: CarbonMetricsHook) -> str:
    return await hook.aurl()


def test_the_async_lookup_resolves_the_same_url(monkeypatch, tmp_path):
    import asyncio

    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "sqlite", "host": f"{tmp_path}/x.db"}))
    assert asyncio.run(_aurl(CarbonMetricsHook())) == f"sqlite:///{tmp_path}/x.db"
    monkeypatch.delenv(CONN_ENV)
    assert asyncio.run(_aurl(CarbonMetricsHook())) == f"sqlite:///{tmp_path}/airflow_home/carbon_metrics.db"
    with pytest.raises(AirflowNotFoundException, match="'missing' is not defined"):
        asyncio.run(_aurl(CarbonMetricsHook("missing")))


def test_hook_metadata():
    assert CarbonMetricsHook.conn_name_attr == "carbon_metrics_conn_id"
    assert CarbonMetricsHook.default_conn_name == "carbon_metrics_default"
    assert CarbonMetricsHook.conn_type == "carbon_metrics"
    assert CarbonMetricsHook.hook_name == "Carbon metrics store"
    assert CarbonMetricsHook().carbon_metrics_conn_id == "carbon_metrics_default"


def missing_dir_store(monkeypatch, tmp_path) -> str:
    """A SQLite store in a directory that does not exist yet: SQLite cannot create the file, the store is down."""
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "sqlite", "host": f"{tmp_path}/missing-dir/metrics.db"}))
    return f"sqlite:///{tmp_path}/missing-dir/metrics.db"


def test_a_store_that_is_down_gets_the_record_from_the_spool_once_it_answers(monkeypatch, tmp_path, caplog):
    url = missing_dir_store(monkeypatch, tmp_path)
    hook = CarbonMetricsHook(retry_wait_s=0)
    with caplog.at_level(logging.ERROR):
        assert hook.write_completion(KEY, RECORD, served_by="csv", failed_sources=["watttime"]) is False
    [path] = hook.spool().pending()
    assert path.parent.parent == tmp_path / "airflow_home" / "carbon_spool"
    assert (path.parent / "store.txt").read_text() == url + "\n"
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert f"the store at {url} was unreachable" in error and "the completion of" in error
    assert str(path) in error and "airflow-carbon metrics --flush" in error

    (tmp_path / "missing-dir").mkdir()
    other = TaskTryKey("dag", "tag", "manual__1")
    assert hook.write_decision(other, region="DE", source="csv", policy="forecast", ready_at=T0, deadline=T0 + HOUR,
                               decision=DECISION)
    assert not path.exists() and hook.spool().pending() == []
    rows = {row["task_id"]: row for row in MetricsStore(url).rows()}
    assert set(rows) == {"summarize", "tag"} and rows["tag"]["state"] == DEFERRED
    row = rows["summarize"]
    assert (row["map_index"], row["try_number"], row["state"]) == (3, 2, COMPLETED)
    assert row["served_by"] == "csv" and row["failed_sources"] == ["watttime"]
    for name in COMPLETION_COLUMNS:
        value = row[name].isoformat() if hasattr(row[name], "isoformat") else row[name]
        assert value == RECORD[name], name


def test_a_record_that_cannot_be_spooled_either_is_logged_whole(monkeypatch, tmp_path, caplog):
    missing_dir_store(monkeypatch, tmp_path)

    def disk_full(self, kind, key, fields):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Spool, "put", disk_full)
    with caplog.at_level(logging.ERROR):
        assert CarbonMetricsHook(retry_wait_s=0).write_completion(KEY, RECORD) is False
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert "nor keep it in this host's spool" in error and "No space left on device" in error
    assert json.loads(error.split("record: ", 1)[1])["record"] == RECORD


def test_a_replay_that_fails_never_fails_the_write(monkeypatch, tmp_path, caplog):
    missing_dir_store(monkeypatch, tmp_path)
    hook = CarbonMetricsHook(retry_wait_s=0)
    assert not hook.write_completion(KEY, RECORD)
    (tmp_path / "missing-dir").mkdir()

    def broken(self, store):
        raise PermissionError(13, "Permission denied", str(self.directory))

    monkeypatch.setattr(Spool, "replay", broken)
    with caplog.at_level(logging.WARNING):
        assert write_decision(hook)
    assert "replaying this host's spool" in caplog.text and "Permission denied" in caplog.text
    assert len(hook.spool().pending()) == 1  # kept for the next write
