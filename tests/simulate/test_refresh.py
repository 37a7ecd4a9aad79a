"""The simulator planning as the trigger does: a forecast from the past at each instant, re-planned at refreshes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from airflow_carbon.planning import Job, PolicySettings, decide
from airflow_carbon.planning.policies import DEFAULT_SETTINGS
from airflow_carbon.signals.bundled import bundled_intensity
from airflow_carbon.signals.series import from_epoch_s
from airflow_carbon.simulate import Jobs, simulate, summarize
from airflow_carbon.simulate.foresight import Foresight, parse_forecast

DAY_S = 86_400


@pytest.fixture(scope="module")
def de():
    return bundled_intensity("DE")


def jobs_between(series, first_day: int, days: int, per_day: int, seed: int = 0, duration_s: float = 600.0) -> Jobs:
    rng = np.random.default_rng(seed)
    first_s = series.first_epoch_s + first_day * DAY_S
    ready = np.sort(60 * rng.integers(first_s // 60, (first_s + days * DAY_S) // 60, size=days * per_day))
    count = ready.size
    return Jobs(np.char.add("job-", np.arange(count).astype(str)), ready, np.full(count, duration_s),
                np.full(count, 0.1), np.arange(2, count + 2), "<test>")


def replanned_one_by_one(jobs: Jobs, series, forecaster: str, max_delay: timedelta, refresh_s: int,
                         settings: PolicySettings = DEFAULT_SETTINGS) -> np.ndarray:
    """The trigger's loop written plainly, one job at a time: plan when ready, then at every refresh until a plan's
    start comes before the next refresh."""
    seen = Foresight(series, forecaster, 0.0, max_delay + timedelta(seconds=600 + refresh_s),
                     np.random.default_rng(0))
    starts = np.empty(len(jobs))
    for index in range(len(jobs)):
        now_s = int(jobs.ready_epoch_s[index])
        deadline_s = min(now_s + max_delay.total_seconds(), series.end_epoch_s - 600.0)
        planned = None
        while True:
            next_s = (now_s // refresh_s + 1) * refresh_s
            decision = decide("forecast", now=from_epoch_s(now_s), deadline=from_epoch_s(deadline_s),
                              job=Job(timedelta(seconds=600), 0.1), intensity=seen.shared(now_s),
                              intensity_upper=seen.upper(now_s), planned_start=planned, settings=settings)
            planned = decision.start
            if decision.start.timestamp() < next_s:
                starts[index] = decision.start.timestamp()
                break
            now_s = next_s
    return starts


@pytest.mark.parametrize("forecaster", ["persistence", "seasonal"])
@pytest.mark.parametrize("settings", [DEFAULT_SETTINGS, PolicySettings(replan_margin_pct=0)],
                         ids=["keeping-plans", "batched"])
def test_the_shared_refresh_loop_starts_every_job_where_replanning_it_alone_would(de, forecaster, settings):
    jobs = jobs_between(de, 30, 4, 60)
    max_delay = timedelta(hours=8)
    records = simulate(jobs, de, ["forecast"], max_delay=max_delay, forecast=forecaster,
                       refresh=timedelta(minutes=30), settings=settings)["forecast"]
    expected = replanned_one_by_one(jobs, de, forecaster, max_delay, 1800, settings)
    np.testing.assert_array_equal([r.started_at.timestamp() for r in records], expected)


def test_with_a_perfect_forecast_replanning_changes_nothing(de):
    jobs = jobs_between(de, 40, 5, 110)
    results = simulate(jobs, de, ["forecast", "oracle"], max_delay=timedelta(hours=8),
                       refresh=timedelta(minutes=15))
    rows = {policy: summarize(policy, records) for policy, records in results.items()}
    assert rows["forecast"].scheduled_kg == pytest.approx(rows["oracle"].scheduled_kg, rel=1e-9)


@pytest.mark.parametrize("forecaster", ["persistence", "seasonal", "model", "noise:5%"])
def test_every_forecaster_keeps_every_deadline_and_never_beats_the_oracle(de, forecaster):
    jobs = jobs_between(de, 60, 3, 110, seed=1)
    results = simulate(jobs, de, ["immediate", "threshold", "forecast", "oracle"], max_delay=timedelta(hours=4),
                       forecast=forecaster, refresh=timedelta(minutes=15))
    rows = {policy: summarize(policy, records) for policy, records in results.items()}
    assert all(row.deadline_misses == 0 and row.max_delay_h <= 4 for row in rows.values())
    assert rows["forecast"].scheduled_kg >= rows["oracle"].scheduled_kg * (1 - 1e-12)
    assert rows["forecast"].scheduled_kg < rows["immediate"].scheduled_kg


def test_a_forecast_is_issued_from_the_measured_past_only(de):
    jobs = jobs_between(de, 50, 2, 50, seed=2)
    max_delay = timedelta(hours=8)
    cut_s = int(jobs.ready_epoch_s[-1])  # every job has been planned for the first time by then
    changed = de.values.copy()
    changed[de.start_epoch_s > cut_s] = 1000.0 - changed[de.start_epoch_s > cut_s]
    first = simulate(jobs, de, ["forecast"], max_delay=max_delay, forecast="seasonal", refresh=None)["forecast"]
    again = simulate(jobs, replace(de, values=changed), ["forecast"], max_delay=max_delay, forecast="seasonal",
                     refresh=None)["forecast"]
    assert [r.started_at for r in first] == [r.started_at for r in again]


def test_planned_once_is_what_the_simulator_always_did(de):
    jobs = jobs_between(de, 30, 2, 110, seed=3)
    once = simulate(jobs, de, ["forecast"], max_delay=timedelta(hours=4), forecast_error=0.1, seed=4)
    same = simulate(jobs, de, ["forecast"], max_delay=timedelta(hours=4), forecast="noise:10%", seed=4)
    assert [r.started_at for r in once["forecast"]] == [r.started_at for r in same["forecast"]]


@pytest.mark.parametrize(("text", "says"), [
    ("prophet", "unknown forecast 'prophet'; choose from perfect, noise:5%, persistence, seasonal, model"),
    ("noise", "the noise needs a size"), ("noise:120%", "must lie in [0, 1)"),
    ("seasonal:3", "unknown forecast 'seasonal:3'"),
])
def test_a_bad_forecast_name_is_refused_naming_the_choices(text, says):
    with pytest.raises(ValueError, match=None) as raised:
        parse_forecast(text)
    assert says in str(raised.value)


def test_a_forecaster_and_a_forecast_error_together_are_refused(de):
    jobs = jobs_between(de, 30, 1, 5)
    with pytest.raises(ValueError, match="cannot go with the forecaster 'seasonal'"):
        simulate(jobs, de, ["forecast"], max_delay=timedelta(hours=1), forecast="seasonal", forecast_error=0.05)
    with pytest.raises(ValueError, match="refresh must be positive"):
        simulate(jobs, de, ["forecast"], max_delay=timedelta(hours=1), refresh=timedelta(0))
