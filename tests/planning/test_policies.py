from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_carbon.planning import POLICIES, Job, PolicySettings, Reason, decide
from airflow_carbon.planning.window import rate_steps, window_integrals
from tests.helpers import T0, series, solar_series

HOUR = timedelta(hours=1)
SHORT_JOB = Job(timedelta(minutes=1), energy_kwh=0.04)
DAY = [283, 282, 237, 236, 257, 337, 238, 277, 268, 277, 278, 238,
       307, 308, 321, 311, 312, 300, 299, 290, 280, 270, 260, 250]


def emissions_at(intensity, job, start, solar=None):
    start_s = start.timestamp()
    edges, rates, _ = rate_steps(intensity, job.power_kw, solar, start_s, start_s + job.duration_s)
    return float(window_integrals(edges, rates, np.array([start_s]), job.duration_s)[0])


def test_immediate_runs_now_and_says_what_it_emits():
    decision = decide("immediate", now=T0 + HOUR / 2, deadline=T0 + 4 * HOUR, job=SHORT_JOB, intensity=series(DAY))
    assert decision.run_now and decision.reason is Reason.IMMEDIATE
    assert decision.expected_emissions_now_g == pytest.approx(0.04 * 283)


def test_threshold_takes_the_first_green_period_like_the_seed():
    decision = decide("threshold", now=T0 + HOUR / 2, deadline=T0 + 4.5 * HOUR, job=SHORT_JOB,
                      intensity=series(DAY), settings=PolicySettings(threshold_g_per_kwh=250))
    assert decision.start == T0 + 2 * HOUR  # 237 g/kWh at 02:00 is the first at or below 250, though 03:00 is lower
    assert decision.reason is Reason.GREEN_WINDOW
    assert decision.expected_emissions_at_start_g == pytest.approx(0.04 * 237)


def test_threshold_runs_at_once_when_nothing_in_the_budget_is_green():
    decision = decide("threshold", now=T0 + 12 * HOUR, deadline=T0 + 16 * HOUR, job=SHORT_JOB,
                      intensity=series(DAY), settings=PolicySettings(threshold_g_per_kwh=250))
    assert decision.run_now and decision.reason is Reason.NO_GREEN_WINDOW


def test_threshold_accepts_solar_at_or_above_the_jobs_power_by_default():
    job = Job(HOUR, energy_kwh=2.0)  # 2 kW
    solar = solar_series([0, 0, 0, 0, 0, 0, 0, 1.5, 2.0, 3.0] + [0] * 14)
    decision = decide("threshold", now=T0 + 6 * HOUR, deadline=T0 + 10 * HOUR, job=job, intensity=series([400] * 24),
                      solar=solar)
    assert decision.start == T0 + 8 * HOUR and decision.reason is Reason.SOLAR
    seed_rule = decide("threshold", now=T0 + 6 * HOUR, deadline=T0 + 10 * HOUR, job=job, intensity=series([400] * 24),
                       solar=solar, settings=PolicySettings(solar_threshold_kw=0.05))
    assert seed_rule.start == T0 + 7 * HOUR


def test_forecast_finds_the_cleanest_window_between_period_edges():
    job = Job(timedelta(minutes=90), energy_kwh=1.5)
    intensity = series([300, 300, 100, 120, 100, 50, 500, 300])
    decision = decide("forecast", now=T0, deadline=T0 + 3 * HOUR, job=job, intensity=intensity)
    assert decision.start == T0 + 2 * HOUR  # 100 + half of 120
    assert decision.expected_emissions_at_start_g == pytest.approx(100 + 0.5 * 120)
    assert decision.expected_emissions_now_g == pytest.approx(1.5 * 300)
    later = decide("forecast", now=T0, deadline=T0 + 5 * HOUR, job=job, intensity=intensity)
    assert later.start == T0 + 4.5 * HOUR  # an edge minus the duration: the job ends as the 500 g hour begins
    assert later.expected_emissions_at_start_g == pytest.approx(0.5 * 100 + 50)


def test_forecast_does_not_wait_for_less_than_min_saving_pct():
    intensity = series([300, 290, 300])
    decision = decide("forecast", now=T0, deadline=T0 + 2 * HOUR, job=Job(HOUR, 1.0), intensity=intensity,
                      settings=PolicySettings(min_saving_pct=5))
    assert decision.run_now and decision.reason is Reason.BELOW_MIN_SAVING
    waits = decide("forecast", now=T0, deadline=T0 + 2 * HOUR, job=Job(HOUR, 1.0), intensity=intensity,
                   settings=PolicySettings(min_saving_pct=3))
    assert waits.start == T0 + HOUR


def test_forecast_counts_solar_as_free_energy():
    intensity = series([200] * 12)
    solar = solar_series([0] * 9 + [1.0, 0, 0])
    decision = decide("forecast", now=T0, deadline=T0 + 11 * HOUR, job=Job(HOUR, 1.0), intensity=intensity,
                      solar=solar)
    assert decision.start == T0 + 9 * HOUR and decision.reason is Reason.SOLAR
    assert decision.expected_emissions_at_start_g == pytest.approx(0.0)


def test_at_or_past_the_deadline_every_policy_runs_now():
    for policy in POLICIES:
        decision = decide(policy, now=T0 + 5 * HOUR, deadline=T0 + 4 * HOUR, job=SHORT_JOB, intensity=series(DAY))
        assert decision.run_now and decision.start <= decision.deadline + timedelta(hours=1)
        assert decision.reason is Reason.DEADLINE or (policy == "immediate" and decision.reason is Reason.DEADLINE)


def test_without_a_signal_it_waits_for_the_deadline_or_runs_as_configured():
    now = T0 + 30 * HOUR  # after the series ends
    waits = decide("forecast", now=now, deadline=now + 2 * HOUR, job=SHORT_JOB, intensity=series(DAY))
    assert waits.reason is Reason.SIGNAL_UNAVAILABLE and waits.start == now + 2 * HOUR
    runs = decide("threshold", now=now, deadline=now + 2 * HOUR, job=SHORT_JOB, intensity=None,
                  settings=PolicySettings(on_unavailable="run"))
    assert runs.reason is Reason.SIGNAL_UNAVAILABLE and runs.run_now


def test_a_horizon_shorter_than_the_deadline_plans_within_what_is_known():
    intensity = series([300, 250, 200, 150])  # four hours known
    job = Job(HOUR, 1.0)
    decision = decide("forecast", now=T0, deadline=T0 + 24 * HOUR, job=job, intensity=intensity)
    assert decision.start == T0 + 3 * HOUR and not decision.extrapolated
    long_job = Job(6 * HOUR, 6.0)
    extrapolated = decide("forecast", now=T0, deadline=T0 + 24 * HOUR, job=long_job, intensity=intensity)
    assert extrapolated.extrapolated and T0 <= extrapolated.start <= T0 + 24 * HOUR


@pytest.mark.parametrize("period_s", [300, 900, 1800, 3600])
def test_every_granularity_gives_the_same_choice_on_the_same_curve(period_s):
    hourly = [300, 280, 120, 260, 310, 330]
    values = np.repeat(hourly, 3600 // period_s)
    decision = decide("forecast", now=T0, deadline=T0 + 5 * HOUR, job=Job(HOUR, 1.0),
                      intensity=series(values, period_s=period_s))
    assert decision.start == T0 + 2 * HOUR
    assert decision.expected_emissions_at_start_g == pytest.approx(120)


def test_bad_input_is_refused_with_what_was_wrong():
    with pytest.raises(ValueError, match="unknown policy 'greenest'"):
        decide("greenest", now=T0, deadline=T0 + HOUR, job=SHORT_JOB, intensity=series(DAY))
    with pytest.raises(ValueError, match="naive datetime"):
        decide("forecast", now=datetime(2024, 6, 1), deadline=T0 + HOUR, job=SHORT_JOB, intensity=series(DAY))
    with pytest.raises(ValueError, match="duration must be positive"):
        Job(timedelta(0), 1.0)
    with pytest.raises(ValueError, match="min_saving_pct"):
        PolicySettings(min_saving_pct=120)
    with pytest.raises(ValueError, match="on_unavailable"):
        PolicySettings(on_unavailable="maybe")


def test_decision_to_dict_is_plain_json():
    decision = decide("forecast", now=T0, deadline=T0 + 4 * HOUR, job=SHORT_JOB, intensity=series(DAY))
    as_dict = decision.to_dict()
    assert as_dict["reason"] == "green_window" and as_dict["start"] == (T0 + 3 * HOUR).isoformat()
    assert as_dict["wait_s"] == 3 * 3600 and as_dict["expected_saving_g"] > 0


planning_inputs = st.fixed_dictionaries({
    "values": st.lists(st.floats(0, 1000), min_size=2, max_size=80),
    "period_s": st.sampled_from([300, 900, 1800, 3600]),
    "now_offset": st.floats(0, 1),
    "max_delay_s": st.integers(0, 48 * 3600),
    "duration_s": st.integers(60, 6 * 3600),
    "energy_kwh": st.floats(0.001, 10),
    "solar": st.one_of(st.none(), st.lists(st.floats(0, 5), min_size=1, max_size=40)),
})


def _request(case):
    intensity = series(case["values"], case["period_s"])
    span_s = len(case["values"]) * case["period_s"]
    now = T0 + timedelta(seconds=int(case["now_offset"] * (span_s - 1)))
    solar = solar_series(case["solar"], 1800) if case["solar"] is not None else None
    job = Job(timedelta(seconds=case["duration_s"]), case["energy_kwh"])
    return intensity, now, now + timedelta(seconds=case["max_delay_s"]), job, solar


@settings(max_examples=200, deadline=None)
@given(case=planning_inputs, policy=st.sampled_from(sorted(POLICIES)))
def test_every_start_lies_between_now_and_the_deadline(case, policy):
    intensity, now, deadline, job, solar = _request(case)
    decision = decide(policy, now=now, deadline=deadline, job=job, intensity=intensity, solar=solar)
    assert now <= decision.start <= deadline


@settings(max_examples=200, deadline=None)
@given(case=planning_inputs)
def test_the_forecast_policy_never_expects_more_than_running_now(case):
    intensity, now, deadline, job, solar = _request(case)
    decision = decide("forecast", now=now, deadline=deadline, job=job, intensity=intensity, solar=solar)
    if decision.expected_emissions_now_g is not None:
        assert decision.expected_emissions_at_start_g <= decision.expected_emissions_now_g * (1 + 1e-9) + 1e-9


@settings(max_examples=100, deadline=None)
@given(case=planning_inputs)
def test_no_start_on_a_fine_grid_beats_the_forecast_policy(case):
    intensity, now, deadline, job, solar = _request(case)
    decision = decide("forecast", now=now, deadline=deadline, job=job, intensity=intensity, solar=solar)
    latest = min(deadline.timestamp(), intensity.end_epoch_s - job.duration_s)
    if decision.extrapolated or latest < now.timestamp():
        return
    grid = np.linspace(now.timestamp(), latest, 97)
    best_on_grid = min(emissions_at(intensity, job, datetime.fromtimestamp(t, UTC), solar) for t in grid)
    assert decision.expected_emissions_at_start_g <= best_on_grid * (1 + 1e-9) + 1e-9


@pytest.mark.parametrize(("upper", "risk_aversion", "waits"), [
    ([300, 300, 300, 300, 300, 300], 0.5, True),   # the later hour is known as well as now: wait for it
    ([300, 300, 300, 300, 600, 300], 0.5, False),  # it may well be 360: not worth giving up a sure 300 now
    ([300, 300, 300, 300, 600, 300], 0.0, True),   # the point forecast alone
    (None, 0.5, True),                             # no interval (the source's own forecast): the point forecast
])
def test_forecast_gives_up_a_sure_now_only_for_a_later_window_that_stays_better_within_its_interval(
        upper, risk_aversion, waits):
    point = series([300, 300, 300, 300, 240, 300])
    decision = decide("forecast", now=T0, deadline=T0 + timedelta(hours=4), job=Job(timedelta(hours=1), 1.0),
                      intensity=point, intensity_upper=series(upper) if upper else None,
                      settings=PolicySettings(risk_aversion=risk_aversion, min_saving_pct=1))
    assert (not decision.run_now) is waits
    assert decision.start == (T0 + timedelta(hours=4) if waits else T0)
    # what it expects to emit is the point forecast's, whatever it weighed the risk with
    assert decision.expected_emissions_at_start_g == pytest.approx(240.0 if waits else 300.0)


def test_risk_aversion_is_a_fraction():
    with pytest.raises(ValueError, match="risk_aversion must be in"):
        PolicySettings(risk_aversion=1.5)


@pytest.mark.parametrize(("planned_h", "margin_pct", "start_h"), [
    (None, 10, 3),  # a first plan: the best start
    (2, 0, 3),      # no margin: the new best, wherever the forecast moved it
    (2, 10, 2),     # 3 h is only 5% better than the start planned before: keep it
    (1, 10, 3),     # the planned hour now looks 50% worse than the best: move
    (0, 10, 0),     # the planned start has come: run unless waiting on beats it by the margin
])
def test_a_replanned_job_keeps_its_planned_start_unless_the_new_best_beats_it_by_the_margin(
        planned_h, margin_pct, start_h):
    forecast = series([200, 300, 200, 190, 400, 400])
    planned = None if planned_h is None else T0 + timedelta(hours=planned_h)
    decision = decide("forecast", now=T0, deadline=T0 + timedelta(hours=4), job=Job(timedelta(hours=1), 1.0),
                      intensity=forecast, planned_start=planned,
                      settings=PolicySettings(replan_margin_pct=margin_pct, min_saving_pct=0))
    assert decision.start == T0 + timedelta(hours=start_h)


def test_a_kept_plan_never_beats_running_now_and_the_reason_stays_honest():
    """Running now (195) beats the planned start (210); the new best (190, from 1:00) beats the plan by under 10%:
    the plan is not kept, the best wins, and no 'below_min_saving' is told for a plan worse than now."""
    forecast = series([200, 190, 210, 195, 400, 400])
    decision = decide("forecast", now=T0 + timedelta(minutes=30), deadline=T0 + timedelta(hours=4),
                      job=Job(timedelta(hours=1), 1.0), intensity=forecast, planned_start=T0 + timedelta(hours=2),
                      settings=PolicySettings(replan_margin_pct=10, min_saving_pct=0))
    assert decision.reason == "green_window" and decision.expected_saving_g >= 0
