"""The rules of what people decide over the planner: eco-mode-off windows, budget periods and projections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.control import (
    ControlInputError,
    EcoSwitch,
    eco_off_for,
    parse_budget,
    parse_window,
    period_bounds,
    projected_g,
)

WEDNESDAY_9 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "inside", "outside"), [
    ("weekdays 08:00-10:00", WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1)),
    ("weekdays 08:00-10:00", WEDNESDAY_9.replace(hour=8), WEDNESDAY_9 + timedelta(days=3)),  # Saturday
    ("daily 22:00-02:00", WEDNESDAY_9.replace(hour=1, minute=59), WEDNESDAY_9.replace(hour=2)),
    ("mon,wed-fri 09:00-11:00", WEDNESDAY_9, WEDNESDAY_9 - timedelta(days=1)),  # Tuesday
    ("weekends 00:00-00:00", WEDNESDAY_9 + timedelta(days=3), WEDNESDAY_9),
    ("0 8 * * 1-5 for 2h", WEDNESDAY_9, WEDNESDAY_9.replace(hour=7, minute=59)),
])
def test_a_window_holds_inside_and_not_outside(text, inside, outside):
    window = parse_window(text)
    assert window.holds(inside) and not window.holds(outside)


@pytest.mark.parametrize(("text", "message"), [
    ("weekdays 8-10", "expected 'weekdays 08:00-10:00'"),
    ("funday 08:00-10:00", "'funday' is not a day"),
    ("daily 25:00-02:00", "'25:00' is not a time of day"),
    ("0 8 * * for 2h", "five-field cron"),
    ("0 8 * * 1 for soon", "windows"),
])
def test_a_window_that_cannot_be_read_is_named(text, message):
    with pytest.raises(ControlInputError, match=message):
        parse_window(text, "windows")


def test_a_dags_own_switch_comes_before_the_global_one_and_an_expired_one_does_not_hold():
    mine = EcoSwitch("mine", WEDNESDAY_9 + timedelta(hours=1), (), "bob", WEDNESDAY_9, "mine")
    every = EcoSwitch(None, None, (), "ann", WEDNESDAY_9, "all")
    assert eco_off_for([every, mine], "mine", WEDNESDAY_9) is mine
    assert eco_off_for([every, mine], "mine", WEDNESDAY_9 + timedelta(hours=2)) is every
    assert eco_off_for([mine], "other", WEDNESDAY_9) is None


def test_periods_start_at_utc_midnight_on_mondays_and_the_first():
    assert period_bounds("day", WEDNESDAY_9) == (WEDNESDAY_9.replace(hour=0), WEDNESDAY_9.replace(hour=0)
                                                 + timedelta(days=1))
    assert period_bounds("week", WEDNESDAY_9)[0] == datetime(2026, 11, 30, tzinfo=UTC)
    assert period_bounds("month", WEDNESDAY_9) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def test_the_projection_carries_the_pace_so_far_to_the_end_of_the_period():
    start, end = period_bounds("day", WEDNESDAY_9)
    assert projected_g(90.0, start, end, WEDNESDAY_9) == pytest.approx(240.0)
    assert projected_g(5.0, start, end, start) == 5.0


@pytest.mark.parametrize(("value", "grams", "period"), [
    ("500 g/day", 500.0, "day"), ("2 kg per week", 2000.0, "week"), ("0.1 t/month", 1e5, "month"),
    ({"grams": 7, "period": "day", "strict": True}, 7.0, "day"),
])
def test_budgets_read_in_grams(value, grams, period):
    budget = parse_budget(value)
    assert (budget.grams, budget.period) == (grams, period)


@pytest.mark.parametrize("value", ["-5 g/day", "5 g/year", "five", {"grams": True, "period": "day"},
                                   {"grams": 5, "period": "day", "cap": 1}, "inf g/day"])
def test_a_budget_that_cannot_be_read_is_refused(value):
    with pytest.raises(ControlInputError, match="carbon_budget"):
        parse_budget(value)
