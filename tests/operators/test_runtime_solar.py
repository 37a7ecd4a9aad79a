"""A task try with on-site solar: planned on the site's free output, reserved when it starts, counted when it ends.

Real parts: a ``carbon_solar_csv`` connection to files in a temporary folder, the solar budget in a real SQLite
store; the task instance is a stand-in.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from airflow_carbon.clock import utcnow
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics.solar import SolarLedger
from airflow_carbon.operators.runtime import CarbonTaskRun
from airflow_carbon.settings import CarbonSettingsError, resolve
from airflow_carbon.triggers.carbon import CarbonWindowTrigger
from tests.fakes import FakeTask, FakeTaskInstance
from tests.solar_files import HOUR_S, write_forecast, write_grid, write_measured


@pytest.fixture
def site(monkeypatch, tmp_path):
    """A dirty grid, a site whose forecast says 2 kW from now and whose logger measures 1.5 kW."""
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "metrics.db")}))
    monkeypatch.setenv("AIRFLOW_CONN_GRID", json.dumps({"conn_type": "carbon_csv",
                                                        "extra": {"path": str(write_grid(tmp_path / "grid.csv"))}}))
    write_forecast(tmp_path / "forecast.csv", sun_from_s=0, kw=2.0)
    write_measured(tmp_path / "measured.csv", 1.5)
    monkeypatch.setenv("AIRFLOW_CONN_ROOF", json.dumps({
        "conn_type": "carbon_solar_csv",
        "extra": {"path": str(tmp_path / "forecast.csv"), "measured_path": str(tmp_path / "measured.csv"),
                  "site": "roof", "peak_kw": 2.0, "replay": False}}))
    yield tmp_path
    CarbonMetricsHook.reset_store_cache()


def start(ti: FakeTaskInstance, **given) -> CarbonTaskRun:
    settings = resolve(ti.task_id, {"source": "grid", "region": "TEST", "solar": "roof", "policy": "threshold",
                                    "threshold_g_per_kwh": 100, "power_kw": 1.0,
                                    "expected_duration": timedelta(minutes=10), **given})
    return CarbonTaskRun.start(FakeTask(ti.task_id), {"ti": ti}, settings)


def test_a_task_runs_when_the_sun_covers_it_and_counts_its_measured_share(site):
    ti = FakeTaskInstance()
    run = start(ti, power_kw=2.0)
    assert run.settings.site == "roof"  # from the connection's extra
    event = run.decide_now()
    assert event.decision.run_now and event.reason == "solar" and event.solar_served_by == "conn:roof"
    started = utcnow()
    event = run.begin(event, started)
    ended = started + timedelta(minutes=10)
    record = run.finish({"ti": ti}, event, started, ended)
    assert record.site == "roof" and record.solar_served_by == "conn:roof" and record.solar_basis == "measured"
    assert record.energy_kwh == pytest.approx(2.0 / 6)
    assert record.solar_kwh == pytest.approx(1.5 / 6, rel=0.02)  # the measured 1.5 kW, not the forecast 2 kW
    assert record.grid_kwh == pytest.approx(record.energy_kwh - record.solar_kwh)
    assert record.emissions_g == pytest.approx(400 * record.grid_kwh, rel=1e-6)
    assert record.failed_sources == [] and ti.pushed["carbon"]["solar_kwh"] == record.solar_kwh


def test_two_tasks_of_one_site_at_the_same_time_never_count_the_same_kwh_twice(site):
    runs = [start(FakeTaskInstance(task_id=name), power_kw=1.5) for name in ("a", "b")]
    events = [run.decide_now() for run in runs]
    assert all(event.reason == "solar" for event in events)  # both planned before either reserved
    started = utcnow()
    events = [run.begin(event, started) for run, event in zip(runs, events, strict=True)]
    ended = started + timedelta(minutes=10)
    records = [run.finish({"ti": FakeTaskInstance(task_id=run.task_id)}, event, started, ended)
               for run, event in zip(runs, events, strict=True)]
    measured_kwh = 1.5 * 10 / 60
    assert sum(record.solar_kwh for record in records) <= measured_kwh + 1e-9
    assert all(record.solar_kwh == pytest.approx(measured_kwh / 2, rel=0.05) for record in records)  # split fairly


def test_a_plan_sees_what_a_running_task_of_the_site_reserved(site):
    first = start(FakeTaskInstance(task_id="first"), power_kw=2.0)
    first.begin(first.decide_now(), utcnow())  # takes the whole 2 kW forecast for ten minutes
    second = start(FakeTaskInstance(task_id="second"), power_kw=1.0)
    event = second.decide_now()
    assert not event.decision.run_now and event.reason == "solar"  # it waits until the first is done
    assert event.decision.start >= utcnow() + timedelta(minutes=9)


def test_the_forecast_policy_waits_for_the_sun_on_a_dirty_grid(site):
    write_forecast(site / "forecast.csv", sun_from_s=HOUR_S, kw=2.0)
    run = start(FakeTaskInstance(), policy="forecast")
    event = run.decide_now()
    assert not event.decision.run_now and event.reason == "solar"
    assert event.decision.start - event.decision.now >= timedelta(minutes=59)
    assert event.decision.expected_emissions_at_start_g == pytest.approx(0)  # 1 kW covered by 2 kW of sun


def test_a_failing_solar_source_leaves_the_grid_plan_standing_and_says_so(site):
    run = start(FakeTaskInstance(), policy="threshold", threshold_g_per_kwh=500)  # the grid alone says run
    (site / "forecast.csv").write_text("timestamp,solar_kw_available\nnot a time,1\n")
    event = run.decide_now()
    assert event.decision.run_now and event.reason == "green_window"
    assert any("conn:roof" in failure and "forecast.csv" in failure for failure in event.failed_sources)
    started = utcnow()
    record = run.finish({"ti": FakeTaskInstance()}, run.begin(event, started), started,
                        started + timedelta(minutes=10))
    assert record.solar_basis == "measured" and record.solar_kwh > 0  # the logger still says what was used
    assert any("conn:roof" in failure for failure in record.failed_sources)


def test_a_missing_or_wrong_solar_connection_fails_the_start_naming_task_and_connection(site, monkeypatch):
    with pytest.raises(CarbonSettingsError, match=r"task 'summarize'.*'nowhere'"):
        start(FakeTaskInstance(), solar="nowhere")
    with pytest.raises(CarbonSettingsError, match=r"task 'summarize'.*solar='grid'.*not a solar source"):
        start(FakeTaskInstance(), solar="grid")


def test_the_trigger_carries_the_site_without_a_secret_and_hands_the_forecast_to_its_task(site):
    write_forecast(site / "forecast.csv", sun_from_s=HOUR_S, kw=2.0)
    run = start(FakeTaskInstance())
    trigger = run.trigger()
    path, kwargs = trigger.serialize()
    assert kwargs["solar"] == {"source": {"name": "conn:roof", "region": "TEST", "replay": None, "forecaster": None},
                               "site": "roof", "metrics_conn_id": "carbon_metrics_default"}
    again = CarbonWindowTrigger(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (path, kwargs)


def test_a_try_that_ends_early_gives_back_the_rest_of_its_reservation(site):
    run = start(FakeTaskInstance(), power_kw=2.0, expected_duration=timedelta(minutes=30))
    started = utcnow()
    event = run.begin(run.decide_now(), started)
    store = CarbonMetricsHook().get_store()
    ledger = SolarLedger(store)
    later = started + timedelta(minutes=20)
    forecast = event.solar_forecast
    assert ledger.free_kw("roof", forecast, later, later + timedelta(minutes=1)).values.max() == 0  # all taken
    run.finish({"ti": FakeTaskInstance()}, event, started, started + timedelta(minutes=5))
    assert ledger.free_kw("roof", forecast, later, later + timedelta(minutes=1)).values.min() == pytest.approx(2.0)
