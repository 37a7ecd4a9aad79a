"""Each service test starts with closed circuit breakers and no client left from the one before."""

from __future__ import annotations

import pytest

from airflow_carbon.signals.services.http import reset_breakers
from tests.fakes import MADE


@pytest.fixture(autouse=True)
def _fresh_breakers():
    reset_breakers()
    MADE.clear()
    yield
    reset_breakers()
