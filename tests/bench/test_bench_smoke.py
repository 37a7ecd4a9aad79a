"""The benchmark code runs on tiny inputs, and its cats-style baseline agrees with our planner.

The agreement is a correctness cross-check of two independent window searches, not a
timing test: no assertion here depends on how fast anything ran.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from airflow_carbon.planning import Job, decide
from airflow_carbon.planning.window import rate_steps, window_integrals
from airflow_carbon.signals.bundled import bundled_intensity
from airflow_carbon.signals.series import from_epoch_s
from bench import run
from bench.baseline import WindowedForecast, cats_style_best, point_estimates
from bench.jobs import END_MARGIN_S, random_forecast, random_jobs

START_S = 1_704_067_200


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("period_s", "periods_per_job"), [(300, 12), (900, 1), (900, 7), (1800, 4)])
def test_baseline_and_planner_pick_the_same_start_and_emissions(seed, period_s, periods_per_job):
    rng = np.random.default_rng(seed)
    forecast = random_forecast(rng, points=int(rng.integers(100, 400)), period_s=period_s,
                               start_epoch_s=START_S + period_s * int(rng.integers(0, 1000)))
    job = Job(timedelta(seconds=period_s * periods_per_job), float(rng.uniform(0.1, 5.0)))
    now_s = forecast.first_epoch_s + period_s * int(rng.integers(0, 20))
    deadline_s = now_s + period_s * int(rng.integers(1, len(forecast) - 20 - periods_per_job))

    decision = decide("forecast", now=from_epoch_s(now_s), deadline=from_epoch_s(deadline_s), job=job,
                      intensity=forecast)
    start_s, emissions_g = cats_style_best(point_estimates(forecast), period_s, now_s=now_s, deadline_s=deadline_s,
                                           duration_s=job.duration_s, energy_kwh=job.energy_kwh)

    assert decision.start.timestamp() == start_s
    assert decision.expected_emissions_at_start_g == pytest.approx(emissions_g, abs=1e-6, rel=0)


@pytest.mark.parametrize("duration_s", [60, 450, 2999, 5400])
def test_baseline_windows_interpolate_at_the_edge_like_the_planner(duration_s):
    """With durations that cut a period, each baseline window equals our integral over the same window."""
    forecast = random_forecast(np.random.default_rng(duration_s), points=96, period_s=900, start_epoch_s=START_S)
    windows = WindowedForecast(point_estimates(forecast), 900, duration_s, forecast.first_epoch_s,
                               forecast.end_epoch_s)
    starts = np.array([windows[i].start_s for i in range(len(windows))])
    edges, rates, _ = rate_steps(forecast, 1.0, None, forecast.first_epoch_s, forecast.end_epoch_s)
    ours_g = window_integrals(edges, rates, starts, duration_s)

    baseline_g = np.array([windows[i].mean_g_per_kwh for i in range(len(windows))]) * duration_s / 3600.0
    assert starts[-1] + duration_s <= forecast.end_epoch_s < starts[-1] + duration_s + 900
    np.testing.assert_allclose(baseline_g, ours_g, rtol=0, atol=1e-6)


def test_random_jobs_are_seeded_whole_minutes_inside_the_series():
    series = bundled_intensity("FR")
    jobs = random_jobs(series, 1000, seed=7)
    again = random_jobs(series, 1000, seed=7)

    np.testing.assert_array_equal(jobs.ready_epoch_s, again.ready_epoch_s)
    assert np.all(jobs.ready_epoch_s % 60 == 0)
    assert jobs.ready_epoch_s.min() >= series.first_epoch_s
    assert jobs.ready_epoch_s.max() < series.end_epoch_s - END_MARGIN_S
    assert len(set(jobs.job_id)) == len(jobs)


def test_planning_section_runs_and_agrees():
    result = run.bench_planning(decisions=3, scaling_decisions=2)

    assert result.failures == []
    assert result.headline.same_start == 3
    assert "| 24 h | 2 |" in result.markdown()


def test_simulate_section_runs_without_misses():
    result = run.bench_simulate(40)

    assert result.failures == []
    assert result.forecast.jobs == 40
    assert "40 jobs over the German year" in result.markdown()


def test_savings_section_runs_and_no_policy_beats_the_oracle():
    (fr,) = run.bench_savings(60, regions=("FR",), max_delays=(timedelta(hours=4),), errors=(0.0, 0.1))

    assert fr.failures == []
    assert [cell.error for cell in fr.cells] == [0.0, 0.1]
    assert fr.cells[0].of_oracle_pct("forecast") == pytest.approx(100.0)
    for cell in fr.cells:
        oracle_kg = cell.summaries["oracle"].scheduled_kg
        assert all(s.scheduled_kg >= oracle_kg * (1 - 1e-9) for s in cell.summaries.values())
    assert f"**{fr.threshold_g_per_kwh:.1f} g/kWh**" in fr.markdown()


def test_entry_point_writes_the_report(tmp_path):
    output = tmp_path / "RESULTS.md"

    assert run.main(["--quick", "--only", "planning", "--output", str(output)]) == 0
    report = output.read_text()
    assert report.startswith("# Benchmarks\n")
    assert "--only planning" in report
    assert "all checks passed" in report
