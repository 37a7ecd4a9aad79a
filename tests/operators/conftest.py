"""What the runtime's tests share: a SQLite metrics store and a signal connection, both in the test's own folder."""

from __future__ import annotations

import json

import pytest

from airflow_carbon.hooks.metrics import CarbonMetricsHook
from tests.signal_files import write_signal


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "metrics.db")}))
    signal = write_signal(tmp_path / "signal.csv", green_in_s=3600, period_s=60)
    monkeypatch.setenv("AIRFLOW_CONN_SIGNAL", json.dumps({"conn_type": "carbon_csv",
                                                          "extra": {"path": str(signal), "region": "TEST"}}))
    yield tmp_path
    CarbonMetricsHook.reset_store_cache()
