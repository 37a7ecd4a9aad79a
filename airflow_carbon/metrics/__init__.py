"""The carbon metrics store: one row per task try, in a database of its own (pure SQLAlchemy, no Airflow).

Beside it, the spool: the records a host could not write while the store was down.
"""

from airflow_carbon.metrics.spool import Spool
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
    "Spool",
    "TaskTryKey",
    "UnsupportedDialectError",
    "safe_url",
]
