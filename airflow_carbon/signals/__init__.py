"""Time series of grid carbon intensity and on-site solar power; no Airflow imports."""

from airflow_carbon.signals.series import INTENSITY_UNIT, SOLAR_UNIT, Series, SignalDataError

__all__ = ["INTENSITY_UNIT", "SOLAR_UNIT", "Series", "SignalDataError"]
