from __future__ import annotations

import numpy as np

from airflow_carbon.simulate.noise import noisy_forecast
from tests.helpers import T0, series

T0_S = int(T0.timestamp())


def test_the_current_period_is_exact_and_the_rest_is_a_labelled_forecast():
    actual = series([100.0] * 96, period_s=900)
    seen = noisy_forecast(actual, T0_S + 1000, T0_S + 24 * 3600, 0.1, np.random.default_rng(1))
    assert seen.first_epoch_s == T0_S + 900 and seen.values[0] == 100.0
    assert seen.kind == "forecast" and np.any(seen.values != 100.0)


def test_the_error_grows_with_lead_time_to_the_given_spread_at_a_day():
    actual = series([100.0] * 97, period_s=900)
    rng = np.random.default_rng(7)
    draws = np.array([noisy_forecast(actual, T0_S, actual.end_epoch_s, 0.1, rng).values for _ in range(2000)])
    spread = draws.std(axis=0) / 100.0
    assert abs(spread[96] - 0.1) < 0.01  # 24 h ahead
    assert abs(spread[24] - 0.05) < 0.007  # 6 h ahead: sqrt(6 / 24) of it
    assert np.all(draws >= 0)
