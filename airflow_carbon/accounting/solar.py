"""On-site solar as a shared budget: jobs running at the same time split it, first come first served."""

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
