"""The hook against Airflow's real connection lookup (environment variables), not a mock of ``get_connection``."""

from __future__ import annotations

import json
import logging
import re
import shlex
import socket
from dataclasses import asdict, replace
from datetime import timedelta

import pytest
from tenacity import Retrying

from airflow_carbon.cli import main
from airflow_carbon.hooks import CarbonMetricsHook
from airflow_carbon.metrics import COMPLETED, DEFERRED, MetricsStore, Spool, TaskTryKey, TaskTryRecord
from airflow_carbon.metrics.spool import parse_record
from tests.helpers import T0

HOUR = timedelta(hours=1)
KEY = TaskTryKey("dag", "summarize", "manual__1", map_index=3, try_number=2)
PASSWORD = "s3cr@t/Hunter2-pw"  # URL-quoted as s3cr%40t%2FHunter2-pw
SECRETS = (PASSWORD, "s3cr%40t%2FHunter2-pw", "Hunter2")
DECISION = TaskTryRecord(
    **asdict(KEY), state=DEFERRED, region="DE", source="csv:/data/de.csv", served_by="csv:/data/de.csv",
    policy="forecast", reason="green_window", ready_at=T0, deadline=T0 + 4 * HOUR, energy_kwh=0.5, decided_at=T0,
    planned_start=T0 + 2 * HOUR, expected_emissions_now_g=30.0, expected_emissions_at_start_g=10.0)
COMPLETION = TaskTryRecord(
    **asdict(KEY), state=COMPLETED, region="DE", source="csv:/data/de.csv", served_by="csv:/data/de.csv",
    signal="replay of /data/de.csv", failed_sources=["conn:watttime_default: timeout"], policy="forecast",
    reason="green_window", ready_at=T0, deadline=T0 + 4 * HOUR, energy_kwh=0.5, started_at=T0 + 2 * HOUR,
    ended_at=T0 + 3 * HOUR, delay_s=7200.0, intensity_g_per_kwh=100.0, baseline_intensity_g_per_kwh=300.0,
    solar_kwh=0.0, grid_kwh=0.5, emissions_g=50.0, baseline_emissions_g=150.0, saved_g=100.0, estimated=False)
#: What the store holds once both are written: the completion, with the decision's own fields.
BOTH = replace(COMPLETION, decided_at=T0, planned_start=T0 + 2 * HOUR, expected_emissions_now_g=30.0,
               expected_emissions_at_start_g=10.0)
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


def stored(store: MetricsStore) -> list[TaskTryRecord]:
    """The store's records, without the time the store wrote them."""
    return [replace(record, updated_at=None) for record in store.records()]


def logged_record(message: str) -> TaskTryRecord:
    """The record an ERROR line carries, read back the way a spool file is."""
    return parse_record(message.split("record: ", 1)[1])


def test_without_a_connection_the_store_is_a_sqlite_file_under_airflow_home(tmp_path, caplog):
    hook = CarbonMetricsHook()
    with caplog.at_level(logging.INFO):
        assert hook.url() == f"sqlite:///{tmp_path}/airflow_home/carbon_metrics.db"
        assert CarbonMetricsHook().url() == hook.url()
    # The documented default, said once per process at INFO: never silent, never a warning in every task's log.
    [told] = [record for record in caplog.records if "carbon_metrics_default" in record.getMessage()]
    assert told.levelno == logging.INFO and "documented default store" in told.getMessage()
    assert hook.write(DECISION)
    assert hook.write(COMPLETION)
    assert (tmp_path / "airflow_home" / "carbon_metrics.db").exists()
    assert stored(hook.get_store()) == [BOTH]


def test_airflow_home_default_is_home_airflow(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert CarbonMetricsHook().url() == f"sqlite:///{tmp_path}/home/airflow/carbon_metrics.db"


def test_a_json_sqlite_connection_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "sqlite", "host": f"{tmp_path}/x.db"}))
    hook = CarbonMetricsHook()
    assert hook.url() == f"sqlite:///{tmp_path}/x.db"
    assert hook.write(DECISION)
    assert MetricsStore(f"sqlite:///{tmp_path}/x.db").rows()[0]["state"] == DEFERRED
    assert not (tmp_path / "airflow_home" / "carbon_metrics.db").exists()


def test_a_uri_sqlite_connection_names_the_file(monkeypatch, tmp_path):
    # Airflow parses sqlite:////abs/path into schema="/abs/path", host="" (the JSON form uses host).
    monkeypatch.setenv("AIRFLOW_CONN_METRICS_URI", f"sqlite:///{tmp_path}/uri.db")
    hook = CarbonMetricsHook("metrics_uri")
    assert hook.url() == f"sqlite:///{tmp_path}/uri.db"
    assert hook.write(DECISION) and (tmp_path / "uri.db").exists()


def test_the_sqlalchemy_url_extra_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "carbon_metrics", "host": "ignored",
                                             "extra": {"sqlalchemy_url": f"sqlite:///{tmp_path}/y.db"}}))
    hook = CarbonMetricsHook()
    assert hook.url() == f"sqlite:///{tmp_path}/y.db"
    assert hook.write(COMPLETION)
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
        assert not hook.write(DECISION)
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert "sqlalchemy_url" in error and logged_record(error) == DECISION


def test_a_failed_write_logs_the_record_at_error_and_never_the_password(monkeypatch, caplog):
    port = closed_port()
    monkeypatch.setenv(CONN_ENV, json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "carbon", "password": PASSWORD,
        "schema": "metrics"}))
    hook = CarbonMetricsHook(attempts=3, retry_wait_s=0)
    with caplog.at_level(logging.DEBUG):
        assert hook.write(DECISION) is False
        assert hook.write(COMPLETION) is False
        ok, message = hook.test_connection()
    assert not ok and f"127.0.0.1:{port}" in message
    for secret in SECRETS:
        assert secret not in caplog.text and secret not in message
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all(f"127.0.0.1:{port}" in error for error in errors)
    assert [logged_record(error) for error in errors] == [DECISION, COMPLETION]
    retries = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(retries) == 4  # two waits before each of the two failed writes' last attempt
    spooled = hook.spool().pending()
    assert [path.name for path in spooled] == [re.search(r"kept in \S+/([^/ ]+\.json)", error)[1] for error in errors]
    assert [parse_record(path.read_text()) for path in spooled] == [DECISION, COMPLETION]
    kept = [path.read_text() for path in spooled[0].parent.iterdir()]  # the records and store.txt
    assert f"postgresql://carbon:***@127.0.0.1:{port}/metrics\n" in kept  # store.txt, for humans
    for secret in SECRETS:
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
        assert not hook.write(COMPLETION)
        ok, message = hook.test_connection()
    assert not ok and "password=***" in message
    assert "cannot connect to postgresql://carbon:***@db.example/metrics" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text and secret not in message


def test_retries_back_off_exponentially_from_half_a_second(monkeypatch):
    waits: list[float] = []
    original = Retrying.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, sleep=waits.append, **{k: v for k, v in kwargs.items() if k != "sleep"})

    monkeypatch.setattr(Retrying, "__init__", recording_init)
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "carbon_metrics", "host": "db.example"}))
    assert not CarbonMetricsHook().write(DECISION)
    assert waits == [0.5, 1.0]  # three attempts


def test_a_transient_failure_is_retried(monkeypatch):
    calls = []
    original = MetricsStore.write

    def flaky(self, record):
        calls.append(record)
        if len(calls) == 1:
            raise OSError("disk hiccup")
        return original(self, record)

    monkeypatch.setattr(MetricsStore, "write", flaky)
    hook = CarbonMetricsHook(retry_wait_s=0)
    assert hook.write(DECISION) and calls == [DECISION, DECISION]
    assert len(hook.get_store().rows()) == 1 and hook.spool().pending() == []


def test_one_store_per_url_in_the_process(monkeypatch, tmp_path):
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "sqlite", "host": f"{tmp_path}/x.db"}))
    monkeypatch.setenv("AIRFLOW_CONN_OTHER", json.dumps({"conn_type": "sqlite", "host": f"{tmp_path}/y.db"}))
    assert CarbonMetricsHook().get_store() is CarbonMetricsHook().get_store()
    assert CarbonMetricsHook().get_store() is not CarbonMetricsHook("other").get_store()


def test_a_named_connection_that_is_missing_is_an_error_not_a_silent_fallback(caplog):
    hook = CarbonMetricsHook("metrics_prod", attempts=1)
    with caplog.at_level(logging.ERROR):
        assert not hook.write(DECISION)
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert "metrics_prod" in error and logged_record(error) == DECISION


def test_hook_metadata():
    assert CarbonMetricsHook.conn_name_attr == "carbon_metrics_conn_id"
    assert CarbonMetricsHook.default_conn_name == "carbon_metrics_default"
    assert CarbonMetricsHook.conn_type == "carbon_metrics"
    assert CarbonMetricsHook.hook_name == "Carbon metrics store"
    assert CarbonMetricsHook().carbon_metrics_conn_id == "carbon_metrics_default"


def missing_dir_store(monkeypatch, tmp_path, conn_env: str = CONN_ENV) -> str:
    """A SQLite store in a directory that does not exist yet: SQLite cannot create the file, the store is down."""
    monkeypatch.setenv(conn_env, json.dumps({"conn_type": "sqlite", "host": f"{tmp_path}/missing-dir/metrics.db"}))
    return f"sqlite:///{tmp_path}/missing-dir/metrics.db"


def test_a_store_that_is_down_gets_the_record_from_the_spool_with_the_next_write(monkeypatch, tmp_path, caplog):
    url = missing_dir_store(monkeypatch, tmp_path)
    hook = CarbonMetricsHook(retry_wait_s=0)
    with caplog.at_level(logging.ERROR):
        assert hook.write(COMPLETION) is False
    [path] = hook.spool().pending()
    assert path.parent.parent == tmp_path / "airflow_home" / "carbon_spool"
    assert (path.parent / "store.txt").read_text() == url + "\n"
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert f"the store at {url} was unreachable" in error and "the completed record of" in error
    assert str(path) in error and "`airflow-carbon metrics --flush`" in error

    (tmp_path / "missing-dir").mkdir()
    other = TaskTryRecord("dag", "tag", "manual__1", ready_at=T0)
    assert hook.write(other)
    assert not path.exists() and hook.spool().pending() == []
    assert stored(MetricsStore(url)) == [COMPLETION, other]


def test_the_flush_command_the_error_names_writes_what_was_kept(monkeypatch, tmp_path, caplog, capsys):
    url = missing_dir_store(monkeypatch, tmp_path, "AIRFLOW_CONN_METRICS_PROD")
    hook = CarbonMetricsHook("metrics_prod", retry_wait_s=0)
    with caplog.at_level(logging.ERROR):
        assert not hook.write(DECISION) and not hook.write(COMPLETION)
    commands = {re.search(r"`(airflow-carbon [^`]+)`", record.getMessage())[1] for record in caplog.records
                if record.levelno == logging.ERROR}
    assert commands == {"airflow-carbon metrics --flush --conn-id metrics_prod"}
    argv = shlex.split(commands.pop())[1:]
    assert main(argv) == 1 and len(hook.spool().pending()) == 2  # still down: nothing lost
    (tmp_path / "missing-dir").mkdir()
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"2 spooled record(s) written to {url}; 0 remain")
    assert hook.spool().pending() == [] and stored(MetricsStore(url)) == [BOTH]


def test_a_record_that_cannot_be_spooled_either_is_logged_whole(monkeypatch, tmp_path, caplog):
    missing_dir_store(monkeypatch, tmp_path)

    def disk_full(self, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Spool, "put", disk_full)
    with caplog.at_level(logging.ERROR):
        assert CarbonMetricsHook(retry_wait_s=0).write(COMPLETION) is False
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert "nor keep it in this host's spool" in error and "No space left on device" in error
    assert logged_record(error) == COMPLETION


def test_a_replay_that_fails_never_fails_the_write(monkeypatch, tmp_path, caplog):
    missing_dir_store(monkeypatch, tmp_path)
    hook = CarbonMetricsHook(retry_wait_s=0)
    assert not hook.write(COMPLETION)
    (tmp_path / "missing-dir").mkdir()

    def broken(self, store):
        raise PermissionError(13, "Permission denied", str(self.directory))

    monkeypatch.setattr(Spool, "replay", broken)
    with caplog.at_level(logging.WARNING):
        assert hook.write(DECISION)
    assert "replaying this host's spool" in caplog.text and "Permission denied" in caplog.text
    assert len(hook.spool().pending()) == 1  # kept for the next write


def test_spooled_ready_at_reads_what_this_host_kept(monkeypatch, tmp_path):
    missing_dir_store(monkeypatch, tmp_path)
    hook = CarbonMetricsHook(retry_wait_s=0)
    assert hook.spooled_ready_at("dag", "summarize", "manual__1", None) is None
    assert not hook.write(replace(DECISION, ready_at=T0 + HOUR))
    assert not hook.write(replace(DECISION, try_number=3, ready_at=T0 + 2 * HOUR))
    assert hook.spooled_ready_at("dag", "summarize", "manual__1", None) == T0 + HOUR
    assert hook.spooled_ready_at("dag", "summarize", "manual__1", 4) is None
    assert CarbonMetricsHook("not_defined").spooled_ready_at("dag", "summarize", "manual__1", None) is None
