from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk._shared.module_loading import import_string

from airflow_carbon.forecasting.extend import extend
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.planning import decide
from airflow_carbon.settings import resolve
from airflow_carbon.signals.cache import shared_cache
from airflow_carbon.signals.source import SourceRef
from airflow_carbon.triggers.carbon import CarbonWindowTrigger
from airflow_carbon.triggers.event import CarbonEvent
from tests.helpers import solar_series
from tests.signal_files import write_measured_history, write_signal
from tests.solar_files import write_forecast, write_grid

BUNDLED_DE = SourceRef.bundled("DE").to_dict()


def trigger_for(path, *, deadline_in_s: float = 60, refresh_s: float = 1, policy: str = "forecast",
                ready_at: datetime | None = None) -> CarbonWindowTrigger:
    now = datetime.now(UTC)
    return CarbonWindowTrigger(
        ready_at=ready_at or now, deadline=now + timedelta(seconds=deadline_in_s), policy=policy, duration_s=1,
        energy_kwh=0.01, signals=[SourceRef.file(str(path), "TEST", replay=False).to_dict()], refresh_s=refresh_s,
        task_settings=resolve("summarize", {"region": "TEST", "policy": policy}).to_json())


async def first_event(trigger: CarbonWindowTrigger, timeout_s: float = 30):
    return await asyncio.wait_for(anext(trigger.run()), timeout_s)


def test_serialization_round_trip_keeps_absolute_instants_and_no_secret(tmp_path):
    trigger = trigger_for(tmp_path / "signal.csv")
    classpath, kwargs = trigger.serialize()
    again = import_string(classpath)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs["deadline"] == trigger.deadline.isoformat() and kwargs["ready_at"] == trigger.ready_at.isoformat()
    assert set(kwargs) == {"ready_at", "deadline", "policy", "duration_s", "energy_kwh", "signals", "settings",
                           "refresh_s", "task_settings", "solar"}
    assert kwargs["solar"] is None  # a task without a solar source plans on the grid alone
    assert kwargs["signals"] == [{"name": f"csv:{tmp_path / 'signal.csv'}", "region": "TEST", "replay": False,
                                  "forecaster": None}]
    assert kwargs["task_settings"]["region"] == "TEST" and kwargs["task_settings"]["source"] is None


def test_a_trigger_deferred_by_the_previous_release_runs_and_hands_back_no_settings(tmp_path):
    """Its kwargs name sources as ``SignalSpec`` dicts and carry no task settings."""
    path = write_signal(tmp_path / "signal.csv", green_in_s=-10)
    now = datetime.now(UTC)
    trigger = CarbonWindowTrigger(
        ready_at=now.isoformat(), deadline=(now + timedelta(seconds=60)).isoformat(), policy="forecast",
        duration_s=1, energy_kwh=0.01, settings={"threshold_g_per_kwh": 250.0, "min_saving_pct": 0.0},
        signals=[{"kind": "csv", "region": "TEST", "path": str(path), "replay": False, "conn_id": None},
                 {"kind": "bundled", "region": "DE", "path": None, "replay": None, "conn_id": None}])
    assert [ref["name"] for ref in trigger.serialize()[1]["signals"]] == [f"csv:{path}", "bundled:DE"]
    event = CarbonEvent.from_json("summarize", asyncio.run(first_event(trigger)).payload)
    assert event.reason == "green_window" and event.served_by == f"csv:{path}" and event.settings is None
    assert event.sources == (SourceRef.file(str(path), "TEST", replay=False), SourceRef.bundled("DE"))


def test_a_recreated_trigger_keeps_its_deadline(tmp_path):
    trigger = trigger_for(tmp_path / "signal.csv", deadline_in_s=3600)
    later = import_string(trigger.serialize()[0])(**trigger.serialize()[1])
    assert later.deadline == trigger.deadline


def test_it_waits_for_the_green_window_and_says_so(tmp_path):
    started = datetime.now(UTC)  # before the file, whose green window begins at int(now) + 2 s
    path = write_signal(tmp_path / "signal.csv", green_in_s=2)
    trigger = trigger_for(path)
    event = CarbonEvent.from_json("summarize", asyncio.run(first_event(trigger)).payload)
    assert event.reason == "green_window" and event.decision.now >= started + timedelta(seconds=1)
    assert event.served_by == f"csv:{path}" and event.failed_sources == () and event.sources == tuple(trigger.signals)
    assert event.settings == trigger.task_settings and event.settings.region == "TEST"


def test_green_now_fires_at_once(tmp_path):
    path = write_signal(tmp_path / "signal.csv", green_in_s=-10)
    event = asyncio.run(first_event(trigger_for(path)))
    assert event.payload["reason"] == "green_window" and event.payload["decision"]["run_now"]


def test_a_failing_source_still_fires_at_the_deadline_and_says_why(tmp_path):
    event = asyncio.run(first_event(trigger_for(tmp_path / "missing.csv", deadline_in_s=2, refresh_s=0.5)))
    assert event.payload["reason"] == "deadline"
    assert event.payload["served_by"] is None
    assert "missing.csv" in event.payload["failed_sources"][0]
    fired_at, deadline = (datetime.fromisoformat(event.payload[k]) for k in ("fired_at", "deadline"))
    assert deadline - timedelta(seconds=1) <= fired_at <= deadline + timedelta(seconds=1)  # planning counts whole s


def test_a_deadline_already_past_fires_at_once(tmp_path):
    path = write_signal(tmp_path / "signal.csv", green_in_s=3600)
    trigger = trigger_for(path, deadline_in_s=0, ready_at=datetime.now(UTC) - timedelta(hours=1))
    assert asyncio.run(first_event(trigger, timeout_s=5)).payload["reason"] == "deadline"


def test_naive_or_inverted_instants_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no timezone"):
        CarbonWindowTrigger(ready_at=datetime(2026, 1, 1), deadline=datetime(2026, 1, 2, tzinfo=UTC),
                            policy="forecast", duration_s=60, energy_kwh=1, signals=[BUNDLED_DE])
    with pytest.raises(ValueError, match="before ready_at"):
        CarbonWindowTrigger(ready_at=datetime(2026, 1, 2, tzinfo=UTC), deadline=datetime(2026, 1, 1, tzinfo=UTC),
                            policy="forecast", duration_s=60, energy_kwh=1, signals=[BUNDLED_DE])


def test_a_thousand_waiting_triggers_read_their_source_once(tmp_path):
    path = write_signal(tmp_path / "signal.csv", green_in_s=-10)

    async def run_all():
        events = await asyncio.gather(*(first_event(trigger_for(path, refresh_s=60)) for _ in range(1000)))
        return events, shared_cache().loads

    events, loads = asyncio.run(run_all())
    assert len(events) == 1000 and all(e.payload["reason"] == "green_window" for e in events)
    assert loads == 1


def test_a_thousand_triggers_with_the_same_planning_inputs_share_one_decision(tmp_path, monkeypatch):
    """Same source, policy, job and settings, deadlines within one refresh interval: one ``decide`` for all,
    and each fires with its own deadline, never a start after it."""
    import airflow_carbon.triggers.carbon as module

    path = write_signal(tmp_path / "signal.csv", green_in_s=-10)
    calls = []
    monkeypatch.setattr(module, "decide", lambda *args, **kwargs: calls.append(kwargs) or decide(*args, **kwargs))
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    base -= timedelta(seconds=base.timestamp() % 600)  # deadlines below within one 600 s refresh bucket

    def one(index: int) -> CarbonWindowTrigger:
        trigger = trigger_for(path, refresh_s=600)
        trigger.deadline = base + timedelta(seconds=index % 500)
        return trigger

    async def run_all():
        triggers = [one(i) for i in range(1000)]
        return triggers, await asyncio.gather(*(first_event(t) for t in triggers))

    triggers, events = asyncio.run(run_all())
    assert len(calls) == 1 and calls[0]["deadline"] == base
    for trigger, event in zip(triggers, events, strict=True):
        decision = event.payload["decision"]
        assert decision["deadline"] == trigger.deadline.isoformat() and decision["run_now"]
        assert datetime.fromisoformat(decision["start"]) <= trigger.deadline


def test_triggers_wake_spread_over_a_tenth_of_their_refresh_and_never_past_their_deadline(tmp_path):
    path = write_signal(tmp_path / "signal.csv", green_in_s=3600)
    offsets = [trigger_for(path, refresh_s=5).wake_offset.total_seconds() for _ in range(200)]
    assert all(0 <= offset <= 0.5 for offset in offsets) and len(set(offsets)) > 100
    trigger = trigger_for(path, refresh_s=60, deadline_in_s=3)
    assert trigger._spread(trigger.deadline - timedelta(milliseconds=1)) <= trigger.deadline
    assert trigger._spread(trigger.deadline) == trigger.deadline


def test_triggers_on_a_source_without_a_forecast_share_one_forecast_per_refresh(tmp_path, monkeypatch):
    """300 tasks on a live CSV of measured history: one history read and one forecast for all of them."""
    import airflow_carbon.hooks.sources as sources

    path = write_measured_history(tmp_path / "measured.csv", datetime.now(UTC))
    made = []
    monkeypatch.setattr(sources, "extend", lambda *args: made.append(args[3]) or extend(*args))
    ref = replace(SourceRef.file(str(path), "DE", replay=False), forecaster="persistence").to_dict()

    async def run_all():
        now = datetime.now(UTC)
        triggers = [CarbonWindowTrigger(ready_at=now, deadline=now + timedelta(hours=6, seconds=i), policy="forecast",
                                        duration_s=600, energy_kwh=0.1, signals=[ref], refresh_s=600)
                    for i in range(300)]
        plans = [asyncio.create_task(anext(trigger.run())) for trigger in triggers]
        await asyncio.sleep(3)  # every trigger plans once within its first turn; none fires at this intensity
        fired = [plan for plan in plans if plan.done()]
        for plan in plans:
            plan.cancel()
        return fired

    fired = asyncio.run(run_all())
    assert made == ["persistence"]
    for plan in fired:  # those that found now the best start planned on the forecast past the file's end
        assert plan.result().payload["signal"] == f"{path}, then persistence forecast from its history"


def test_a_source_slower_than_the_deadline_cannot_hold_the_trigger_past_it(monkeypatch):
    async def never_answers(ref, now, history):
        await asyncio.sleep(3600)

    monkeypatch.setattr("airflow_carbon.triggers.carbon.aload", never_answers)
    trigger = CarbonWindowTrigger(ready_at=datetime.now(UTC), deadline=datetime.now(UTC) + timedelta(seconds=1.5),
                                  policy="forecast", duration_s=1, energy_kwh=0.01, signals=[BUNDLED_DE],
                                  refresh_s=600)
    event = asyncio.run(first_event(trigger, timeout_s=10))
    fired_at, deadline = (datetime.fromisoformat(event.payload[k]) for k in ("fired_at", "deadline"))
    assert event.payload["reason"] == "deadline" and fired_at <= deadline + timedelta(seconds=1)
    assert "no answer in the" in event.payload["failed_sources"][0]


def test_at_the_deadline_the_trigger_fires_without_reading_its_source(monkeypatch):
    reads = []

    async def counted(ref, now, history):
        reads.append(ref)
        raise RuntimeError("should not be read")

    monkeypatch.setattr("airflow_carbon.triggers.carbon.aload", counted)
    now = datetime.now(UTC)
    trigger = CarbonWindowTrigger(ready_at=now - timedelta(hours=1), deadline=now, policy="forecast", duration_s=1,
                                  energy_kwh=0.01, signals=[BUNDLED_DE])
    event = asyncio.run(first_event(trigger, timeout_s=5))
    assert event.payload["reason"] == "deadline" and event.payload["failed_sources"] == [] and reads == []


def test_a_wall_clock_jumping_past_the_deadline_fires_at_the_next_sleep_step(tmp_path, monkeypatch):
    """NTP stepping the clock moves the wall clock, not the monotonic one asyncio sleeps by."""
    path = write_signal(tmp_path / "signal.csv", green_in_s=1800, period_s=60)
    jump = timedelta(0)
    monkeypatch.setattr("airflow_carbon.triggers.carbon.utcnow", lambda: datetime.now(UTC) + jump)
    monkeypatch.setattr("airflow_carbon.triggers.carbon.MAX_SLEEP_STEP_S", 0.2)
    trigger = trigger_for(path, deadline_in_s=3600, refresh_s=600)

    async def jump_while_it_sleeps():
        nonlocal jump
        waiting = asyncio.create_task(first_event(trigger, timeout_s=10))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # asleep until the window, half an hour away
        jump = timedelta(hours=2)
        return await waiting

    event = asyncio.run(jump_while_it_sleeps())
    assert event.payload["reason"] == "deadline"


def test_a_trigger_with_a_site_fires_when_the_sun_comes_and_hands_its_forecast_to_the_task(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "metrics.db")}))
    write_forecast(tmp_path / "forecast.csv", sun_from_s=1800, kw=2.0)
    monkeypatch.setenv("AIRFLOW_CONN_ROOF", json.dumps({"conn_type": "carbon_solar_csv", "extra": {
        "path": str(tmp_path / "forecast.csv"), "site": "roof", "replay": False}}))
    now = datetime.now(UTC)
    clock = [now]  # the trigger's clock: each sleep moves it to the wake-up time at once

    async def sleep_until(moment: datetime, waiting: object = None) -> None:
        clock[0] = max(clock[0], moment)

    monkeypatch.setattr("airflow_carbon.triggers.carbon.utcnow", lambda: clock[0])
    monkeypatch.setattr("airflow_carbon.triggers.carbon.sleep_until", sleep_until)
    grid = write_grid(tmp_path / "grid.csv")
    trigger = CarbonWindowTrigger(
        ready_at=now, deadline=now + timedelta(hours=1), policy="threshold", duration_s=600, energy_kwh=1 / 6,
        signals=[SourceRef.file(str(grid), "TEST").to_dict()], settings={"threshold_g_per_kwh": 100},
        solar={"source": SourceRef.connection("roof", "TEST").to_dict(), "site": "roof",
               "metrics_conn_id": "carbon_metrics_default"})
    try:
        event = CarbonEvent.from_json("t", asyncio.run(first_event(trigger, timeout_s=120)).payload)
    finally:
        CarbonMetricsHook.reset_store_cache()
    assert event.reason == "solar" and event.solar_served_by == "conn:roof" and event.failed_sources == ()
    assert event.decision.now >= now + timedelta(minutes=29)  # it waited for the sun
    assert event.solar_forecast.values.max() == pytest.approx(2.0) and event.solar_forecast.unit == "kW"


def test_the_triggers_of_one_site_read_its_forecast_once_for_all(tmp_path, monkeypatch):
    reads = []

    class Source:
        min_refresh_s = 900.0

        async def aforecast(self, now, horizon):
            reads.append(now)
            await asyncio.sleep(0.05)  # the others arrive while it reads
            return solar_series([0.0, 2.0])

    async def open_source(ref):
        return Source()

    monkeypatch.setattr("airflow_carbon.hooks.site.aopen_solar", open_source)
    now = datetime.now(UTC)
    site = {"source": SourceRef.connection("roof", "TEST").to_dict(), "site": "roof",
            "metrics_conn_id": "carbon_metrics_default"}
    triggers = [CarbonWindowTrigger(ready_at=now, deadline=now + timedelta(hours=1), policy="threshold",
                                    duration_s=60, energy_kwh=0.1, signals=[SourceRef.bundled("DE").to_dict()],
                                    refresh_s=1, solar=site) for _ in range(200)]

    async def read_all_twice():
        for _ in range(2):
            await asyncio.gather(*(t._cached_forecast(t.solar, now, timedelta(hours=1)) for t in triggers))
            await asyncio.sleep(1.1)  # past every trigger's refresh interval, within the source's 15 minutes

    asyncio.run(read_all_twice())
    assert len(reads) == 1
