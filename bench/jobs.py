"""Seeded inputs for the benchmarks: job streams over a real series and random forecasts.

Everything is drawn from ``numpy.random.default_rng(seed)`` so a figure in RESULTS.md can
be reproduced exactly from the command that made it.
"""

from __future__ import annotations

import numpy as np

from airflow_carbon.signals import Series
from airflow_carbon.simulate.jobs import Jobs

SECONDS_PER_DAY = 86_400
#: Jobs are ready no later than this before the series ends, so even a 24 h budget plus the job fits.
END_MARGIN_S = 2 * SECONDS_PER_DAY


def random_jobs(
    series: Series, count: int, *, seed: int, duration_s: float = 3600.0, energy_kwh: float = 1.0
) -> Jobs:
    """``count`` jobs ready at whole minutes, uniformly over the series' span less the last two days.

    Whole minutes, not series periods, so jobs rarely start on a period edge and the
    planners must handle windows that cut periods.
    """
    first_minute = -(-series.first_epoch_s // 60)
    last_minute = (series.end_epoch_s - END_MARGIN_S) // 60
    if last_minute <= first_minute:
        raise ValueError(f"series {series.region!r} is too short for jobs with a {END_MARGIN_S // 3600} h margin")
    rng = np.random.default_rng(seed)
    ready_epoch_s = 60 * rng.integers(first_minute, last_minute, size=count, dtype=np.int64)
    return Jobs(
        job_id=np.char.add("job-", np.arange(count).astype(str)),
        ready_epoch_s=ready_epoch_s,
        duration_s=np.full(count, float(duration_s)),
        energy_kwh=np.full(count, float(energy_kwh)),
        line=np.arange(2, count + 2),
        path=f"<random_jobs seed={seed}>",
    )


def random_forecast(rng: np.random.Generator, *, points: int, period_s: int, start_epoch_s: int) -> Series:
    """A grid-like forecast: a daily cycle with a random phase, a slow drift and noise.

    The noise is continuous, so two windows almost never tie and the planners under
    comparison must find the same best start, not merely an equally good one.
    """
    hours = period_s * np.arange(points) / 3600.0
    daily = rng.uniform(50.0, 150.0) * np.sin(2 * np.pi * hours / 24.0 + rng.uniform(0.0, 2 * np.pi))
    drift = np.cumsum(rng.normal(0.0, 3.0, points))
    values = np.maximum(rng.uniform(150.0, 450.0) + daily + drift + rng.normal(0.0, 15.0, points), 1.0)
    return Series(start_epoch_s + period_s * np.arange(points), values, period_s, "BENCH", kind="forecast")
