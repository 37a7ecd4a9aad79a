"""A source's series carried past its end by a forecaster: what a source without a forecast of its own plans on.

A CSV of measured history, the Electricity Maps free tier and a live source asked beyond its horizon all end
before the task's deadline. The periods past that end come from a forecaster fed with the periods measured
before now; where the source knows a period, its value stands.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from airflow_carbon.forecasting.base import FORECASTERS, ForecasterError, forecast
from airflow_carbon.signals.series import Series, to_epoch_s

#: Plan on the source's series alone; past its end the policy holds its last value, as before forecasters.
NO_FORECASTER = "none"
#: The forecaster of a task, a connection and ``[carbon]`` that name none: the most robust on the measurements
#: of bench/RESULTS.md §5 (never below running at once, the best or near it at 4 h and 24 h on DE and FR).
DEFAULT_FORECASTER = "seasonal"
#: The history each forecaster reads before now: enough for its profiles or its fit, and its intervals.
HISTORY = {
    "persistence": timedelta(days=3),
    "seasonal": timedelta(days=22),
    "model": timedelta(days=57),
}
#: Asked for too little history, a forecaster gives way to the next simpler one.
SIMPLER = {"model": "seasonal", "seasonal": "persistence"}
#: The quantile the upper band of an extended series holds: a policy that weighs the risk of waiting reads it.
UPPER_QUANTILE = 0.9
#: Forecasts are made this far at least, so tasks with nearby deadlines share one.
MIN_HORIZON = timedelta(hours=24)


@dataclass(frozen=True)
class Extended:
    """A series that reaches ``until`` where it could, and how.

    :param series: the source's values, then the forecaster's.
    :param upper: the same periods at the ``UPPER_QUANTILE`` (the source's own values where it knows them);
        None when no forecaster was used or it had too little history for intervals.
    :param forecaster: the forecaster that made the periods past the source's end; None if none did.
    """

    series: Series
    upper: Series | None = None
    forecaster: str | None = None


def check_forecaster(name: str) -> str:
    """A forecaster's name, or ``none``; anything else is refused with the names there are."""
    name = str(name).strip().lower()
    if name != NO_FORECASTER and name not in FORECASTERS:
        raise ValueError(f"unknown forecaster {name!r}; choose from {', '.join(FORECASTERS)} or {NO_FORECASTER}")
    return name


def covers(series: Series | None, until: datetime) -> bool:
    return series is not None and len(series) > 0 and series.end_epoch_s >= to_epoch_s(until)


def horizon_for(now: datetime, until: datetime) -> timedelta:
    """How far to forecast: to ``until`` in whole days from now, so tasks with nearby deadlines share one."""
    days = max(-(-(until - now) // timedelta(days=1)), MIN_HORIZON // timedelta(days=1))
    return timedelta(days=days)


def extend(series: Series, now: datetime, horizon: timedelta, forecaster: str) -> Extended:
    """``series`` carried to ``now + horizon`` by ``forecaster`` (or a simpler one, for a short history).

    The forecast is issued at ``now`` from the periods of ``series`` that ended by then, so a replay or a
    source's own forecast further on never feeds it. With too little history for any forecaster, or
    ``none``, the series is returned as it is.
    """
    until = now + horizon
    name: str | None = check_forecaster(forecaster)
    if name == NO_FORECASTER or covers(series, until) or not len(series):
        return Extended(series)
    while name is not None:
        try:
            made = forecast(name, series, now, horizon, quantiles=(UPPER_QUANTILE,))
        except ForecasterError:
            try:
                made = forecast(name, series, now, horizon, quantiles=())
            except ForecasterError:
                name = SIMPLER.get(name)
                continue
        return _splice(series, made.series, made.quantiles.get(UPPER_QUANTILE), made.forecaster)
    return Extended(series)


def _splice(series: Series, ahead: Series, upper_values: np.ndarray | None, used: str) -> Extended:
    """The source's periods, then the forecaster's from where the source ends."""
    beyond = ahead.start_epoch_s >= series.end_epoch_s
    if ahead.period_s != series.period_s or not beyond.any():
        return Extended(series)
    starts = np.concatenate((series.start_epoch_s, ahead.start_epoch_s[beyond]))
    label = f"{series.source}, then {used} forecast from its history"
    joined = replace(series, start_epoch_s=starts, values=np.concatenate((series.values, ahead.values[beyond])),
                     kind="forecast", source=label, estimated=True)
    upper = None
    if upper_values is not None:
        upper = replace(joined, values=np.concatenate((series.values, upper_values[beyond])))
    return Extended(joined, upper, used)
