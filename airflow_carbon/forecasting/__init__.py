"""Forecasts made only from the measured past, for sources that give none (pure numpy, no Airflow)."""

from airflow_carbon.forecasting.base import (
    DEFAULT_QUANTILES,
    FORECASTERS,
    Forecast,
    ForecasterError,
    forecast,
    measured_before,
)

__all__ = ["DEFAULT_QUANTILES", "FORECASTERS", "Forecast", "ForecasterError", "forecast", "measured_before"]
