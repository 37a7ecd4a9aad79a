"""Electricity Maps against the fake server: zones, lat/lon, forecasts, the free tier and its persistence forecast."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.signals.services.electricitymaps import ElectricityMapsClient
from airflow_carbon.signals.services.errors import AuthError, BadResponse, ForecastNotAvailable
from airflow_carbon.signals.services.http import HttpPolicy
from tests.fakes import MADE, FakeClock, RecordingSleep, run
from tests.fakes.signal_server import API_DIR, FakeSignalServer

NOW = datetime(2026, 6, 1, 12, 7, 30, tzinfo=UTC)
HOUR = int(datetime(2026, 6, 1, 12, tzinfo=UTC).timestamp())
HISTORY = json.loads((API_DIR / "electricitymaps/history_200.json").read_text())
FORECAST = json.loads((API_DIR / "electricitymaps/forecast_200.json").read_text())


@pytest.fixture
def server():
    with FakeSignalServer(now=NOW.timestamp) as fake:
        yield fake


def client_for(server: FakeSignalServer, *, token: str | None = None, clock: FakeClock | None = None,
               **options: str) -> ElectricityMapsClient:
    client = ElectricityMapsClient(token or server.em_token, base_url=server.base_url,
                                 policy=HttpPolicy(timeout_s=2.0, backoff_s=0.01), clock=clock or FakeClock(),
                                 sleep=RecordingSleep(), **options)
    MADE.append(client)
    return client


def test_latest_is_one_hourly_point(server):
    series = run(client_for(server).latest("DE"))
    assert len(series) == 1 and series.period_s == 3600 and series.first_epoch_s == HOUR
    assert series.values[0] == 232 and series.region == "DE" and series.kind == "measured"
    assert series.estimated  # isEstimated: true in the answer
    (request,) = server.requests
    assert request.path == "/v3/carbon-intensity/latest" and request.headers["auth-token"] == server.em_token
    assert request.query == {"zone": "DE", "disableCallerLookup": "true", "emissionFactorType": "lifecycle"}


def test_lat_lon_never_sends_a_zone_and_always_disables_caller_lookup(server):
    client = client_for(server)

    async def by_location():
        await client.latest(lat=52.52, lon=13.405)
        await client.history(lat=52.52, lon=13.405)
        return await client.forecast(lat=52.52, lon=13.405)

    assert run(by_location()).region == "DE"  # the zone the service resolved
    for request in server.requests:
        assert "zone" not in request.query and request.query["disableCallerLookup"] == "true"
        assert (request.query["lat"], request.query["lon"]) == ("52.52", "13.405")
    with pytest.raises(ValueError, match="not both"):
        run(client.latest("DE", lat=1.0, lon=2.0))
    with pytest.raises(ValueError, match="required"):
        run(client.latest())
    assert len(server.requests) == 3


def test_history_is_the_last_24_hours(server):
    series = run(client_for(server).history("DE"))
    assert len(series) == 24 and series.end_epoch_s == HOUR and series.kind == "measured"
    assert list(series.values) == [row["carbonIntensity"] for row in HISTORY["history"]]
    assert not series.estimated


def test_forecast_keeps_the_end_point(server):
    client = client_for(server)
    series = run(client.forecast("DE"))
    assert len(series) == 25 and series.first_epoch_s == HOUR and series.end_epoch_s == HOUR + 25 * 3600
    assert list(series.values) == [row["carbonIntensity"] for row in FORECAST["forecast"]]
    assert series.kind == "forecast" and series.source == "electricitymaps"
    assert len(run(client.forecast("DE", horizon_hours=6))) == 7
    assert server.requests[-1].query["horizonHours"] == "6"
    with pytest.raises(ValueError, match="horizon_hours"):
        run(client.forecast("DE", horizon_hours=12))
    assert server.count("/v3/carbon-intensity/forecast") == 2


def test_api_version_and_emission_factor_are_configurable(server):
    client = client_for(server, api_version="v4", emission_factor="direct")
    run(client.latest("DE"))
    assert server.requests[0].path == "/v4/carbon-intensity/latest"
    assert server.requests[0].query["emissionFactorType"] == "direct"
    with pytest.raises(ValueError):
        client_for(server, api_version="3")
    with pytest.raises(ValueError):
        client_for(server, emission_factor="marginal")


def test_free_tier_has_no_forecast(server):
    server.em_forecast_access = False
    client = client_for(server)
    with pytest.raises(ForecastNotAvailable) as caught:
        run(client.forecast("DE"))
    assert caught.value.status == 401 and not caught.value.retryable
    assert server.count("/v3/carbon-intensity/latest") == 1  # the same token reads latest: a plan limit
    with pytest.raises(ForecastNotAvailable):
        run(client.forecast("DE"))
    assert server.count("/v3/carbon-intensity/forecast") == 1  # remembered: no second refused request


def test_bad_token_is_an_auth_error_not_a_plan_limit(server):
    client = client_for(server, token="not-the-token-Z9")
    with pytest.raises(AuthError) as caught:
        run(client.forecast("DE"))
    assert not isinstance(caught.value, ForecastNotAvailable) and caught.value.status == 401
    assert "not-the-token-Z9" not in str(caught.value) and "not-the-token-Z9" not in repr(client)


def test_persistence_forecast_takes_the_same_hour_of_the_previous_day(server):
    server.em_forecast_access = False
    client = client_for(server)
    series = run(client.forecast_or_persistence("DE", now=NOW))
    history = run(client.history("DE"))
    assert series.estimated and series.source == "electricitymaps:persistence" and series.kind == "forecast"
    assert len(series) == 24 and series.period_s == 3600 and series.first_epoch_s == HOUR
    for when in series.times:
        assert series.at(when) == history.at(when - timedelta(days=1))
    assert list(series.values) == [row["carbonIntensity"] for row in HISTORY["history"]]


def test_paid_plan_gets_the_real_forecast(server):
    series = run(client_for(server).forecast_or_persistence("DE", horizon_hours=24, now=NOW))
    assert series.source == "electricitymaps" and len(series) == 25 and not series.estimated
    assert server.count("/v3/carbon-intensity/history") == 0


def test_past_range_in_chunks_of_at_most_10_days(server):
    start, end = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 26, tzinfo=UTC)
    series = run(client_for(server).past_range(start, end, "DE"))
    requests = [r for r in server.requests if r.path.endswith("/past-range")]
    assert len(requests) == 3
    spans = [datetime.fromisoformat(r.query["end"]) - datetime.fromisoformat(r.query["start"]) for r in requests]
    assert max(spans) <= timedelta(days=10) and sum(spans, timedelta()) == end - start
    assert len(series) == 25 * 24 and series.first_epoch_s == int(start.timestamp())
    assert series.kind == "measured" and series.region == "DE"


def history_answer() -> dict:
    body = copy.deepcopy(HISTORY)
    for row in body["history"]:
        row["datetime"] = row["datetime"].replace("2026-05-31", "2026-05-30").replace("2026-06-01", "2026-05-31")
    return body


def test_estimated_points_make_an_estimated_series(server):
    body = history_answer()
    body["history"][3]["isEstimated"] = True
    server.fail("/v3/carbon-intensity/history", 200, body=body)
    assert run(client_for(server).history("DE")).estimated


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b["history"][3].update(carbonIntensity=None), "history[3].carbonIntensity"),
    (lambda b: b["history"][3].update(carbonIntensity=-1), "history[3].carbonIntensity"),
    (lambda b: b["history"].pop(7), "history[7].datetime"),
    (lambda b: b["history"][2].update(isEstimated="maybe"), "history[2].isEstimated"),
    (lambda b: b.pop("history"), "history"),
])
def test_bad_shapes_name_the_field(server, mutate, field):
    body = history_answer()
    mutate(body)
    server.fail("/v3/carbon-intensity/history", 200, body=body)
    with pytest.raises(BadResponse) as caught:
        run(client_for(server).history("DE"))
    assert caught.value.field == field and field in str(caught.value)
