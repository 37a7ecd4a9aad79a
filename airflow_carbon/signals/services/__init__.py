"""Clients of the carbon-signal web services (WattTime, Electricity Maps, UK Carbon Intensity); no Airflow imports.

Each client is async, holds one ``httpx.AsyncClient``, retries what is worth retrying, shares a circuit
breaker per service and base URL, and returns a ``Series`` in gCO2eq/kWh. ``run_sync`` runs one from
synchronous code.
"""

from airflow_carbon.signals.services.base import (
    AuthError,
    BadResponse,
    CircuitBreaker,
    CircuitOpenError,
    ForecastNotAvailable,
    HttpPolicy,
    ScopeError,
    ServiceClient,
    SignalServiceError,
    breaker_for,
    run_sync,
)
from airflow_carbon.signals.services.electricitymaps import ElectricityMapsClient
from airflow_carbon.signals.services.ukgrid import UKCarbonIntensityClient
from airflow_carbon.signals.services.watttime import SIGNAL_DESCRIPTIONS, WattTimeClient


def signal_kind(source: str | None) -> str | None:
    """Whether a service's series is a marginal or an average emissions rate; None when unknown (files)."""
    if source is None:
        return None
    service, _, signal_type = source.partition(":")
    if service == "watttime":
        return SIGNAL_DESCRIPTIONS.get(signal_type)
    return "average" if service in ("electricitymaps", "ukgrid") else None


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
    "signal_kind",
]
