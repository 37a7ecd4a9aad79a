"""Clients of the carbon-signal web services (WattTime, Electricity Maps, UK Carbon Intensity); no Airflow imports.

Each client is async, holds one ``httpx.AsyncClient``, retries what is worth retrying, shares a circuit
breaker per service and base URL, and returns a ``Series`` in gCO2eq/kWh. ``run_sync`` runs one from
synchronous code. ``sources`` makes each a signal source, registered by its connection type.
"""

from airflow_carbon.signals.services.electricitymaps import ElectricityMapsClient
from airflow_carbon.signals.services.errors import (
    AuthError,
    BadResponse,
    CircuitOpenError,
    ForecastNotAvailable,
    ScopeError,
    SignalServiceError,
)
from airflow_carbon.signals.services.http import CircuitBreaker, HttpPolicy, ServiceClient, breaker_for, run_sync
from airflow_carbon.signals.services.ukgrid import UKCarbonIntensityClient
from airflow_carbon.signals.services.watttime import SIGNAL_DESCRIPTIONS, WattTimeClient

__all__ = [
    "SIGNAL_DESCRIPTIONS",
    "AuthError",
    "BadResponse",
    "CircuitBreaker",
    "CircuitOpenError",
    "ElectricityMapsClient",
    "ForecastNotAvailable",
    "HttpPolicy",
    "ScopeError",
    "ServiceClient",
    "SignalServiceError",
    "UKCarbonIntensityClient",
    "WattTimeClient",
    "breaker_for",
    "run_sync",
]
