"""The carbon metrics store: one row per task try, in a database of its own (pure SQLAlchemy, no Airflow)."""

from airflow_carbon.metrics.store import (
    COMPLETED,
    DEFERRED,
    RUNNING,
    CarbonTaskTry,
    MetricsStore,
    TaskTryKey,
    UnsupportedDialectError,
    safe_url,
)

__all__ = [
    "COMPLETED",
    "DEFERRED",
    "RUNNING",
    "CarbonTaskTry",
    "MetricsStore",
    "TaskTryKey",
    "UnsupportedDialectError",
    "safe_url",
]
