"""The built-in forecasters as pure functions over the measured past.

Each takes the values of the whole periods measured before the forecast's origin (``past``,
oldest first, on an even grid whose first period starts at ``first_epoch_s``) and returns
``steps`` values from the origin on. Nothing else goes in, so nothing after the origin can.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from airflow_carbon.errors import CarbonError

SECONDS_PER_DAY = 86_400
SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY
#: ``seasonal``: how many recent days make the daily profile, and weeks the weekly one.
PROFILE_DAYS = 7
PROFILE_WEEKS = 3
#: ``seasonal``: the gap between the last measured value and the profile halves over this lead time.
LEVEL_HALF_LIFE_S = 3 * 3600
#: ``model``: days of history it fits on, the least it needs, and how often it refits.
MODEL_TRAIN_DAYS = 56
MODEL_MIN_DAYS = 14
MODEL_REFIT_S = 7 * SECONDS_PER_DAY
MODEL_RIDGE = 1.0
#: ``model``: fits kept, so that intervals (forecasts re-issued over two past weeks) refit each day once.
MODEL_FITS_KEPT = 32
#: ``model``: lead times (s) over which the last measured level's weight decays, one feature each.
MODEL_DECAYS_S = (1800.0, 3 * 3600.0, 12 * 3600.0)
#: ``model``: lead times (s) at which its coefficients change, so near and far leads weigh the features apart.
MODEL_LEAD_BUCKETS_S = (3600.0, 3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 24 * 3600.0)


class ForecastError(CarbonError, ValueError):
    """A forecast that cannot be made from the history given (too short, wrong grid)."""


def _per_day(period_s: int) -> int:
    if SECONDS_PER_DAY % period_s:
        raise ForecastError(f"a forecaster needs a period that divides a day; got {period_s} s")
    return SECONDS_PER_DAY // period_s


def _need_days(past: np.ndarray, period_s: int, days: int, name: str) -> int:
    per_day = _per_day(period_s)
    if past.size < days * per_day:
        raise ForecastError(f"{name} needs at least {days} day(s) of measured history before the forecast, "
                            f"got {past.size * period_s / 3600:g} h")
    return per_day


def persistence(past: np.ndarray, first_epoch_s: int, period_s: int, steps: int) -> np.ndarray:
    """The same time on the last measured day, repeated."""
    per_day = _need_days(past, period_s, 1, "persistence")
    return past[past.size - per_day + np.arange(steps) % per_day].copy()


def _profile(values: np.ndarray, targets: np.ndarray, lag: int, count: int, known: np.ndarray | int) -> np.ndarray:
    """Mean of the ``count`` latest values at ``targets - k * lag`` measured before ``known`` (per target)."""
    first_back = np.maximum((targets - known) // lag + 1, 1)  # the least k >= 1 with targets - k * lag < known
    index = targets[:, None] - lag * (first_back[:, None] + np.arange(count)[None, :])
    present = index >= 0
    return np.where(present, values[np.clip(index, 0, None)], 0.0).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _baseline(values: np.ndarray, period_s: int, targets: np.ndarray, known: np.ndarray | int) -> np.ndarray:
    """Half the daily profile of the last days, half the weekly one once a week is measured."""
    per_day = _per_day(period_s)
    daily = _profile(values, targets, per_day, PROFILE_DAYS, known)
    weekly = _profile(values, targets, 7 * per_day, PROFILE_WEEKS, known)
    return np.where(np.asarray(known) >= 7 * per_day, 0.5 * daily + 0.5 * weekly, daily)


def seasonal(past: np.ndarray, first_epoch_s: int, period_s: int, steps: int) -> np.ndarray:
    """Daily and weekly profiles, plus the last measured gap to them, decaying with lead time."""
    _need_days(past, period_s, 1, "seasonal")
    targets = past.size + np.arange(steps)
    base = _baseline(past, period_s, targets, past.size)
    gap = past[-1] - _baseline(past, period_s, np.array([past.size - 1]), past.size)[0]
    lead_s = period_s * (np.arange(steps) + 1.0)
    return np.maximum(base + gap * 0.5 ** (lead_s / LEVEL_HALF_LIFE_S), 0.0)


def _features(values: np.ndarray, first_epoch_s: int, period_s: int, origins: np.ndarray,
              targets: np.ndarray) -> np.ndarray:
    """One row of features per (origin, target) pair; a row reads only ``values[:origin]``."""
    per_day = _per_day(period_s)
    lead_s = period_s * (targets - origins + 1.0)
    last = values[origins - 1]
    base = _baseline(values, period_s, targets, origins)
    gap = last - _baseline(values, period_s, origins - 1, origins)
    day_ago = _profile(values, targets, per_day, 1, origins)
    day_ago_then = _profile(values, origins - 1, per_day, 1, origins)
    shape_day = last + day_ago - day_ago_then  # yesterday's change since this time of day, from today's level
    shape_profile = last + base - _baseline(values, period_s, origins - 1, origins)
    week_ago = _profile(values, targets, 7 * per_day, 1, origins)
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    mean_day = (cumulative[origins] - cumulative[origins - per_day]) / per_day
    epoch_s = first_epoch_s + period_s * targets
    phase = 2 * np.pi * (epoch_s % SECONDS_PER_DAY) / SECONDS_PER_DAY
    weekday = (epoch_s // SECONDS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday; 0 is Monday
    decays = [np.exp(-lead_s / tau) for tau in MODEL_DECAYS_S]
    shared = np.column_stack([
        np.ones(targets.size), base, day_ago, week_ago, mean_day, shape_day, shape_profile,
        *[gap * d for d in decays], *[last * d for d in decays],
        np.sin(phase), np.cos(phase), np.sin(2 * phase), np.cos(2 * phase),
        weekday == 5, weekday == 6, (weekday == 5) * np.cos(phase), (weekday == 6) * np.cos(phase),
    ])
    bucket = np.searchsorted(MODEL_LEAD_BUCKETS_S, lead_s, side="right")
    rows = np.zeros((targets.size, shared.shape[1] * (len(MODEL_LEAD_BUCKETS_S) + 1)))
    for which in range(len(MODEL_LEAD_BUCKETS_S) + 1):  # each lead bucket has its own coefficients
        chosen = bucket == which
        rows[chosen, which * shared.shape[1]:(which + 1) * shared.shape[1]] = shared[chosen]
    return rows


class RidgeModel:
    """Ridge regression over calendar and lagged features, refitted once a week on the weeks before it.

    One linear model per band of lead times (``MODEL_LEAD_BUCKETS_S``); within a band the lead enters
    through the decaying weight of the last
    measured level. Each fit is kept (keyed by the bytes it was fitted on), so a simulation
    issuing a forecast every quarter hour fits once a week, and a changed past is never served a stale fit.
    """

    name = "model"

    def __init__(self) -> None:
        self._fits: dict[tuple, np.ndarray] = {}

    def stands_in(self, past: np.ndarray, period_s: int) -> str:
        """The forecaster that really answers: ``seasonal`` until two weeks are measured, then ``model``."""
        return self.name if past.size >= MODEL_MIN_DAYS * _per_day(period_s) else "seasonal"

    def __call__(self, past: np.ndarray, first_epoch_s: int, period_s: int, steps: int) -> np.ndarray:
        if self.stands_in(past, period_s) != self.name:
            return seasonal(past, first_epoch_s, period_s, steps)
        coefficients = self.coefficients(past, first_epoch_s, period_s, steps)
        rows = _features(past, first_epoch_s, period_s, np.full(steps, past.size), past.size + np.arange(steps))
        return np.maximum(rows @ coefficients, 0.0)

    def coefficients(self, past: np.ndarray, first_epoch_s: int, period_s: int, steps: int) -> np.ndarray:
        """The fit made at the last refit instant (a multiple of ``MODEL_REFIT_S``) before the origin, from the data
        before that instant."""
        per_day = _per_day(period_s)
        origin_s = first_epoch_s + period_s * past.size
        fit_end = (origin_s - origin_s % MODEL_REFIT_S - first_epoch_s) // period_s
        fit_end = max(min(fit_end, past.size), MODEL_MIN_DAYS * per_day)
        train = past[max(fit_end - (MODEL_TRAIN_DAYS + 8) * per_day, 0):fit_end]
        offset = fit_end - train.size
        key = (first_epoch_s + offset * period_s, period_s, steps, hash(train.tobytes()))
        if key not in self._fits:
            if len(self._fits) >= MODEL_FITS_KEPT:
                del self._fits[next(iter(self._fits))]
            self._fits[key] = self._solve(train, first_epoch_s + offset * period_s, period_s, steps)
        return self._fits[key]

    @staticmethod
    def _solve(train: np.ndarray, first_epoch_s: int, period_s: int, steps: int) -> np.ndarray:
        per_day = _per_day(period_s)
        origins = np.arange(8 * per_day, train.size - 1, max(per_day // 6, 1))
        leads = np.arange(0, steps, max(steps // 32, 1))
        pairs_origin, pairs_target = (grid.ravel() for grid in np.meshgrid(origins, leads, indexing="ij"))
        pairs_target = pairs_origin + pairs_target
        inside = pairs_target < train.size
        x = _features(train, first_epoch_s, period_s, pairs_origin[inside], pairs_target[inside])
        y = train[pairs_target[inside]]
        scale = np.maximum(np.abs(x).max(axis=0), 1e-9)
        penalty = MODEL_RIDGE * np.eye(x.shape[1])
        xs_scaled = x / scale
        solution = np.linalg.solve(xs_scaled.T @ xs_scaled + penalty, xs_scaled.T @ y)
        return solution / scale


PointForecaster = Callable[[np.ndarray, int, int, int], np.ndarray]
