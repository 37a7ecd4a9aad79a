"""Small builders shared by the tests: series on a fixed day, in epoch seconds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from airflow_carbon.signals import SOLAR_UNIT, Series

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def series(values: Sequence[float], period_s: int = 3600, start: datetime = T0, **kwargs) -> Series:
    start_s = int(start.timestamp())
    return Series(start_s + period_s * np.arange(len(values)), np.asarray(values, dtype=float), period_s, "TEST",
                  **kwargs)


def solar_series(values_kw: Sequence[float], period_s: int = 3600, start: datetime = T0) -> Series:
    return series(values_kw, period_s, start, unit=SOLAR_UNIT)
