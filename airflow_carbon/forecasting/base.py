"""A forecast made from the measured past only, with prediction intervals from the forecaster's own past errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from airflow_carbon.forecasting.methods import (
    SECONDS_PER_DAY,
    ForecastError,
    PointForecaster,
    RidgeModel,
    persistence,
    seasonal,
)
from airflow_carbon.signals.series import Series, to_epoch_s

#: The quantiles a forecast carries unless asked for others.
DEFAULT_QUANTILES = (0.1, 0.9)
#: Intervals come from forecasts the forecaster would have issued this often over this many recent days.
INTERVAL_DAYS = 14
INTERVAL_ORIGINS_PER_DAY = 4


class ForecasterError(ForecastError):
    """An unknown forecaster or a history it cannot forecast from; the message names which and why."""


@dataclass(frozen=True)
class Forecast:
    """A forecast series, per quantile (0.1, 0.9) the values the truth stays below that often, and its maker."""

    series: Series
    quantiles: dict[float, np.ndarray]
    forecaster: str  #: the forecaster that made it: the one asked for, or the one standing in for it


FORECASTERS: dict[str, PointForecaster] = {
    "persistence": persistence,
    "seasonal": seasonal,
    "model": RidgeModel(),
}


def measured_before(history: Series, now_s: int) -> np.ndarray:
    """The values of the periods that ended by ``now_s``: what is measured at ``now_s``, and nothing later."""
    ended = int(np.searchsorted(history.bounds_epoch_s[1:], now_s, side="right"))
    return history.values[:ended]


def forecast(name: str, history: Series, now: datetime | int, horizon: timedelta,
             quantiles: tuple[float, ...] = DEFAULT_QUANTILES) -> Forecast:
    """Forecast the periods from the one holding ``now`` until ``now + horizon``, from ``history`` before ``now``.

    Only the periods of ``history`` that ended by ``now`` are read. The series is marked ``forecast`` with
    ``source`` ``name(origin)``; ``quantiles=()`` skips the intervals (they cost one forecast per past origin).

    :raises ForecasterError: unknown name, a history that does not reach ``now``, or too little of it.
    """
    if name not in FORECASTERS:
        raise ForecasterError(f"unknown forecaster {name!r}; choose from {', '.join(FORECASTERS)}")
    now_s = now if isinstance(now, int) else to_epoch_s(now)
    period_s = history.period_s
    if not len(history) or not history.first_epoch_s <= now_s <= history.end_epoch_s:
        raise ForecasterError(f"forecaster {name!r}: the history of {history.source or history.region} does not "
                              f"reach the forecast's origin (epoch {now_s})")
    past = measured_before(history, now_s)
    steps = max(int(-(-(now_s + horizon.total_seconds() - history.first_epoch_s) // period_s)) - past.size, 1)
    point = _point(name, past, history.first_epoch_s, period_s, steps)
    stands_in = getattr(FORECASTERS[name], "stands_in", None)  # a forecaster that falls back names the one used
    used = stands_in(past, period_s) if stands_in else name
    origin_s = history.first_epoch_s + period_s * past.size
    series = Series(origin_s + period_s * np.arange(steps, dtype=np.int64), point, period_s, history.region,
                    history.unit, "forecast", f"{used}({history.source or history.region})", history.replayed,
                    estimated=True)
    bands = residual_quantiles(name, past, history.first_epoch_s, period_s, steps, quantiles) if quantiles else {}
    return Forecast(series, {q: np.maximum(point + band, 0.0) for q, band in bands.items()}, used)


def _point(name: str, past: np.ndarray, first_epoch_s: int, period_s: int, steps: int) -> np.ndarray:
    try:
        return FORECASTERS[name](past, first_epoch_s, period_s, steps)
    except ForecastError as error:
        raise ForecasterError(str(error)) from None


def residual_quantiles(name: str, past: np.ndarray, first_epoch_s: int, period_s: int, steps: int,
                       quantiles: tuple[float, ...]) -> dict[float, np.ndarray]:
    """Per lead time, the quantiles of the errors the forecaster made on the recent past (truth minus forecast).

    The forecasts are re-issued at origins over the last ``INTERVAL_DAYS`` days, each from the data before it;
    only errors of values measured before the present origin count. Leads are pooled by the hour.
    """
    if any(not 0 < q < 1 for q in quantiles):
        raise ForecasterError(f"quantiles must lie in (0, 1), got {quantiles}")
    per_day = SECONDS_PER_DAY // period_s
    step = max(per_day // INTERVAL_ORIGINS_PER_DAY, 1)
    origins = np.arange(past.size - 1, max(past.size - INTERVAL_DAYS * per_day, 0), -step)[::-1]
    errors = np.full((origins.size, steps), np.nan)
    for row, origin in enumerate(origins):
        try:
            guess = FORECASTERS[name](past[:origin], first_epoch_s, period_s, steps)
        except ForecastError:
            continue
        known = min(steps, past.size - origin)
        errors[row, :known] = past[origin:origin + known] - guess[:known]
    hour_of_lead = (np.arange(steps) * period_s) // 3600
    result = {q: np.zeros(steps) for q in quantiles}
    pooled = np.zeros(0)
    for hour in np.unique(hour_of_lead):
        columns = errors[:, hour_of_lead == hour].ravel()
        columns = columns[np.isfinite(columns)]
        pooled = columns if columns.size >= 20 else pooled  # far leads with few errors borrow the last good hour
        if pooled.size:
            for q in quantiles:
                result[q][hour_of_lead == hour] = np.quantile(pooled, q)
    if not pooled.size:
        raise ForecasterError(f"forecaster {name!r}: too little history for prediction intervals "
                              f"({past.size * period_s / 3600:g} h measured)")
    return result
