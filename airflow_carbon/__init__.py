"""Carbon-aware scheduling for Apache Airflow 3: defer tasks that can wait until the grid is cleaner.

``carbon_aware``, ``CarbonAwareSensor`` and ``CarbonAwareBranchOperator`` load Airflow on first use, so the planning,
accounting and simulation layers stay importable without it.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.4.0"
__all__ = ["CarbonAwareBranchOperator", "CarbonAwareSensor", "carbon_aware"]


def __getattr__(name: str) -> Any:
    if name == "carbon_aware":
        from airflow_carbon.decorators.carbon_aware import carbon_aware

        return carbon_aware
    if name == "CarbonAwareSensor":
        from airflow_carbon.sensors.carbon import CarbonAwareSensor

        return CarbonAwareSensor
    if name == "CarbonAwareBranchOperator":
        from airflow_carbon.operators.regions import CarbonAwareBranchOperator

        return CarbonAwareBranchOperator
    raise AttributeError(f"module 'airflow_carbon' has no attribute {name!r}")
