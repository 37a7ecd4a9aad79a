"""What a planner sees of the grid at a planning instant: the truth, the truth blurred, or a forecast from the past.

``perfect`` and ``noise:5%`` are references; a forecaster's name (``persistence``, ``seasonal``, ``model``) is what
a user whose source gives no forecast really gets: at each instant it forecasts from the periods measured by then.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta

import numpy as np

from airflow_carbon.forecasting import FORECASTERS, ForecasterError, forecast, measured_before
from airflow_carbon.forecasting.base import residual_quantiles
from airflow_carbon.forecasting.extend import UPPER_QUANTILE
from airflow_carbon.signals import Series
from airflow_carbon.simulate.noise import noisy_forecast

PERFECT = "perfect"
NOISE = "noise"
#: Forecasts kept, one per planning instant; the engine plans in time order, so a few suffice.
FORECASTS_KEPT = 8


def parse_forecast(text: str) -> tuple[str, float]:
    """``perfect``, ``noise:5%`` (or ``noise:0.05``) or a forecaster's name, as (name, relative error)."""
    name, _, error_text = text.strip().partition(":")
    if name == NOISE:
        try:
            error = float(error_text[:-1]) / 100 if error_text.endswith("%") else float(error_text)
        except ValueError:
            raise ValueError(f"--forecast {text!r}: the noise needs a size, e.g. noise:5%") from None
        if not 0 <= error < 1:
            raise ValueError(f"--forecast {text!r}: a forecast error must lie in [0, 1)")
        return NOISE, error
    if error_text or name not in (PERFECT, *FORECASTERS):
        raise ValueError(f"unknown forecast {text!r}; choose from {PERFECT}, noise:5%, {', '.join(FORECASTERS)}")
    return name, 0.0


class Foresight:
    """The series a planner is handed at ``now_s``; one forecast per instant, shared by every job planned then.

    :param horizon: how far each forecast reaches past its instant (the longest wait plus the longest job).
    """

    def __init__(self, intensity: Series, forecast_name: str, error: float, horizon: timedelta,
                 rng: np.random.Generator) -> None:
        self.intensity, self.name, self.error, self.horizon, self.rng = intensity, forecast_name, error, horizon, rng
        self._kept: OrderedDict[int, Series | None] = OrderedDict()
        self._bands: dict[int, np.ndarray | None] = {}

    def per_job(self, now_s: int, until_s: float) -> Series:
        """What one job planned alone sees, as before refreshes existed: the noise is drawn for that job."""
        if self.name == NOISE and self.error > 0:
            return noisy_forecast(self.intensity, now_s, until_s, self.error, self.rng)
        return self.shared(now_s) if self.name in FORECASTERS else self.intensity

    def shared(self, now_s: int) -> Series | None:
        """The forecast issued at ``now_s``; None when the past is too short to forecast from."""
        if self.name == PERFECT or (self.name == NOISE and self.error == 0):
            return self.intensity
        key = now_s if self.name == NOISE else (now_s - self.intensity.first_epoch_s) // self.intensity.period_s
        if key not in self._kept:
            if len(self._kept) >= FORECASTS_KEPT:
                self._kept.popitem(last=False)
            self._kept[key] = self._issue(now_s)
        return self._kept[key]

    def upper(self, now_s: int) -> Series | None:
        """The forecast at ``now_s`` at the forecaster's upper quantile, as the trigger is handed it.

        The bands (the forecaster's past errors per lead) are measured once per day, not per instant: at a
        forecast per quarter hour over a year, re-measuring them each time would cost an hour.
        """
        point = self.shared(now_s) if self.name in FORECASTERS else None
        if point is None:
            return None
        period_s = self.intensity.period_s
        day = (now_s - self.intensity.first_epoch_s) // 86_400
        if day not in self._bands:
            past = measured_before(self.intensity, self.intensity.first_epoch_s + day * 86_400)
            try:
                self._bands[day] = residual_quantiles(self.name, past, self.intensity.first_epoch_s, period_s,
                                                      len(point) + 4, (UPPER_QUANTILE,))[UPPER_QUANTILE]
            except ForecasterError:
                self._bands[day] = None
        band = self._bands[day]
        if band is None:
            return None
        return Series(point.start_epoch_s, np.maximum(point.values + band[:len(point)], 0.0), period_s, point.region,
                      point.unit, point.kind, point.source, point.replayed, estimated=True)

    def _issue(self, now_s: int) -> Series | None:
        if self.name == NOISE:
            return noisy_forecast(self.intensity, now_s, now_s + self.horizon.total_seconds(), self.error, self.rng)
        period_s = self.intensity.period_s
        period_start_s = now_s - (now_s - self.intensity.first_epoch_s) % period_s
        try:
            return forecast(self.name, self.intensity, period_start_s, self.horizon + timedelta(seconds=period_s),
                            quantiles=()).series
        except ForecasterError:
            return None
