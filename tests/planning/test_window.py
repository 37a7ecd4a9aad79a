from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_carbon.planning.window import candidate_starts, edges_within, rate_steps, values_at, window_integrals
from tests.helpers import T0, series, solar_series

T0_S = int(T0.timestamp())


def brute_integral(values: np.ndarray, period_s: int, start_s: float, duration_s: float) -> float:
    """Integrate a step function second by second: slow, obviously right."""
    seconds = np.arange(start_s, start_s + duration_s) + 0.5
    return float(values[((seconds - T0_S) // period_s).astype(int)].sum())


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(0, 900), min_size=3, max_size=30),
    period_s=st.sampled_from([300, 900, 1800, 3600]),
    data=st.data(),
)
def test_window_integrals_match_a_brute_force_integral(values, period_s, data):
    values = np.array(values)
    span_s = values.size * period_s
    duration_s = data.draw(st.integers(1, span_s // 2))
    start_s = T0_S + data.draw(st.integers(0, span_s - duration_s))
    edges = T0_S + period_s * np.arange(values.size + 1, dtype=float)
    got = window_integrals(edges, values, np.array([float(start_s)]), duration_s)[0]
    assert np.isclose(got, brute_integral(values, period_s, start_s, duration_s), rtol=1e-9, atol=1e-6)


def test_edges_within_are_strictly_inside():
    hourly = series([1, 2, 3, 4])
    assert list(edges_within(hourly, T0_S + 1800, T0_S + 3 * 3600)) == [T0_S + 3600, T0_S + 7200]
    assert list(edges_within(hourly, T0_S, T0_S + 3600)) == []
    assert list(edges_within(hourly, T0_S - 7200, T0_S + 99 * 3600)) == [T0_S + k * 3600 for k in range(5)]


def test_values_outside_a_series_are_zero():
    solar = solar_series([2.0, 3.0])
    assert list(values_at(solar, np.array([T0_S - 1, T0_S, T0_S + 3600, T0_S + 7200]))) == [0.0, 2.0, 3.0, 0.0]
    assert list(values_at(None, np.array([T0_S]))) == [0.0]


def test_rate_steps_merge_both_grids_and_subtract_solar():
    intensity = series([100.0, 200.0])
    solar = solar_series([0.0, 0.5, 2.0, 0.0], period_s=1800)
    edges, rates_g_per_s, solar_kw = rate_steps(intensity, 1.0, solar, T0_S, T0_S + 7200)
    assert list(edges - T0_S) == [0, 1800, 3600, 5400, 7200]
    assert list(solar_kw) == [0.0, 0.5, 1.0, 0.0]
    assert np.allclose(rates_g_per_s * 3600, [100.0, 50.0, 0.0, 200.0])


def test_candidate_starts_include_both_ends_edges_and_edges_minus_duration():
    edges = np.array([0.0, 100.0, 200.0, 300.0])
    assert list(candidate_starts(edges, 10.0, 250.0, 30.0)) == [10.0, 70.0, 100.0, 170.0, 200.0, 250.0]
