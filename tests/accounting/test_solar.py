from __future__ import annotations

import numpy as np
import pytest

from airflow_carbon.accounting import SolarBudget
from airflow_carbon.accounting.solar import free_power_kw, interval_means, reservable_kw, shared_kw, slot_grid
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


# -- the arithmetic of the metrics store's solar ledger -------------------------------------------

def test_slot_grid_gives_the_epoch_aligned_slots_an_interval_touches_and_its_overlap_with_each():
    starts, overlap_s = slot_grid(T0_S + 30, T0_S + 150, 60)
    assert list(starts - T0_S) == [0, 60, 120] and list(overlap_s) == [30, 60, 30]
    starts, overlap_s = slot_grid(T0_S + 60, T0_S + 120, 60)
    assert list(starts - T0_S) == [60] and list(overlap_s) == [60]
    for empty in (T0_S + 60, T0_S + 90):
        assert slot_grid(empty, empty, 60)[0].size == 0
    with pytest.raises(ValueError, match="before it starts"):
        slot_grid(T0_S + 60, T0_S, 60)


def test_interval_means_are_time_weighted_and_say_how_much_of_each_interval_the_series_knows():
    five_minutes = solar_series([2.0, 4.0], period_s=300)  # [T0, T0 + 600 s)
    lo = T0_S + np.array([0, 270, 570, 600, -60])
    means, known = interval_means(five_minutes, lo, lo + 60)
    assert np.allclose(means, [2.0, (30 * 2.0 + 30 * 4.0) / 60, 2.0, 0.0, 0.0])
    assert np.allclose(known, [1.0, 1.0, 0.5, 0.0, 0.0])
    means, known = interval_means(None, lo, lo + 60)
    assert not means.any() and not known.any()
    assert interval_means(five_minutes, np.array([T0_S]), np.array([T0_S]))[0][0] == 0.0


def test_reservable_kw_is_what_the_forecast_leaves_after_other_plans_at_most_the_draw():
    assert list(reservable_kw(np.array([3.0, 3.0, 3.0, 0.0]), np.array([0.0, 2.0, 4.0, 0.0]), 2.0)) == [
        2.0, 1.0, 0.0, 0.0]
    assert list(free_power_kw(np.array([1.0, 2.0]), np.array([1.5, 0.5]))) == [0.0, 1.5]


def test_shared_kw_splits_the_output_by_draw_and_never_gives_more_than_it_whatever_the_order():
    rng = np.random.default_rng(7)
    for _ in range(200):
        draws_kw = rng.uniform(0.0, 3.0, size=rng.integers(1, 6))
        output_kw = np.array([rng.uniform(0.0, 8.0)])
        total_kw = np.array([draws_kw.sum()])
        shares = {}
        for order in (rng.permutation(draws_kw.size), rng.permutation(draws_kw.size)):
            used_kw, claimed = np.zeros(draws_kw.size), np.zeros(1)
            for i in order:
                used_kw[i] = shared_kw(output_kw, float(draws_kw[i]), total_kw, claimed)[0]
                claimed += used_kw[i]
            assert used_kw.sum() <= output_kw[0] + 1e-9 and np.all(used_kw <= draws_kw + 1e-12)
            shares[tuple(order)] = used_kw
        # With every draw known, each try gets min(its draw, its share of the output): the order does not matter.
        for used_kw in shares.values():
            assert np.allclose(used_kw, np.minimum(draws_kw, output_kw * draws_kw / total_kw))


def test_shared_kw_gives_the_rest_when_others_claimed_without_counting_this_draw():
    # Another try claimed 2 of 2.5 kW before this one's draw was known: this one gets what is left.
    assert shared_kw(np.array([2.5]), 2.0, np.array([4.0]), np.array([2.0]))[0] == pytest.approx(0.5)
    assert shared_kw(np.array([2.5, 1.0]), 0.0, np.array([0.0, 0.0]), np.array([0.0, 0.0])).tolist() == [0.0, 0.0]
