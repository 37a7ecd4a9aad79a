"""Forecast.Solar against the loopback fake: an even kW forecast from irregular points, faults, the key kept secret.

The fake and the client share one fixed wall clock, so the rate limit's waits are exact and no test reads the time.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from airflow_carbon.signals.services.errors import AuthError, BadResponse, SignalServiceError
from airflow_carbon.signals.services.forecastsolar import ForecastSolarClient, parse_estimate, plane_path
from airflow_carbon.signals.services.http import HttpPolicy
from airflow_carbon.signals.services.sources import ForecastSolarSource
from airflow_carbon.signals.source import SourceError, SourceRef, aopen
from tests.fakes import MADE, FakeClock, RecordingSleep, run
from tests.fakes.forecast_solar import FS_API_KEY, FakeForecastSolar
from tests.helpers import ConnectionReader, run_sources

NOW = datetime(2026, 6, 1, 10, 7, 30, tzinfo=UTC)
BERLIN_MIDNIGHT = datetime(2026, 5, 31, 22, tzinfo=UTC)  # 2026-06-01 00:00 in Europe/Berlin
PLANE = (52.52, 13.4, 30, 0, 5.0)
PATH = "/estimate/52.5200/13.4000/30/0/5"


@pytest.fixture
def wall():
    return FakeClock(NOW.timestamp())


@pytest.fixture
def server(wall):
    with FakeForecastSolar(now=wall) as fake:
        yield fake


def client_for(server: FakeForecastSolar, wall: FakeClock, key: str | None = FS_API_KEY,
               **policy) -> ForecastSolarClient:
    client = ForecastSolarClient(key, base_url=server.base_url, wall=wall, sleep=RecordingSleep(),
                                 policy=HttpPolicy(**{"timeout_s": 5.0, "backoff_s": 0.01, **policy}))
    MADE.append(client)
    return client


def body(watts: dict, timezone: str | None = "UTC") -> dict:
    info = {"latitude": 52.52, "longitude": 13.4} | ({"timezone": timezone} if timezone else {})
    return {"result": {"watts": watts}, "message": {"code": 0, "type": "success", "text": "", "info": info}}


# ------------------------------------------------------------------------------------------ the answer


def test_the_estimate_is_an_even_kw_forecast_over_the_sites_local_days_with_night_at_zero(server, wall):
    client = client_for(server, wall)
    series = run(client.estimate(*PLANE))
    [request] = server.requests
    assert request.path == f"/{FS_API_KEY}{PATH}" and request.query == {"time": "utc"}
    assert request.headers["accept"] == "application/json"
    assert (series.unit, series.kind, series.period_s, series.source, series.region) == (
        "kW", "forecast", 900, "forecastsolar", "52.5200,13.4000")
    assert series.first_epoch_s == BERLIN_MIDNIGHT.timestamp() and len(series) == 2 * 96  # today and tomorrow
    assert series.at(datetime(2026, 6, 1, 1, tzinfo=UTC)) == 0  # 03:00 in Berlin: night, known to be 0
    assert 3.0 < series.values.max() <= 4.0  # the fake's clear sky: 80 % of 5 kWp
    assert client.ratelimit == {"zone": "IP 127.0.0.1", "period": 3600, "limit": 12, "remaining": 11}


def test_resampling_keeps_the_energy_of_the_answer(server, wall):
    """The mean of the straight lines between the points is their integral: the answer's own watt_hours_day."""
    series = run(client_for(server, wall).estimate(*PLANE))
    answered = server.handle("GET", f"{PATH}?time=utc", {})[1]["result"]["watt_hours_day"]
    per_day_kwh = series.values.reshape(2, 96).sum(axis=1) * 0.25
    assert per_day_kwh == pytest.approx([wh / 1000 for wh in answered.values()], rel=1e-3)


def test_points_are_joined_by_straight_lines_and_each_quarter_hour_is_their_mean():
    series = parse_estimate(body({"2026-06-01T06:00:00+00:00": 0, "2026-06-01T07:00:00+00:00": 1000,
                                  "2026-06-01T08:00:00+00:00": 0}), PATH, "site")
    assert series.first_epoch_s == datetime(2026, 6, 1, tzinfo=UTC).timestamp() and len(series) == 96
    six = 6 * 4
    assert list(series.values[six:six + 8]) == pytest.approx([0.125, 0.375, 0.625, 0.875, 0.875, 0.625, 0.375,
                                                              0.125])
    assert series.values[:six].sum() == series.values[six + 8:].sum() == 0
    assert series.values.sum() * 0.25 == pytest.approx(1.0)  # 1 kW peak, a 2 h triangle: 1 kWh


def test_a_long_gap_between_points_is_a_night_not_a_line():
    """Without sunrise and sunset points (``no_sun``), the evening's last and the morning's first are not joined."""
    series = parse_estimate(body({"2026-06-01T19:00:00+00:00": 500, "2026-06-01T20:00:00+00:00": 500,
                                  "2026-06-02T04:00:00+00:00": 500, "2026-06-02T05:00:00+00:00": 500}), PATH, "site")
    assert series.at(datetime(2026, 6, 1, 19, 30, tzinfo=UTC)) == 0.5
    assert series.at(datetime(2026, 6, 2, 0, tzinfo=UTC)) == 0
    assert len(series) == 2 * 96


@pytest.mark.parametrize(("watts", "timezone"), [
    ({"2026-06-01 08:00:00": 0, "2026-06-01 09:00:00": 1000, "2026-06-01 10:00:00": 0}, "Europe/Berlin"),
    ({"2026-06-01T08:00:00+02:00": 0, "2026-06-01T09:00:00+02:00": 1000, "2026-06-01T10:00:00+02:00": 0},
     "Europe/Berlin"),
    ({str(int(datetime(2026, 6, 1, 6 + h, tzinfo=UTC).timestamp())): w for h, w in ((0, 0), (1, 1000), (2, 0))},
     "Europe/Berlin"),
])
def test_every_documented_time_format_reads_as_the_same_instants(watts, timezone):
    series = parse_estimate(body(watts, timezone), PATH, "site")
    assert series.at(datetime(2026, 6, 1, 6, 45, tzinfo=UTC)) == pytest.approx(0.875)
    assert series.first_epoch_s == BERLIN_MIDNIGHT.timestamp()  # local times are read in the site's zone


@pytest.mark.parametrize(("answer", "field"), [
    ({"result": None, "message": {}}, "result"),
    (body({"2026-06-01T06:00:00Z": 1}, timezone=None), "message.info.timezone"),
    (body({"2026-06-01T06:00:00Z": 1}, timezone="Mars/Olympus"), "message.info.timezone"),
    (body({}), "result.watts"),
    (body({"2026-06-01T06:00:00Z": -5}), "result.watts['2026-06-01T06:00:00Z']"),
    (body({"2026-06-01T06:00:00Z": True}), "result.watts['2026-06-01T06:00:00Z']"),
    (body({"sunrise": 0}), "result.watts['sunrise']"),
    (body({"2026-06-01T06:00:00Z": 0, "2026-06-01T08:00:00+02:00": 1}), "result.watts"),
    ({"result": {"watts": {"2026-06-01T06:00:00Z": 1}}}, "message"),
])
def test_an_answer_not_in_the_documented_shape_is_refused_naming_the_field(answer, field):
    with pytest.raises(BadResponse) as caught:
        parse_estimate(answer, PATH, "site")
    assert caught.value.field == field and str(caught.value).startswith(f"forecastsolar: GET {PATH}: {field} ")


@pytest.mark.parametrize("plane", [(91, 13, 30, 0, 5), (52, 181, 30, 0, 5), (52, 13, 95, 0, 5), (52, 13, 30, 270, 5),
                                   (52, 13, 30, 0, 0), (52, 13, 30, 0, float("nan"))])
def test_a_plane_out_of_range_is_refused_before_any_request(plane):
    with pytest.raises(ValueError, match=r"forecastsolar: .* must be a number"):
        plane_path(*plane)


def test_the_public_api_needs_no_key(server, wall):
    run(client_for(server, wall, key=None).estimate(*PLANE))
    assert [request.path for request in server.requests] == [PATH]


def test_sunny_windows_say_where_the_sun_is_whatever_the_hour(server, wall):
    server.sunny(NOW + timedelta(hours=1), NOW + timedelta(hours=3), kw=3.0)
    series = run(client_for(server, wall).estimate(*PLANE))
    assert series.at(NOW) == 0 and series.at(NOW + timedelta(hours=2)) == 3.0
    assert series.at(NOW + timedelta(hours=5)) == 0


# ------------------------------------------------------------------------------------------ faults


def test_a_server_error_is_retried(server, wall):
    server.fail(500, times=1)
    client = client_for(server, wall)
    assert len(run(client.estimate(*PLANE))) == 192
    assert client.requests == 2 and len(client.delays) == 1


def test_a_service_that_stays_down_is_a_retryable_error_without_the_key(server, wall):
    server.fail(503, times=None)
    client = client_for(server, wall)
    with pytest.raises(SignalServiceError) as caught:
        run(client.estimate(*PLANE))
    assert caught.value.retryable and caught.value.status == 503 and client.requests == 3
    assert str(caught.value) == f"forecastsolar: GET {PATH} -> HTTP 503: Service Unavailable (after 3 attempts)"


def test_a_429_that_asks_for_a_short_wait_is_waited_exactly(server, wall):
    server.rate_limited(20)
    client = client_for(server, wall)
    assert len(run(client.estimate(*PLANE))) == 192
    assert client.delays == [20.0] and client.requests == 2


def test_a_429_that_asks_for_a_long_wait_fails_at_once_and_no_request_is_sent_before_it(server, wall):
    server.rate_limited(3600, times=None)
    client = client_for(server, wall)
    with pytest.raises(SignalServiceError) as caught:
        run(client.estimate(*PLANE))
    assert caught.value.retryable and caught.value.status == 429 and client.requests == 1 and not client.delays
    assert str(caught.value) == (f"forecastsolar: GET {PATH} -> HTTP 429: rate limit reached; no call before "
                                 "2026-06-01T11:07:30+00:00")
    with pytest.raises(SignalServiceError, match="rate limited until 2026-06-01T11:07:30"):
        run(client.estimate(*PLANE))
    assert server.count() == 1  # the ban is not extended
    server.clear_faults()
    wall.advance(3600)
    assert len(run(client.estimate(*PLANE))) == 192 and server.count() == 2


@pytest.mark.parametrize(("key", "error", "status"), [("WrongKey01234567", AuthError, 401),
                                                      ("TooLongKey0123456789", SignalServiceError, 400)])
def test_a_refused_key_is_named_by_status_never_quoted(server, wall, caplog, key, error, status):
    client = client_for(server, wall, key=key)
    httpx_log = logging.getLogger("httpx")  # whatever logging config an earlier test left, hear httpx itself
    httpx_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="httpx"), pytest.raises(error) as caught:
            run(client.estimate(*PLANE))
    finally:
        httpx_log.removeHandler(caplog.handler)
    assert caught.value.status == status and not caught.value.retryable and client.requests == 1
    assert server.requests[0].path == f"/{key}{PATH}"  # it was sent ...
    assert "HTTP Request: GET" in caplog.text  # ... httpx logged the request ...
    for text in (str(caught.value), caught.value.path, caplog.text, repr(client), client.breaker.key):
        assert key not in text  # ... and nothing shows the key


def test_a_key_that_cannot_be_one_is_refused_without_quoting_it():
    with pytest.raises(ValueError) as caught:
        ForecastSolarClient("secret/../../x")
    assert "secret" not in str(caught.value) and "letters and digits" in str(caught.value)


def test_a_slow_answer_times_out(server, wall):
    server.slow(2.0)
    client = client_for(server, wall, timeout_s=0.2, attempts=1)
    with pytest.raises(SignalServiceError, match=r"timed out after 0\.2 s") as caught:
        run(client.estimate(*PLANE))
    assert caught.value.retryable


def test_a_malformed_body_is_a_bad_response(server, wall):
    server.malformed()
    with pytest.raises(BadResponse, match="the body is not valid JSON"):
        run(client_for(server, wall, attempts=1).estimate(*PLANE))


# ------------------------------------------------------------------------------------------ as a solar source


def connection(server: FakeForecastSolar, key: str | None = FS_API_KEY, **extra) -> ConnectionReader:
    plane = {"latitude": "52.52", "longitude": 13.4, "declination": 30, "azimuth": "0", "kwp": "5"}
    return ConnectionReader("forecast_solar", host=server.base_url, password=key, **{**plane, **extra})


def open_solar(reader: ConnectionReader, conn_id: str = "roof") -> ForecastSolarSource:
    return run_sources(aopen(SourceRef.connection(conn_id, ""), reader, quantity="solar"))


def test_a_forecast_solar_connection_is_a_solar_source_of_its_site(server):
    source = open_solar(connection(server))
    assert isinstance(source, ForecastSolarSource) and (source.name, source.site, source.peak_kw) == (
        "conn:roof", "roof", 5.0)
    assert source.min_refresh_s == 900.0 and not source.measures and source.quantity == "solar"
    series = run_sources(source.aforecast(NOW, timedelta(hours=24)))
    assert series.region == "roof" and series.first_epoch_s <= NOW.timestamp()
    assert series.end_epoch_s >= (NOW + timedelta(hours=24)).timestamp()
    assert server.requests[0].path == f"/{FS_API_KEY}{PATH}"


def test_the_site_may_be_named_and_the_logger_file_read_for_measured_output(server, tmp_path):
    log = tmp_path / "roof.csv"
    log.write_text("timestamp,solar_kw\n2026-06-01T10:00:00Z,1.2\n2026-06-01T10:05:00Z,1.4\n")
    source = open_solar(connection(server, site="depot", measured_path=str(log)))
    assert source.site == "depot" and source.measures
    measured = run_sources(source.ameasured(NOW - timedelta(minutes=10), NOW))
    assert list(measured.values) == [1.2, 1.4] and measured.region == "depot" and measured.kind == "measured"


def test_the_connection_test_line_says_peak_span_and_calls_left(server):
    line = run_sources(open_solar(connection(server)).describe())
    assert line.startswith("roof: peak ") and "values every 900 s from " in line
    assert line.endswith("; 11 of 12 calls left this period") and FS_API_KEY not in line


def test_the_same_key_shares_a_client_and_a_new_key_gets_a_new_one(server):
    async def scenario():
        first = await aopen(SourceRef.connection("roof", ""), connection(server), quantity="solar")
        again = await aopen(SourceRef.connection("roof", ""), connection(server), quantity="solar")
        rotated = await aopen(SourceRef.connection("roof", ""), connection(server, key="OtherKey01234567"),
                              quantity="solar")
        return first.client, again.client, rotated.client

    first, again, rotated = run_sources(scenario())
    assert first is again and rotated is not first


@pytest.mark.parametrize(("extra", "message"), [
    ({"latitude": None}, r"connection 'roof' has no 'latitude' in its extra"),
    ({"latitude": "91"}, r"connection 'roof': extra 'latitude' must be a number from -90 to 90, got '91'"),
    ({"longitude": "east"}, r"extra 'longitude' must be a number from -180 to 180, got 'east'"),
    ({"declination": -5}, r"extra 'declination' must be a number from 0 to 90, got -5"),
    ({"azimuth": 270}, r"extra 'azimuth' must be a number from -180 to 180, got 270"),
    ({"kwp": 0}, r"extra 'kwp' must be a number above 0, got 0"),
    ({"kwp": True}, r"extra 'kwp' must be a number above 0, got True"),
    ({"site": 7}, r"extra 'site' must be text, got 7"),
])
def test_a_bad_extra_is_refused_naming_the_connection_and_field(server, extra, message):
    with pytest.raises(SourceError, match=message):
        open_solar(connection(server, **extra))


def test_a_malformed_key_in_the_connection_is_refused_naming_the_connection_not_the_key(server):
    with pytest.raises(SourceError, match=r"connection 'roof': forecastsolar: the API key should be letters") as caught:
        open_solar(connection(server, key="my key/with slash"))
    assert "my key" not in str(caught.value)


def test_solar_and_grid_connections_are_refused_as_each_other(server):
    with pytest.raises(SourceError, match=r"connection 'roof' has type 'forecast_solar', which is not a carbon signal "
                                          r"source \(carbon_csv, electricitymaps, ukgrid, watttime\); it is a solar"):
        run_sources(aopen(SourceRef.connection("roof", "DE"), connection(server)))
    with pytest.raises(SourceError, match=r"connection 'wt' has type 'watttime', which is not a solar source "
                                          r"\(carbon_solar_csv, forecast_solar\); it is a carbon signal source"):
        run_sources(aopen(SourceRef.connection("wt", "DE"), ConnectionReader("watttime", region="CAISO_NORTH"),
                          quantity="solar"))
    assert not server.requests


def test_points_a_minute_apart_keep_a_minute_grid_and_hourly_points_with_sunrise_between_keep_15_minutes():
    from airflow_carbon.signals.services.forecastsolar import period_for

    minutes = 1_780_000_000 - 1_780_000_000 % 86400 + 60 * np.arange(600)
    assert period_for(minutes) == 60
    hours = 1_780_000_000 - 1_780_000_000 % 86400 + 3600 * np.arange(5, 20)
    assert period_for(np.concatenate(([hours[0] - 120], hours, [hours[-1] + 300]))) == 900
