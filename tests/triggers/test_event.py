"""The event a carbon-aware task resumes on: one type, plain JSON both ways, and the previous release's events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.errors import CarbonError
from airflow_carbon.planning import Decision, Reason
from airflow_carbon.settings import resolve
from airflow_carbon.signals.source import Reading, SourceRef
from airflow_carbon.triggers.event import CarbonEvent, InvalidEventError
from tests.helpers import series

READY = datetime(2026, 3, 1, 8, tzinfo=UTC)
DEADLINE = READY + timedelta(hours=4)


def an_event() -> CarbonEvent:
    settings = resolve("summarize", {"source": "wt", "fallback": "uk", "region": "DE", "energy_kwh": 0.5,
                                     "deadline": DEADLINE})
    decision = Decision("forecast", READY + timedelta(hours=1), READY + timedelta(hours=1), DEADLINE,
                        Reason.GREEN_WINDOW, expected_emissions_now_g=200.0, expected_emissions_at_start_g=60.0)
    reading = Reading(series([300.0, 120.0], source="replay of de_ci.csv", replayed=True), "conn:uk", "average",
                      ("conn:wt: AuthError: watttime: /login: 403",))
    return CarbonEvent.of(decision, READY, DEADLINE, reading, settings,
                          (SourceRef.connection("wt", "DE"), SourceRef.connection("uk", "DE")))


def test_an_event_goes_through_json_and_back_unchanged():
    event = an_event()
    text = json.dumps(event.to_json())  # what the triggerer stores: JSON
    again = CarbonEvent.from_json("summarize", json.loads(text))
    assert again == event
    assert again.settings.energy_kwh == 0.5 and again.settings.fallback == ("uk",)
    assert again.sources[1].conn_id == "uk" and again.decision.expected_saving_g == pytest.approx(140.0)


def test_the_event_says_what_served_it_and_what_failed():
    payload = an_event().to_json()
    assert payload["reason"] == "green_window" and payload["fired_at"] == "2026-03-01T09:00:00+00:00"
    assert payload["served_by"] == "conn:uk" and payload["signal"] == "replay of de_ci.csv" and payload["replayed"]
    assert payload["signal_kind"] == "average"
    assert payload["failed_sources"] == ["conn:wt: AuthError: watttime: /login: 403"]
    assert payload["sources"] == [{"name": "conn:wt", "region": "DE", "replay": None, "forecaster": None},
                                  {"name": "conn:uk", "region": "DE", "replay": None, "forecaster": None}]


def test_an_event_of_no_read_names_no_signal():
    decision = Decision("forecast", DEADLINE, DEADLINE, DEADLINE, Reason.DEADLINE)
    event = CarbonEvent.of(decision, READY, DEADLINE, Reading(None, None, None), None, ())
    assert (event.served_by, event.signal, event.signal_kind, event.replayed) == (None, None, None, False)
    assert CarbonEvent.from_json("t", event.to_json()) == event


def test_an_event_of_the_previous_release_is_read_without_settings_or_sources():
    old = {
        "reason": "deadline", "fired_at": "2026-01-01T02:00:00+00:00", "ready_at": "2026-01-01T00:00:00+00:00",
        "deadline": "2026-01-01T02:00:00+00:00", "served_by": "conn:em", "failed_sources": ["conn:wt: boom"],
        "replayed": False, "signal": "electricitymaps:lifecycle",
        "decision": {"policy": "forecast", "now": "2026-01-01T02:00:00+00:00", "start": "2026-01-01T02:00:00+00:00",
                     "deadline": "2026-01-01T02:00:00+00:00", "reason": "deadline", "run_now": True, "wait_s": 0.0,
                     "expected_emissions_now_g": 50.0, "expected_emissions_at_start_g": 50.0,
                     "expected_saving_g": 0.0, "extrapolated": False},
    }
    event = CarbonEvent.from_json("summarize", old)
    assert event.settings is None and event.sources == () and event.signal_kind is None
    assert event.ready_at == datetime(2026, 1, 1, tzinfo=UTC) and event.deadline == datetime(2026, 1, 1, 2, tzinfo=UTC)
    assert event.reason == "deadline" and event.decision.run_now and event.served_by == "conn:em"
    assert event.failed_sources == ("conn:wt: boom",) and event.signal == "electricitymaps:lifecycle"


@pytest.mark.parametrize(("change", "field"), [
    (lambda p: p.pop("decision"), "decision"),
    (lambda p: p.update(ready_at="yesterday"), "yesterday"),
    (lambda p: p.update(deadline="2026-03-01T12:00:00"), "no timezone"),
    (lambda p: p["decision"].update(reason="because"), "because"),
])
def test_a_payload_that_is_not_a_carbon_event_is_refused_naming_the_task_and_what_is_wrong(change, field):
    payload = an_event().to_json()
    change(payload)
    with pytest.raises(InvalidEventError, match=rf"task 'summarize': not a carbon trigger event \(.*{field}"):
        CarbonEvent.from_json("summarize", payload)
    assert issubclass(InvalidEventError, CarbonError)


def test_an_event_carries_the_solar_forecast_its_task_reserves_on_and_the_solar_source_that_failed():
    forecast = series([0.0, 2.5, 2.0], period_s=900, start=READY, unit="kW", kind="forecast",
                      source="forecast.solar")
    decision = Decision("threshold", READY, READY, DEADLINE, Reason.SOLAR)
    event = CarbonEvent.of(decision, READY, DEADLINE, Reading(None, None, None), None, (),
                           solar_served_by="conn:roof", solar_forecast=forecast,
                           solar_failures=("solar budget of site 'roof': OperationalError: locked",))
    payload = json.loads(json.dumps(event.to_json()))
    assert payload["solar_served_by"] == "conn:roof"
    assert payload["failed_sources"] == ["solar budget of site 'roof': OperationalError: locked"]
    again = CarbonEvent.from_json("t", payload)
    assert again.solar_forecast.values.tolist() == [0.0, 2.5, 2.0] and again.solar_forecast.period_s == 900
    assert again.solar_forecast.first_epoch_s == int(READY.timestamp()) and again.solar_forecast.unit == "kW"
    assert again.to_json() == event.to_json()


def test_an_event_with_a_solar_forecast_that_is_not_a_series_is_refused_naming_the_task():
    payload = an_event().to_json() | {"solar_forecast": {"values": [-1.0], "period_s": 60}}
    with pytest.raises(InvalidEventError, match="task 'summarize'"):
        CarbonEvent.from_json("summarize", payload)
