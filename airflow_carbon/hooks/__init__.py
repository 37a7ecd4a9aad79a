"""Airflow hooks of the carbon provider."""

from airflow_carbon.hooks.metrics import CarbonMetricsHook

__all__ = ["CarbonMetricsHook"]
