"""A window search in the style of the cats scheduler, to measure our vectorised planner against.

cats (the Climate-Aware Task Scheduler) keeps the forecast as a list of point estimates,
tries a start at every data point in a Python loop, and integrates each window point by
point, interpolating where the window ends between two points. This module follows that
structure, written afresh, with one change of meaning: a value holds over its period
(a step function, as in our ``Series``) instead of being joined linearly to the next
point, so its optimum and ours are the same number and can be compared to 1e-6.

Like cats it only tries starts at data points. Our planner also tries ``now``, the
deadline and the edges minus the duration; when ``now`` is on a data point and the
duration is a whole number of periods, those are data points too and the two searches
range over the same starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_carbon.signals import Series

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class PointEstimate:
    """The forecast intensity (g/kWh) from ``epoch_s`` until the next point."""

    epoch_s: float
    value: float


@dataclass(frozen=True)
class WindowEstimate:
    """The mean intensity (g/kWh) over one candidate window ``[start_s, end_s)``."""

    start_s: float
    end_s: float
    mean_g_per_kwh: float


def point_estimates(series: Series) -> list[PointEstimate]:
    """The series as cats holds a forecast: one small object per data point."""
    return [PointEstimate(float(t), float(v)) for t, v in zip(series.start_epoch_s, series.values, strict=True)]


class WindowedForecast:
    """Every window of ``duration_s`` that starts on a data point in ``[earliest_s, latest_s]`` and fits in the data.

    Indexing computes one window's mean on demand, as cats does, so ``min`` over the
    object walks all windows in plain Python.
    """

    def __init__(self, points: list[PointEstimate], period_s: float, duration_s: float,
                 earliest_s: float, latest_s: float) -> None:
        self.points, self.period_s, self.duration_s = points, period_s, duration_s
        data_end_s = points[-1].epoch_s + period_s if points else earliest_s
        latest_s = min(latest_s, data_end_s - duration_s)
        self.first = 0
        while self.first < len(points) and points[self.first].epoch_s < earliest_s:
            self.first += 1
        last = self.first
        while last < len(points) and points[last].epoch_s <= latest_s:
            last += 1
        self.count = last - self.first

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> WindowEstimate:
        if not 0 <= index < self.count:
            raise IndexError(index)
        start = self.first + index
        start_s = self.points[start].epoch_s
        end_s = start_s + self.duration_s
        integral = 0.0
        point = start
        while point < len(self.points) and self.points[point].epoch_s + self.period_s <= end_s:
            integral += self.points[point].value * self.period_s
            point += 1
        if point < len(self.points) and self.points[point].epoch_s < end_s:
            integral += self.points[point].value * (end_s - self.points[point].epoch_s)
        return WindowEstimate(start_s, end_s, integral / self.duration_s)


def cats_style_best(points: list[PointEstimate], period_s: float, *, now_s: float, deadline_s: float,
                    duration_s: float, energy_kwh: float) -> tuple[float, float]:
    """The best start (epoch s) at a data point in ``[now_s, deadline_s]`` and the job's emissions (g) there."""
    windows = WindowedForecast(points, period_s, duration_s, now_s, deadline_s)
    if not len(windows):
        raise ValueError("no window of the job fits in the forecast between now and the deadline")
    best = windows[0]
    for index in range(1, len(windows)):
        window = windows[index]
        if window.mean_g_per_kwh < best.mean_g_per_kwh:
            best = window
    return best.start_s, best.mean_g_per_kwh * energy_kwh
