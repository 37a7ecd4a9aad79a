"""The three web services as signal sources, against the loopback fake: a connection's fields in, a series out.

Also what the Airflow layer adds around them: a load reads its connection once, and the pool gives a
source the same client for the same credentials, and a new one when they change.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk import BaseHook

from airflow_carbon.hooks.sources import aload, load_first
from airflow_carbon.signals.services.sources import ElectricityMapsSource, UKCarbonIntensitySource, WattTimeSource
from airflow_carbon.signals.source import SourceRef, aopen
from tests.fakes.signal_server import EM_TOKEN, WATTTIME_PASSWORD, WATTTIME_USERNAME, FakeSignalServer
from tests.helpers import ConnectionReader, run_sources

HOUR_S = 3600


@pytest.fixture
def server():
    with FakeSignalServer() as fake:
        yield fake


def watttime(server: FakeSignalServer, **extra) -> ConnectionReader:
    return ConnectionReader("watttime", host=server.base_url, login=WATTTIME_USERNAME,
                            password=WATTTIME_PASSWORD, **{"region": "CAISO_NORTH", **extra})


def electricitymaps(server: FakeSignalServer, **extra) -> ConnectionReader:
    return ConnectionReader("electricitymaps", host=server.base_url, password=EM_TOKEN, **{"zone": "DE", **extra})


def read(reader: ConnectionReader, now: datetime, history: timedelta = timedelta(0), region: str = "DE"):
    """The source the reader's connection opens as, and its series."""

    async def opened():
        source = await aopen(SourceRef.connection("c", region), reader)
        return source, await source.aseries(now, history)

    return run_sources(opened())


def test_watttime_is_a_marginal_forecast_and_with_history_the_measured_past_before_it(server):
    now = datetime.now(UTC)
    source, forecast = read(watttime(server), now)
    assert isinstance(source, WattTimeSource) and source.signal_kind == "marginal" and source.forecasts
    assert forecast.source == "watttime:co2_moer" and forecast.region == "CAISO_NORTH" and forecast.kind == "forecast"
    assert forecast.first_epoch_s <= now.timestamp() < forecast.end_epoch_s
    assert server.count("/v3/historical") == 0

    _, combined = read(watttime(server), now, timedelta(hours=2))
    assert combined.first_epoch_s <= now.timestamp() - 2 * HOUR_S + 300
    assert combined.end_epoch_s == forecast.end_epoch_s and server.count("/v3/historical") == 1


def test_watttime_finds_its_region_from_a_location(server):
    _, series = read(watttime(server, region="", latitude="37.8", longitude="-122.3"), datetime.now(UTC))
    assert series.region == "CAISO_NORTH" and server.count("/v3/region-from-loc") == 1
    assert next(r for r in server.requests if r.path == "/v3/forecast").query["region"] == "CAISO_NORTH"


def test_electricity_maps_is_an_average_forecast_with_the_day_or_a_range_before_it(server):
    now = datetime.now(UTC)
    source, day = read(electricitymaps(server), now, timedelta(hours=6))
    assert isinstance(source, ElectricityMapsSource) and source.signal_kind == "average" and source.region == "DE"
    assert day.first_epoch_s <= now.timestamp() - 6 * HOUR_S and day.end_epoch_s > now.timestamp()
    assert server.count("/v3/carbon-intensity/history") == 1 and server.count("/v3/carbon-intensity/past-range") == 0

    _, longer = read(electricitymaps(server), now, timedelta(hours=48))
    assert longer.first_epoch_s <= now.timestamp() - 47 * HOUR_S
    assert server.count("/v3/carbon-intensity/past-range") >= 1


def test_electricity_maps_asks_by_location_when_the_connection_gives_one(server):
    read(electricitymaps(server, zone="", latitude="52.5", longitude="13.4"), datetime.now(UTC))
    forecast = next(r for r in server.requests if r.path == "/v3/carbon-intensity/forecast")
    assert forecast.query["lat"] == "52.5" and forecast.query["lon"] == "13.4" and "zone" not in forecast.query


def test_the_uk_api_gives_48_hours_from_the_start_of_the_history_asked_for(server):
    now = datetime.now(UTC)
    source, series = read(ConnectionReader("ukgrid", host=server.base_url), now, timedelta(hours=3), region="GB")
    assert isinstance(source, UKCarbonIntensitySource) and source.signal_kind == "average"
    assert series.period_s == 1800 and series.region == "GB" and len(series) == 96
    assert series.first_epoch_s <= now.timestamp() - 3 * HOUR_S < series.first_epoch_s + 1800


def test_the_uk_api_reads_a_region_by_postcode(server):
    read(ConnectionReader("ukgrid", host=server.base_url, postcode="RG10"), datetime.now(UTC), region="GB")
    [path] = {request.path for request in server.requests}
    assert path.startswith("/regional/intensity/") and path.endswith("/fw48h/postcode/RG10")


def test_each_connection_test_line_says_what_the_service_answered(server):
    async def describe_all() -> list[str]:
        lines = []
        for reader in (watttime(server), electricitymaps(server), ConnectionReader("ukgrid", host=server.base_url)):
            lines.append(await (await aopen(SourceRef.connection("c", "GB"), reader)).describe())
        return lines

    wt, em, uk = run_sources(describe_all())
    assert wt.startswith("CAISO_NORTH: signal index ") and em.startswith("DE: ") and "gCO2eq/kWh now" in em
    assert uk.startswith("GB: 96 values every 1800 s from ")


# ------------------------------------------------------------------------------------------ through Airflow


@pytest.fixture
def connections(server, monkeypatch):
    """The three services as Airflow connections (environment variables), and a count of the connection reads."""
    monkeypatch.setenv("AIRFLOW_CONN_WT", json.dumps({
        "conn_type": "watttime", "login": WATTTIME_USERNAME, "password": WATTTIME_PASSWORD, "host": server.base_url,
        "extra": {"latitude": "37.8", "longitude": "-122.3"}}))
    monkeypatch.setenv("AIRFLOW_CONN_EM", json.dumps({
        "conn_type": "electricitymaps", "password": EM_TOKEN, "host": server.base_url, "extra": {"zone": "DE"}}))
    monkeypatch.setenv("AIRFLOW_CONN_UK", json.dumps({"conn_type": "ukgrid", "host": server.base_url}))
    reads: list[str] = []
    real = BaseHook.aget_connection

    async def counted(conn_id: str):
        reads.append(conn_id)
        return await real(conn_id)

    monkeypatch.setattr(BaseHook, "aget_connection", staticmethod(counted))
    return reads


@pytest.mark.parametrize("conn_id", ["wt", "em", "uk"])
def test_a_load_reads_its_connection_once_even_with_history(connections, conn_id):
    series, signal_kind = run_sources(aload(SourceRef.connection(conn_id, "GB"), datetime.now(UTC),
                                            timedelta(hours=2)))
    assert len(series) > 0 and signal_kind in ("marginal", "average")
    assert connections == [conn_id]


def test_a_fallback_reads_each_connection_it_tries_once(connections, server):
    server.fail("/v3/carbon-intensity", 500, times=None)
    refs = [SourceRef.connection("em", "DE"), SourceRef.connection("uk", "GB"), SourceRef.connection("wt", "GB")]
    reading = load_first(refs, datetime.now(UTC), timedelta(hours=1))
    assert reading.served_by == "conn:uk" and connections == ["em", "uk"]


# ------------------------------------------------------------------------------------------ the pool


def test_the_same_credentials_share_a_client_and_its_token_and_changed_ones_get_a_new_one(server):
    ref = SourceRef.connection("wt", "CAISO_NORTH")
    now = datetime.now(UTC)

    async def scenario():
        first = await aopen(ref, watttime(server))
        await first.aseries(now, timedelta(0))
        again = await aopen(ref, watttime(server))
        await again.aseries(now, timedelta(0))
        server.watttime_password = "rotated-pass-N4"  # the password is changed at WattTime and in the connection
        rotated_reader = watttime(server)
        rotated_reader.password = "rotated-pass-N4"
        rotated = await aopen(ref, rotated_reader)
        await rotated.aseries(now, timedelta(0))
        other = await aopen(SourceRef.connection("wt_two", "CAISO_NORTH"), rotated_reader)
        return first.client, again.client, rotated.client, other.client

    first, again, rotated, other = run_sources(scenario())
    assert first is again and rotated is not first and other is not rotated
    assert server.count("/login") == 2  # one token for the first two loads, one for the new password


def test_clients_are_per_event_loop(server):
    ref = SourceRef.connection("uk", "GB")

    async def client():
        return (await aopen(ref, ConnectionReader("ukgrid", host=server.base_url))).client

    async def twice_in_one_loop():
        return await client(), await client()

    one, same = run_sources(twice_in_one_loop())
    assert one is same and run_sources(client()) is not one


def test_a_changed_host_gets_a_new_client(server):
    async def scenario():
        first = await aopen(SourceRef.connection("em", "DE"), electricitymaps(server))
        moved = electricitymaps(server)
        moved.host = server.base_url + "/"
        second = await aopen(SourceRef.connection("em", "DE"), moved)
        return first.client, second.client

    first, second = run_sources(scenario())
    assert first is not second


def test_sources_opened_at_once_on_one_loop_share_one_client(server):
    async def scenario():
        sources = await asyncio.gather(*(aopen(SourceRef.connection("em", "DE"), electricitymaps(server))
                                         for _ in range(5)))
        return {id(source.client) for source in sources}

    assert len(run_sources(scenario())) == 1
