"""Forecast error for honest simulations: a planner must not see the future it is scored on."""

from __future__ import annotations

import numpy as np

from airflow_carbon.signals import Series


def noisy_forecast(actual: Series, now_s: float, until_s: float, error: float, rng: np.random.Generator) -> Series:
    """The part of ``actual`` over ``[now_s, until_s)`` as a forecast issued at ``now_s`` would show it.

    The relative error is a random walk over the periods ahead, so neighbouring periods
    err alike and the spread grows with lead time: its standard deviation is ``error``
    at 24 h ahead and ``error * sqrt(lead / 24 h)`` in general. The current period is
    known exactly.
    """
    first = max(int((now_s - actual.first_epoch_s) // actual.period_s), 0)
    last = min(int(-((actual.first_epoch_s - until_s) // actual.period_s)), len(actual))
    values = actual.values[first:last]
    steps = rng.standard_normal(values.size) * np.sqrt(actual.period_s / 86400.0)
    steps[0] = 0.0
    relative_error = error * np.cumsum(steps)
    return Series(actual.start_epoch_s[first:last], np.maximum(values * (1.0 + relative_error), 0.0), actual.period_s,
                  actual.region, actual.unit, "forecast", actual.source, actual.replayed, actual.estimated)
