"""Emissions of a job over sliding windows of a step function, for every start at once.

A job drawing ``power_kw`` emits at ``intensity(t) * max(power_kw - solar(t), 0)``: a step
function whose edges are those of both series. Its cumulative integral is piecewise
linear, so one ``cumsum`` and two ``searchsorted`` calls give the emissions of every
candidate window, and the best window always starts at ``now``, the deadline, an edge,
or an edge minus the duration.
"""

from __future__ import annotations

import numpy as np

from airflow_carbon.signals import Series

SECONDS_PER_HOUR = 3600.0


def values_at(series: Series | None, epoch_s: np.ndarray) -> np.ndarray:
    """The value holding at each instant; 0 outside the series (no solar known = none)."""
    if series is None or not len(series):
        return np.zeros(epoch_s.shape)
    index = (epoch_s - series.first_epoch_s) // series.period_s
    inside = (index >= 0) & (index < len(series))
    if inside.all():
        return series.values[index]
    return np.where(inside, series.values[np.clip(index, 0, len(series) - 1)], 0.0)


def edges_within(series: Series | None, start_s: float, end_s: float) -> np.ndarray:
    """The period edges strictly inside ``(start_s, end_s)``, found by arithmetic on the even grid."""
    if series is None or not len(series):
        return np.empty(0)
    first_edge = max(int((start_s - series.first_epoch_s) // series.period_s) + 1, 0)
    last_edge = min(-int((series.first_epoch_s - end_s) // series.period_s) - 1, len(series))
    return series.first_epoch_s + series.period_s * np.arange(first_edge, last_edge + 1, dtype=np.float64)


def steps(
    intensity: Series, power_kw: float, solar: Series | None, start_s: float, end_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges of the periods in ``[start_s, end_s)``, the intensity in each and the solar power a job can use there."""
    edges = np.concatenate(([start_s], edges_within(intensity, start_s, end_s), [end_s]))
    if solar is not None:
        edges = np.union1d(edges, edges_within(solar, start_s, end_s))
    period_starts = edges[:-1].astype(np.int64)
    return edges, values_at(intensity, period_starts), np.minimum(values_at(solar, period_starts), power_kw)


def rate_steps(
    intensity: Series, power_kw: float, solar: Series | None, start_s: float, end_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges, grid emissions (g/s) and solar power used (kW) of a job running anywhere in ``[start_s, end_s)``."""
    edges, intensity_g_per_kwh, solar_used_kw = steps(intensity, power_kw, solar, start_s, end_s)
    return edges, intensity_g_per_kwh * (power_kw - solar_used_kw) / SECONDS_PER_HOUR, solar_used_kw


def window_integrals(edges: np.ndarray, rates: np.ndarray, starts: np.ndarray, duration_s: float) -> np.ndarray:
    """Integral of the step function ``rates`` over ``[s, s + duration_s)`` for every ``s`` in ``starts``."""
    cumulative = np.concatenate(([0.0], np.cumsum(rates * np.diff(edges))))

    def integral_to(t: np.ndarray) -> np.ndarray:
        index = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, rates.size - 1)
        return cumulative[index] + rates[index] * (t - edges[index])

    return integral_to(starts + duration_s) - integral_to(starts)


def candidate_starts(edges: np.ndarray, earliest_s: float, latest_s: float, duration_s: float) -> np.ndarray:
    """Where the emissions over a window can be smallest: the ends of the range, edges, and edges minus the duration."""
    points = np.concatenate(([earliest_s, latest_s], edges, edges - duration_s))
    return np.unique(points[(points >= earliest_s) & (points <= latest_s)])
