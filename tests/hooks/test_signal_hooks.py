"""The signal-source hooks with Airflow's real connection lookup (environment variables) and a real HTTP server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.hooks.electricitymaps import ElectricityMapsHook
from airflow_carbon.hooks.signal_csv import CarbonCsvHook
from airflow_carbon.hooks.sources import aload_first, load_first
from airflow_carbon.hooks.ukgrid import UKCarbonIntensityHook
from airflow_carbon.hooks.watttime import WattTimeHook
from airflow_carbon.operators.runtime import CarbonTaskRun, checked_source_refs
from airflow_carbon.settings import CarbonSettingsError, resolve
from airflow_carbon.signals.services.http import reset_breakers
from airflow_carbon.signals.services.pool import aclose_clients
from airflow_carbon.signals.source import CsvFileSource, SourceRef
from tests.fakes import FakeTask, FakeTaskInstance
from tests.fakes.signal_server import EM_TOKEN, WATTTIME_PASSWORD, WATTTIME_USERNAME, FakeSignalServer
from tests.signal_files import write_measured_history, write_signal


@pytest.fixture
def server(monkeypatch):
    reset_breakers()
    with FakeSignalServer() as fake:
        monkeypatch.setenv("AIRFLOW_CONN_WT", json.dumps({
            "conn_type": "watttime", "login": WATTTIME_USERNAME, "password": WATTTIME_PASSWORD,
            "host": fake.base_url, "extra": {"region": "CAISO_NORTH"}}))
        monkeypatch.setenv("AIRFLOW_CONN_EM", json.dumps({
            "conn_type": "electricitymaps", "password": EM_TOKEN, "host": fake.base_url, "extra": {"zone": "DE"}}))
        monkeypatch.setenv("AIRFLOW_CONN_UK", json.dumps({"conn_type": "ukgrid", "host": fake.base_url}))
        yield fake
    reset_breakers()


def run(coro):
    async def closing():
        try:
            return await coro
        finally:
            await aclose_clients()

    return asyncio.run(closing())


def test_watttime_gives_a_marginal_forecast_in_g_per_kwh_and_reuses_its_token(server):
    async def twice():
        hook = WattTimeHook("wt")
        now = datetime.now(UTC)
        return await hook.aseries(now, "ignored"), await hook.aseries(now, "ignored")

    first, second = run(twice())
    assert first.source == "watttime:co2_moer" and first.region == "CAISO_NORTH" and first.period_s == 300
    assert first.kind == "forecast" and 300 < first.values.max() < 600  # ~900 lbs/MWh is ~408 g/kWh
    assert server.count("/login") == 1 and len(second) == len(first)


def test_electricity_maps_without_forecast_access_plans_on_yesterday_marked_estimated(server):
    server.em_forecast_access = False
    series = run(ElectricityMapsHook("em").aseries(datetime.now(UTC), "DE"))
    assert series.estimated and series.source == "electricitymaps:persistence" and series.period_s == 3600
    calls = [r for r in server.requests if "carbon-intensity" in r.path]
    assert calls and all(r.query.get("disableCallerLookup") == "true" for r in calls)


def test_the_uk_api_needs_no_key_and_gives_half_hours(server):
    series = run(UKCarbonIntensityHook("uk").aseries(datetime.now(UTC), ""))
    assert series.period_s == 1800 and series.region == "GB" and len(series) >= 90


def test_a_failing_source_falls_back_to_the_next_and_says_which_failed_without_its_secret(server):
    server.fail("/v3/carbon-intensity", 500, times=None)
    refs = [SourceRef.connection("em", "DE"), SourceRef.connection("uk", "GB")]
    reading = load_first(refs, datetime.now(UTC))
    assert reading.served_by == "conn:uk" and reading.series.region == "GB" and reading.signal_kind == "average"
    [failure] = reading.failed_sources
    assert failure.startswith("conn:em: ") and "500" in failure and EM_TOKEN not in failure


def test_every_source_down_gives_no_series_and_every_failure(server):
    server.fail("/", 503, times=None)
    refs = [SourceRef.connection("em", "DE"), SourceRef.connection("uk", "GB")]
    reading = run(aload_first(refs, datetime.now(UTC)))
    assert reading.series is None and reading.served_by is None and reading.signal_kind is None
    assert [f.split(":")[1] for f in reading.failed_sources] == ["em", "uk"]
    assert all("503" in failure for failure in reading.failed_sources)


def test_history_for_accounting_comes_from_the_measured_series(server):
    series = run(WattTimeHook("wt").aseries(datetime.now(UTC), "", timedelta(hours=2)))
    assert series.first_epoch_s <= datetime.now(UTC).timestamp() - 7200 + 300


def test_connection_tests_say_yes_and_no_without_the_password(server, monkeypatch):
    assert WattTimeHook("wt").test_connection()[0]
    monkeypatch.setenv("AIRFLOW_CONN_BAD", json.dumps({
        "conn_type": "watttime", "login": WATTTIME_USERNAME, "password": "wrong-password-123",
        "host": server.base_url}))
    ok, message = WattTimeHook("bad").test_connection()
    assert not ok and "login" in message and "wrong-password-123" not in message and "<html>" not in message


def test_a_missing_or_foreign_source_connection_fails_the_task_at_its_start(server, monkeypatch):
    with pytest.raises(CarbonSettingsError, match="task 'tag': signal source connection 'nowhere' cannot be read"):
        checked_source_refs("tag", resolve("tag", {"source": "nowhere"}))
    monkeypatch.setenv("AIRFLOW_CONN_WEB", json.dumps({"conn_type": "http", "host": "example.org"}))
    with pytest.raises(CarbonSettingsError, match="task 'tag': connection 'web' has type 'http'"):
        checked_source_refs("tag", resolve("tag", {"source": "em", "fallback": "web"}))
    with pytest.raises(CarbonSettingsError, match="task 'tag': carbon setting region='XX': no bundled data"):
        checked_source_refs("tag", resolve("tag", {"region": "XX"}))
    assert [ref.name for ref in checked_source_refs("tag", resolve("tag", {"source": "em", "fallback": "uk, wt"}))] == [
        "conn:em", "conn:uk", "conn:wt"]


def test_the_trigger_of_a_task_on_watttime_holds_its_connection_id_and_no_secret(server, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "metrics.db")}))
    run = CarbonTaskRun.start(FakeTask(), {"ti": FakeTaskInstance()}, resolve("summarize", {"source": "wt"}))
    kwargs = run.trigger().serialize()[1]
    text = json.dumps(kwargs)
    assert kwargs["signals"] == [{"name": "conn:wt", "region": "DE", "replay": None,
                                  "forecaster": "seasonal"}]
    assert kwargs["task_settings"]["source"] == "wt"
    assert not [secret for secret in (WATTTIME_USERNAME, WATTTIME_PASSWORD, server.base_url) if secret in text]


def test_a_csv_connection_opens_as_its_file_with_its_own_region(server, monkeypatch, tmp_path):
    path = write_signal(tmp_path / "signal.csv", green_in_s=-60)
    monkeypatch.setenv("AIRFLOW_CONN_FILE", json.dumps({
        "conn_type": "carbon_csv", "extra": {"path": str(path), "region": "TEST", "replay": "false"}}))
    source = run(CarbonCsvHook("file").asource("DE"))
    assert isinstance(source, CsvFileSource) and (source.name, source.region, source.path) == (
        "conn:file", "TEST", str(path))
    assert source.replay is False and CarbonCsvHook("file").test_connection()[0]


@pytest.mark.parametrize(("task_forecaster", "extra", "used"), [
    (None, {}, "seasonal"),                                # [carbon]'s default
    (None, {"forecaster": "persistence"}, "persistence"),  # the connection's extra
    ("model", {"forecaster": "persistence"}, "seasonal"),  # the task's wins; 10 days are too few for model
])
def test_a_live_csv_of_measured_history_is_planned_on_with_a_forecast_made_from_it(
        server, monkeypatch, tmp_path, task_forecaster, extra, used):
    now = datetime.now(UTC)
    path = write_measured_history(tmp_path / "measured.csv", now)
    monkeypatch.setenv("AIRFLOW_CONN_LOGGER", json.dumps({
        "conn_type": "carbon_csv", "extra": {"path": str(path), "region": "DE", "replay": "false", **extra}}))
    settings = resolve("t", {"source": "logger", "region": "DE", "forecaster": task_forecaster})
    [ref] = checked_source_refs("t", settings)
    assert ref.forecaster == (task_forecaster or extra.get("forecaster") or "seasonal")

    until = now + timedelta(hours=8)
    reading = load_first([ref], now, until=until)
    assert reading.series.end_epoch_s >= until.timestamp()
    assert reading.series.source == f"{path}, then {used} forecast from its history"
    assert reading.upper is not None and len(reading.upper) == len(reading.series)
    plain = load_first([ref], now)  # without a horizon to reach, the file alone
    assert plain.series.source == str(path) and plain.series.end_epoch_s < until.timestamp() and plain.upper is None


def test_a_connection_that_names_an_unknown_forecaster_fails_the_task_at_its_start(server, monkeypatch, tmp_path):
    path = write_measured_history(tmp_path / "measured.csv", datetime.now(UTC), days=2)
    monkeypatch.setenv("AIRFLOW_CONN_LOGGER", json.dumps({
        "conn_type": "carbon_csv", "extra": {"path": str(path), "region": "DE", "forecaster": "prophet"}}))
    with pytest.raises(CarbonSettingsError, match="task 't': connection 'logger': extra 'forecaster': unknown "
                                                  "forecaster 'prophet'"):
        checked_source_refs("t", resolve("t", {"source": "logger", "region": "DE"}))
