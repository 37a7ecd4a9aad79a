"""On-site solar as a shared budget: jobs running at the same time split it, and no kWh counts twice.

``SolarBudget`` is the simulator's budget in memory, first come first served. The functions below are
the arithmetic of the metrics store's solar ledger, over numpy arrays on a grid of slots aligned to the
epoch: which slots an interval touches, a series' mean over each, and how tries share a slot's output.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from airflow_carbon.planning.window import values_at
from airflow_carbon.signals import Series


class SolarBudget:
    """The solar energy left in each step of a fine grid, drawn down as jobs are placed.

    :param solar: on-site solar power (kW).
    :param step_s: the grid; jobs that cover part of a step draw for that part only.
    """

    def __init__(self, solar: Series, step_s: int = 60) -> None:
        if solar.period_s % step_s:
            raise ValueError(f"solar period {solar.period_s} s is not a multiple of the budget step {step_s} s")
        self.solar, self.step_s = solar, step_s
        self.first_epoch_s = solar.first_epoch_s
        step_starts = self.first_epoch_s + step_s * np.arange((solar.end_epoch_s - self.first_epoch_s) // step_s)
        self.remaining_kwh = values_at(solar, step_starts) * step_s / 3600.0

    def _steps(self, start_s: float, end_s: float) -> tuple[int, int]:
        first = int(np.clip((start_s - self.first_epoch_s) // self.step_s, 0, self.remaining_kwh.size))
        last = int(np.clip(-((self.first_epoch_s - end_s) // self.step_s), first, self.remaining_kwh.size))
        return first, last

    def _series(self, first: int, kw: np.ndarray) -> Series:
        return replace(self.solar, start_epoch_s=self.first_epoch_s + self.step_s * np.arange(first, first + kw.size),
                       values=kw, period_s=self.step_s)

    def remaining(self, start_s: float, end_s: float) -> Series:
        """What is still free over ``[start_s, end_s)``, as power (kW), for a planner to see."""
        first, last = self._steps(start_s, end_s)
        return self._series(first, self.remaining_kwh[first:last] * 3600.0 / self.step_s)

    def take(self, start_s: float, end_s: float, power_kw: float) -> Series:
        """Draw for a job at ``power_kw`` over ``[start_s, end_s)``; returns the power it got while running."""
        first, last = self._steps(start_s, end_s)
        step_starts = self.first_epoch_s + self.step_s * np.arange(first, last)
        overlap_s = np.minimum(step_starts + self.step_s, end_s) - np.maximum(step_starts, start_s)
        taken_kwh = np.minimum(power_kw * overlap_s / 3600.0, self.remaining_kwh[first:last])
        self.remaining_kwh[first:last] -= taken_kwh
        return self._series(first, np.divide(taken_kwh * 3600.0, overlap_s, out=np.zeros_like(taken_kwh),
                                             where=overlap_s > 0))


def slot_grid(start_s: float, end_s: float, slot_s: int) -> tuple[np.ndarray, np.ndarray]:
    """The starts of the epoch-aligned slots that ``[start_s, end_s)`` touches, and its overlap with each (s)."""
    if end_s < start_s:
        raise ValueError(f"interval ends at {end_s} s, before it starts at {start_s} s")
    first = int(start_s // slot_s)
    last = -int(-end_s // slot_s) if end_s > start_s else first
    slot_starts = slot_s * np.arange(first, last, dtype=np.int64)
    return slot_starts, np.minimum(slot_starts + slot_s, end_s) - np.maximum(slot_starts, start_s)


def interval_means(series: Series | None, lo_s: np.ndarray, hi_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The time-weighted mean of ``series`` over each ``[lo_s, hi_s)`` (0 where it knows nothing), and the share of
    each interval it knows (1: it covers all of it; 0: none of it).

    One cumulative sum of the series gives every interval's integral: no loop over intervals.
    """
    lo_s, hi_s = np.asarray(lo_s, dtype=np.float64), np.asarray(hi_s, dtype=np.float64)
    if series is None or not len(series):
        return np.zeros(lo_s.shape), np.zeros(lo_s.shape)
    bounds = series.bounds_epoch_s
    cumulative = np.concatenate(([0.0], np.cumsum(series.values * series.period_s)))

    def integral_to(t: np.ndarray) -> np.ndarray:
        t = np.clip(t, bounds[0], bounds[-1])
        index = np.clip(np.searchsorted(bounds, t, side="right") - 1, 0, len(series) - 1)
        return cumulative[index] + series.values[index] * (t - bounds[index])

    length_s = hi_s - lo_s
    known_s = np.clip(hi_s, bounds[0], bounds[-1]) - np.clip(lo_s, bounds[0], bounds[-1])
    positive = length_s > 0
    means = np.divide(integral_to(hi_s) - integral_to(lo_s), length_s, out=np.zeros(lo_s.shape), where=positive)
    return means, np.divide(known_s, length_s, out=np.zeros(lo_s.shape), where=positive)


def free_power_kw(supply_kw: np.ndarray, taken_kw: np.ndarray) -> np.ndarray:
    """What others left of the supply in each slot, never below 0."""
    return np.maximum(np.asarray(supply_kw, dtype=np.float64) - taken_kw, 0.0)


def reservable_kw(forecast_kw: np.ndarray, reserved_by_others_kw: np.ndarray, draw_kw: float) -> np.ndarray:
    """The solar a try may plan on in each slot: what the forecast leaves after others' plans, at most its draw."""
    return np.minimum(draw_kw, free_power_kw(forecast_kw, reserved_by_others_kw))


def shared_kw(output_kw: np.ndarray, draw_kw: float, total_draw_kw: np.ndarray,
              used_by_others_kw: np.ndarray) -> np.ndarray:
    """The solar a try really had in each slot: its share of the output by draw, within what others left.

    ``total_draw_kw`` counts every try drawing in the slot, this one included. Whatever order the tries of a
    slot claim in, their shares add up to at most the output.
    """
    output_kw = np.asarray(output_kw, dtype=np.float64)
    share_kw = np.divide(output_kw * draw_kw, total_draw_kw, out=np.zeros(output_kw.shape),
                         where=np.asarray(total_draw_kw) > 0)
    return np.minimum(np.minimum(draw_kw, share_kw), free_power_kw(output_kw, used_by_others_kw))
