"""What people decide, as a task meets it at its start and its end: eco-mode off, releases, budgets."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from airflow_carbon.clock import utcnow
from airflow_carbon.control import period_bounds
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics import control
from airflow_carbon.metrics.record import RUNNING
from airflow_carbon.operators.runtime import CarbonTaskRun
from airflow_carbon.settings import CarbonSettingsError, check_given, resolve
from tests.fakes import FakeTask, FakeTaskInstance


def engine():
    return CarbonMetricsHook().get_store().engine


def start(ti: FakeTaskInstance, task: FakeTask | None = None, **given) -> CarbonTaskRun:
    settings = resolve(ti.task_id, {"source": "signal", "max_delay": timedelta(hours=2), **given})
    return CarbonTaskRun.start(task or FakeTask(ti.task_id), {"ti": ti}, settings)


def test_with_eco_mode_off_for_its_dag_a_task_runs_at_once_and_its_record_says_who_and_why(env):
    control.set_eco_off(engine(), "nightly", until=utcnow() + timedelta(hours=1), windows=[], actor="carol",
                        reason="incident 7", now=utcnow())
    run = start(FakeTaskInstance())
    event = run.wait_if_needed(FakeTask())
    assert event.decision.run_now and event.reason == "eco_off"
    assert event.decision.expected_saving_g == pytest.approx(0.0)
    [row] = CarbonMetricsHook().get_store().records()
    assert (row.state, row.reason, row.released_by, row.release_reason) == (RUNNING, "eco_off", "carol", "incident 7")


def test_eco_mode_off_for_another_dag_or_outside_its_window_changes_nothing(env):
    now = utcnow()
    control.set_eco_off(engine(), "other", until=None, windows=[], actor="carol", reason=None, now=now)
    closed = f"daily {(now + timedelta(hours=3)):%H:%M}-{(now + timedelta(hours=4)):%H:%M}"
    control.set_eco_off(engine(), None, until=None, windows=[closed], actor="carol", reason=None, now=now)
    event = start(FakeTaskInstance()).decide_now()
    assert not event.decision.run_now and event.override is None


def test_a_store_that_cannot_be_read_decides_nothing(env, monkeypatch, caplog):
    def broken(_engine):
        raise RuntimeError("store down")

    monkeypatch.setattr(control, "control_state", broken)
    with caplog.at_level(logging.WARNING):
        event = start(FakeTaskInstance()).decide_now()
    assert not event.decision.run_now and "plans as usual" in caplog.text


def test_a_budget_in_dag_code_reaches_the_store_and_a_persons_budget_wins(env):
    start(FakeTaskInstance(), carbon_budget="500 g/day")
    [status] = control.budget_status(engine(), None, utcnow())
    assert (status["budget_g"], status["period"], status["source"]) == (500.0, "day", "dag code")
    control.set_budget(engine(), "nightly", grams=50, period="week", strict=True, actor="dave", reason="tighter",
                       now=utcnow())
    start(FakeTaskInstance(try_number=2), carbon_budget="500 g/day")
    [status] = control.budget_status(engine(), None, utcnow())
    assert (status["budget_g"], status["period"], status["source"], status["strict"]) == (50.0, "week", "api", True)
    assert [entry["action"] for entry in control.audit(engine(), None)] == ["budget_set", "budget_set"]


def finish_with(run: CarbonTaskRun, ti: FakeTaskInstance, task: FakeTask, energy_kwh: float):
    event = run.decide_now()
    started = utcnow()
    return run.finish({"ti": ti, "task": task}, event, started, started + timedelta(minutes=30))


def test_crossing_the_budget_calls_back_once_per_period_and_logs_it(env, caplog):
    told = []
    task = FakeTask(carbon_options={"on_budget_exceeded": lambda context: told.append(context["carbon_budget"])})
    with caplog.at_level(logging.WARNING):
        for try_number in (1, 2, 3):
            ti = FakeTaskInstance(try_number=try_number)
            run = start(ti, task, carbon_budget="0.001 g/day", energy_kwh=1.0, policy="immediate")
            record = finish_with(run, ti, task, 1.0)
            assert record.emissions_g > 0.001
    assert len(told) == 1 and told[0]["over"] and told[0]["budget_g"] == pytest.approx(0.001)
    assert caplog.text.count("is over its carbon budget") == 1
    assert [e["action"] for e in control.audit(engine(), None)].count("budget_exceeded") == 1


def test_a_failing_callback_never_fails_the_task(env, caplog):
    def broken(_context):
        raise RuntimeError("pager down")

    task = FakeTask(carbon_options={"on_budget_exceeded": [broken]})
    ti = FakeTaskInstance()
    run = start(ti, task, carbon_budget="0.001 g/day", energy_kwh=1.0, policy="immediate")
    record = finish_with(run, ti, task, 1.0)
    assert record.state == "completed" and "pager down" in caplog.text


def test_over_a_strict_budget_a_task_plans_with_the_stricter_policy(env):
    now = utcnow()
    control.set_budget(engine(), "nightly", grams=0.001, period="day", strict=True, actor="dave", reason=None,
                       now=now)
    ti = FakeTaskInstance(task_id="earlier")
    run = start(ti, FakeTask("earlier"), energy_kwh=1.0, policy="immediate")
    finish_with(run, ti, FakeTask("earlier"), 1.0)
    assert control.budget_status(engine(), None, utcnow())[0]["over"]
    strict = start(FakeTaskInstance(), policy="immediate", risk_aversion=0.9)
    event = strict.decide_now()
    policy, settings = strict.planning
    assert (policy, settings.risk_aversion, settings.min_saving_pct) == ("forecast", 0.0, 0.0)
    assert not event.decision.run_now  # the immediate policy would have run at once; the stricter one waits
    assert strict.trigger().policy == "forecast"


def test_budget_settings_are_checked_where_given():
    assert check_given("t", {"carbon_budget": "2 kg/week"})["carbon_budget"].grams == 2000.0
    with pytest.raises(CarbonSettingsError, match=r"task 't': carbon setting carbon_budget='lots'"):
        check_given("t", {"carbon_budget": "lots"})
    with pytest.raises(CarbonSettingsError, match="period 'fortnight'"):
        check_given("t", {"carbon_budget": {"grams": 5, "period": "fortnight"}})
    with pytest.raises(CarbonSettingsError, match="on_budget_exceeded"):
        check_given("t", {"on_budget_exceeded": "not callable"})


def test_the_budget_travels_with_the_settings_to_the_trigger_and_back():
    settings = resolve("t", {"carbon_budget": {"grams": 5, "period": "week", "strict": True}})
    again = type(settings).from_json("t", json.loads(json.dumps(settings.to_json())))
    assert again.carbon_budget == settings.carbon_budget and again.carbon_budget.strict


def test_a_month_budget_counts_from_the_first_of_the_month():
    start_at, end_at = period_bounds("month", utcnow().replace(year=2026, month=12, day=31, hour=23))
    assert (start_at.day, end_at.month, end_at.year) == (1, 1, 2027)
