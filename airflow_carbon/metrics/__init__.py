"""The carbon metrics store: one row per task try, in a database of its own (pure SQLAlchemy, no Airflow).

Beside it, the record's schema, and the spool: the records a host could not write while the store was down.
"""

from airflow_carbon.metrics.record import (
    COMPLETED,
    DEFERRED,
    FAILED,
    RUNNING,
    InvalidRecordError,
    TaskTryKey,
    TaskTryRecord,
)
from airflow_carbon.metrics.spool import Spool
from airflow_carbon.metrics.store import MetricsStore, UnsupportedDialectError, safe_url

__all__ = [
    "COMPLETED",
    "DEFERRED",
    "FAILED",
    "RUNNING",
    "InvalidRecordError",
    "MetricsStore",
    "Spool",
    "TaskTryKey",
    "TaskTryRecord",
    "UnsupportedDialectError",
    "safe_url",
]
