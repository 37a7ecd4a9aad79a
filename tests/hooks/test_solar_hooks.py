"""The solar hooks with Airflow's real connection lookup (environment variables) and a real HTTP server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.hooks.solar import ForecastSolarHook, SolarCsvHook
from airflow_carbon.hooks.sources import aopen_solar
from airflow_carbon.operators.runtime import checked_source_refs
from airflow_carbon.settings import CarbonSettingsError, resolve
from airflow_carbon.signals.services.http import reset_breakers
from airflow_carbon.signals.services.sources import ForecastSolarSource
from airflow_carbon.signals.solar import CsvSolarSource
from airflow_carbon.signals.source import SourceError, SourceRef
from tests.fakes.forecast_solar import FS_API_KEY, FakeForecastSolar
from tests.fakes.signal_server import WATTTIME_PASSWORD, WATTTIME_USERNAME
from tests.helpers import run_sources

PLANE = {"latitude": 52.52, "longitude": 13.4, "declination": 30, "azimuth": 0, "kwp": 5}
SEED_ROWS = "timestamp,solar_kw_available\n" + "".join(f"2024-06-01T{h:02d}:00:00Z,{max(0, 6 - abs(h - 12))}\n"
                                                       for h in range(24))


@pytest.fixture
def server(monkeypatch):
    reset_breakers()
    with FakeForecastSolar() as fake:
        monkeypatch.setenv("AIRFLOW_CONN_ROOF", json.dumps({
            "conn_type": "forecast_solar", "password": FS_API_KEY, "host": fake.base_url, "extra": PLANE}))
        monkeypatch.setenv("AIRFLOW_CONN_WT", json.dumps({
            "conn_type": "watttime", "login": WATTTIME_USERNAME, "password": WATTTIME_PASSWORD,
            "extra": {"region": "CAISO_NORTH"}}))
        yield fake
    reset_breakers()


def csv_connection(monkeypatch, conn_id: str, **extra) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "carbon_solar_csv",
                                                                      "extra": extra}))


def test_the_forecast_solar_hook_opens_its_connection_as_a_solar_source(server):
    hook = ForecastSolarHook("roof")
    source = run_sources(hook.asource())
    assert isinstance(source, ForecastSolarSource) and source.site == "roof" and source.peak_kw == 5.0
    series = run_sources(hook.aforecast(datetime.now(UTC)))
    assert series.region == "roof" and series.unit == "kW" and series.period_s == 900
    assert ForecastSolarHook().conn_id == "forecast_solar_default" and hook.forecast_solar_conn_id == "roof"


def test_its_connection_test_shows_the_forecasts_peak_and_span_without_the_key(server):
    ok, message = ForecastSolarHook("roof").test_connection()
    assert ok and message.startswith("roof: peak ") and "values every 900 s from " in message
    assert "calls left this period" in message and FS_API_KEY not in message


def test_a_refused_key_fails_the_connection_test_without_quoting_it(server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BAD", json.dumps({
        "conn_type": "forecast_solar", "password": "WrongKey01234567", "host": server.base_url, "extra": PLANE}))
    ok, message = ForecastSolarHook("bad").test_connection()
    assert not ok and "HTTP 401" in message and "WrongKey01234567" not in message


def test_a_bad_extra_fails_the_connection_test_naming_the_field(server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TILTED", json.dumps({
        "conn_type": "forecast_solar", "host": server.base_url, "extra": {**PLANE, "azimuth": 270}}))
    ok, message = ForecastSolarHook("tilted").test_connection()
    assert not ok and message == "connection 'tilted': extra 'azimuth' must be a number from -180 to 180, got 270"
    assert not server.requests


def test_the_csv_hook_reads_its_files_and_its_connection_test_reads_the_log(monkeypatch, tmp_path):
    forecast = tmp_path / "forecast.csv"
    forecast.write_text(SEED_ROWS)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    log = tmp_path / "log.csv"
    log.write_text("timestamp,solar_kw\n" + "".join(
        f"{(now - timedelta(minutes=m)).isoformat()},0.5\n" for m in range(90, 0, -1)))
    csv_connection(monkeypatch, "barn", path=str(forecast), site="barn-roof", measured_path=str(log))
    source = run_sources(SolarCsvHook("barn").asource())
    assert isinstance(source, CsvSolarSource) and source.site == "barn-roof" and source.measures
    ok, message = SolarCsvHook("barn").test_connection()
    assert ok and message.startswith("barn-roof: peak 6.00 kW at ") and "; measured: " in message
    assert SolarCsvHook().conn_id == "carbon_solar_csv_default"


def test_a_bad_file_fails_the_csv_connection_test_naming_file_and_line(monkeypatch, tmp_path):
    forecast = tmp_path / "forecast.csv"
    forecast.write_text(SEED_ROWS.replace(",6\n", ",-6\n"))
    csv_connection(monkeypatch, "broken", path=str(forecast))
    ok, message = SolarCsvHook("broken").test_connection()
    assert not ok and message.startswith(f"{forecast}, line 14, column 'solar_kw_available': negative value")


def test_a_grid_connection_is_refused_as_a_solar_source_and_a_solar_one_as_a_grid_source(server):
    with pytest.raises(SourceError, match=r"connection 'wt' has type 'watttime', which is not a solar source "
                                          r"\(carbon_solar_csv, forecast_solar\)"):
        run_sources(aopen_solar(SourceRef.connection("wt", "")))
    with pytest.raises(CarbonSettingsError, match=r"task 'tag': connection 'roof' has type 'forecast_solar', which is "
                                                  r"not a carbon signal source \(carbon_csv, electricitymaps, ukgrid, "
                                                  r"watttime\); it is a solar source"):
        checked_source_refs("tag", resolve("tag", {"source": "roof"}))
    assert not server.requests
