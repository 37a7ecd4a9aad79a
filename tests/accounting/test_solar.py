from __future__ import annotations

import numpy as np
import pytest

from airflow_carbon.accounting import SolarBudget
from tests.helpers import T0, solar_series

T0_S = int(T0.timestamp())


def test_jobs_running_at_the_same_time_share_the_solar():
    budget = SolarBudget(solar_series([3.0, 3.0]))
    first = budget.take(T0_S, T0_S + 3600, power_kw=2.0)
    second = budget.take(T0_S, T0_S + 3600, power_kw=2.0)
    assert np.allclose(first.values, 2.0) and np.allclose(second.values, 1.0)
    third = budget.take(T0_S + 1800, T0_S + 3600, power_kw=2.0)
    assert np.allclose(third.values, 0.0)
    assert np.allclose(budget.remaining(T0_S, T0_S + 7200).values[:60], 0.0)
    assert np.allclose(budget.remaining(T0_S, T0_S + 7200).values[60:], 3.0)


def test_a_job_covering_part_of_a_step_draws_for_that_part_only():
    budget = SolarBudget(solar_series([1.2]), step_s=60)
    got = budget.take(T0_S + 30, T0_S + 90, power_kw=1.0)
    kwh = float(np.sum(got.values * got.period_s)) / 3600 * 0.5  # each of its two steps is half covered
    assert kwh == pytest.approx(1.0 * 60 / 3600)
    assert budget.remaining_kwh[0] == pytest.approx(1.2 / 60 - 1.0 / 120)


def test_a_solar_period_off_the_step_grid_is_refused():
    with pytest.raises(ValueError, match="not a multiple"):
        SolarBudget(solar_series([1.0], period_s=90))
