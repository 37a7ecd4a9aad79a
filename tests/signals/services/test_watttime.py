"""WattTime v3 against the fake server: login and tokens, forecasts in g/kWh, history in chunks, failures."""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.signals.services.errors import AuthError, BadResponse, ScopeError, SignalServiceError
from airflow_carbon.signals.services.http import HttpPolicy
from airflow_carbon.signals.services.watttime import SIGNAL_DESCRIPTIONS, WattTimeClient
from tests.fakes import MADE, FakeClock, RecordingSleep, run
from tests.fakes.signal_server import API_DIR, FakeSignalServer

NOW = datetime(2026, 6, 1, 12, 7, 30, tzinfo=UTC)
PERIOD_START = int(datetime(2026, 6, 1, 12, 5, tzinfo=UTC).timestamp())
TEMPLATE = json.loads((API_DIR / "watttime/forecast_200.json").read_text())


@pytest.fixture
def server():
    with FakeSignalServer(now=NOW.timestamp) as fake:
        yield fake


def client_for(server: FakeSignalServer, *, password: str | None = None, clock: FakeClock | None = None,
               sleep: RecordingSleep | None = None, **policy: float) -> WattTimeClient:
    settings = {"timeout_s": 2.0, "attempts": 3, "backoff_s": 0.01, **policy}
    client = WattTimeClient(server.watttime_username, password or server.watttime_password, base_url=server.base_url,
                          policy=HttpPolicy(**settings), clock=clock or FakeClock(), sleep=sleep or RecordingSleep())
    MADE.append(client)
    return client


def test_forecast_in_grams_per_kwh_from_the_current_period(server):
    client = client_for(server)
    series = run(client.forecast("CAISO_NORTH"))
    assert len(series) == 72 * 12 and series.period_s == 300
    assert series.first_epoch_s == PERIOD_START and series.end_epoch_s == PERIOD_START + 72 * 3600
    assert series.values[0] == pytest.approx(894.7 * 0.453592)  # the first example point, lbs/MWh -> g/kWh
    assert series.values[1] == pytest.approx(TEMPLATE["data"][1]["value"] * 0.453592)
    assert (series.kind, series.region, series.source, series.unit) == (
        "forecast", "CAISO_NORTH", "watttime:co2_moer", "gCO2eq/kWh")
    assert SIGNAL_DESCRIPTIONS[series.source.split(":")[1]] == "marginal"
    request = next(r for r in server.requests if r.path == "/v3/forecast")
    assert request.query == {"region": "CAISO_NORTH", "signal_type": "co2_moer", "horizon_hours": "72"}
    assert request.headers["authorization"].startswith("Bearer ")
    assert server.watttime_password not in json.dumps([r.query for r in server.requests])


def test_horizon_is_validated_before_any_request(server):
    client = client_for(server)
    for horizon in (-1, 73, 2.5):
        with pytest.raises(ValueError, match="horizon_hours"):
            run(client.forecast("CAISO_NORTH", horizon_hours=horizon))
    with pytest.raises(ValueError, match="signal_type"):
        run(client.forecast("CAISO_NORTH", signal_type="health_damage"))
    assert server.requests == [] and client.requests == 0
    assert len(run(client.forecast("CAISO_NORTH", horizon_hours=0))) == 1


def test_one_login_for_many_calls(server):
    client = client_for(server)

    async def many():
        for _ in range(3):
            await client.forecast("CAISO_NORTH", horizon_hours=1)
        await client.signal_index("CAISO_NORTH")

    run(many())
    assert server.count("/login") == 1 and client.logins == 1 and server.count("/v3/") == 4


def test_token_renewed_before_its_30_minutes_end(server):
    clock = FakeClock()
    client = client_for(server, clock=clock)
    run(client.forecast("CAISO_NORTH", horizon_hours=1))
    clock.advance(25 * 60)
    run(client.forecast("CAISO_NORTH", horizon_hours=1))
    assert server.count("/login") == 1
    clock.advance(5 * 60)
    run(client.forecast("CAISO_NORTH", horizon_hours=1))
    assert server.count("/login") == 2 and server.count("/v3/forecast") == 3  # renewed without a refusal


def test_token_refused_mid_wait_means_exactly_one_new_login(server):
    client = client_for(server)
    run(client.forecast("CAISO_NORTH", horizon_hours=1))
    server.expire_tokens()
    series = run(client.forecast("CAISO_NORTH", horizon_hours=1))
    assert len(series) == 12
    assert server.count("/login") == 2 and server.count("/v3/forecast") == 3  # ok, refused, retried


def test_token_refused_again_after_relogin_is_an_auth_error(server):
    server.fail("/v3/forecast", 401, times=None)
    client = client_for(server)
    with pytest.raises(AuthError) as caught:
        run(client.forecast("CAISO_NORTH"))
    assert caught.value.status == 401 and "/v3/forecast" in str(caught.value)
    assert server.count("/login") == 2 and server.count("/v3/forecast") == 2


def test_bad_credentials_never_echo_the_password_or_the_html(server, caplog):
    caplog.set_level(logging.DEBUG)
    client = client_for(server, password="wrong-password-XYZ")
    with pytest.raises(AuthError) as caught:
        run(client.forecast("CAISO_NORTH"))
    error = caught.value
    assert str(error) == "watttime: login refused (403)" and error.status == 403 and not error.retryable
    for text in (str(error), repr(error), repr(client), caplog.text):
        assert "wrong-password-XYZ" not in text and "nginx" not in text and "<html" not in text
    assert error.__cause__ is None and error.__suppress_context__
    assert server.count("/login") == 1 and server.count("/v3/") == 0


def test_server_errors_then_success(server):
    server.fail("/v3/forecast", 503, times=2)
    client = client_for(server)
    assert len(run(client.forecast("CAISO_NORTH", horizon_hours=1))) == 12
    assert server.count("/v3/forecast") == 3 and client.requests == 4  # one login, three tries


def test_rate_limited_waits_for_retry_after(server):
    server.fail("/v3/forecast", 429, times=1, headers={"Retry-After": "1"})
    sleep = RecordingSleep()
    client = client_for(server, sleep=sleep)
    run(client.forecast("CAISO_NORTH", horizon_hours=1))
    assert sleep.calls == [1.0] and server.count("/v3/forecast") == 2


def test_slow_answer_times_out_is_retried_then_fails(server):
    server.slow("/v3/forecast", 1.5, times=None)
    client = client_for(server, timeout_s=0.2, attempts=2)
    with pytest.raises(SignalServiceError) as caught:
        run(client.forecast("CAISO_NORTH"))
    assert caught.value.retryable and "timed out" in str(caught.value)
    assert server.count("/v3/forecast") == 2


def test_malformed_json_is_a_bad_response(server):
    server.malformed("/v3/forecast")
    with pytest.raises(BadResponse):
        run(client_for(server).forecast("CAISO_NORTH"))
    assert server.count("/v3/forecast") == 1


def test_region_out_of_scope(server):
    client = client_for(server)
    with pytest.raises(ScopeError) as caught:
        run(client.forecast("PJM_DC"))
    assert caught.value.status == 400 and not caught.value.retryable and "/v3/forecast" in str(caught.value)
    assert server.count("/v3/forecast") == 1 and server.count("/login") == 1


def test_unexpected_units_name_meta_units(server):
    server.watttime_units = "kg_co2_per_mwh"
    with pytest.raises(BadResponse) as caught:
        run(client_for(server).forecast("CAISO_NORTH"))
    assert caught.value.field == "meta.units" and "meta.units" in str(caught.value)
    assert "kg_co2_per_mwh" in str(caught.value)


def test_forecast_ending_early_is_kept_and_an_empty_one_refused(server, caplog):
    server.truncate("/v3/forecast", 10)
    client = client_for(server)
    series = run(client.forecast("CAISO_NORTH", horizon_hours=24))
    assert len(series) == 10 and series.end_epoch_s == PERIOD_START + 10 * 300
    assert "covers 0.8 h of the 24 h" in caplog.text
    server.truncate("/v3/forecast", 0)
    with pytest.raises(BadResponse) as caught:
        run(client.forecast("CAISO_NORTH"))
    assert caught.value.field == "data"


def answer(**changes) -> dict:
    body = copy.deepcopy(TEMPLATE)
    body["data"] = body["data"][:12]
    body.update(changes)
    return body


def test_warnings_as_strings_or_objects_are_logged(server, caplog):
    body = answer()
    body["meta"]["warnings"] = ["plain warning text", {"type": "EST_ONLY", "message": "object warning text"}]
    server.fail("/v3/forecast", 200, body=body)
    with caplog.at_level(logging.WARNING):
        assert len(run(client_for(server).forecast("CAISO_NORTH", horizon_hours=1))) == 12
    assert "plain warning text" in caplog.text and "EST_ONLY: object warning text" in caplog.text


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b["data"].pop(5), "data[5].point_time"),  # a gap
    (lambda b: b["data"][2].update(value=-3), "data[2].value"),
    (lambda b: b["data"][2].update(value=None), "data[2].value"),
    (lambda b: b["data"][4].pop("point_time"), "data[4].point_time"),
    (lambda b: b["data"][4].update(point_time="yesterday"), "data[4].point_time"),
    (lambda b: b.pop("meta"), "meta"),
    (lambda b: b.update(data={"point_time": 1}), "data"),
    (lambda b: b["meta"].update(warnings=[3]), "meta.warnings[0]"),
])
def test_bad_shapes_name_the_field(server, mutate, field):
    body = answer()
    mutate(body)
    server.fail("/v3/forecast", 200, body=body)
    with pytest.raises(BadResponse) as caught:
        run(client_for(server).forecast("CAISO_NORTH", horizon_hours=1))
    assert caught.value.field == field and field in str(caught.value)


def test_historical_in_chunks_of_at_most_30_days(server):
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)  # 61 days
    series = run(client_for(server).historical("CAISO_NORTH", start, end))
    requests = [r for r in server.requests if r.path == "/v3/historical"]
    assert len(requests) == 3
    spans = [datetime.fromisoformat(r.query["end"]) - datetime.fromisoformat(r.query["start"]) for r in requests]
    assert all(span <= timedelta(days=30) for span in spans) and sum(spans, timedelta()) == end - start
    assert series.kind == "measured" and series.period_s == 300 and series.source == "watttime:co2_moer"
    assert series.first_epoch_s == int(start.timestamp()) and len(series) == 61 * 288 + 1  # the range is inclusive
    with pytest.raises(ValueError, match="no timezone"):
        run(client_for(server).historical("CAISO_NORTH", datetime(2026, 3, 1), end))


def test_region_from_location(server):
    client = client_for(server)
    assert run(client.region_from_loc(37.8, -122.3)) == "CAISO_NORTH"
    with pytest.raises(ScopeError) as caught:
        run(client.region_from_loc(0.0, 0.0))
    assert "region-from-loc" in str(caught.value)
    request = [r for r in server.requests if r.path == "/v3/region-from-loc"][-1]
    assert request.query == {"latitude": "0.0", "longitude": "0.0", "signal_type": "co2_moer"}


def test_signal_index(server):
    assert run(client_for(server).signal_index("CAISO_NORTH")) == 96.0
