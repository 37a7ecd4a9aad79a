"""The sensor's poke mode, for deployments without a triggerer; its deferring path runs in tests/e2e."""

from __future__ import annotations

import json
from datetime import timedelta

import pendulum
import pytest
from airflow.sdk import DAG

from airflow_carbon import CarbonAwareSensor
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.operators.runtime import XCOM_KEY
from tests.operators.test_runtime import FakeTaskInstance
from tests.signal_files import write_signal


@pytest.fixture
def signal(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "metrics.db")}))
    path = tmp_path / "signal.csv"
    monkeypatch.setenv("AIRFLOW_CONN_SIGNAL", json.dumps({"conn_type": "carbon_csv",
                                                          "extra": {"path": str(path), "region": "TEST"}}))
    yield path
    CarbonMetricsHook.reset_store_cache()


def sensor() -> CarbonAwareSensor:
    with DAG("nightly", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        return CarbonAwareSensor(task_id="wait_green", source="signal", max_delay=timedelta(hours=2),
                                 energy_kwh=1.0, expected_duration=timedelta(minutes=30), deferrable=False)


def test_poke_says_no_while_dirty_and_yes_when_green_then_records_the_gated_work(signal):
    wait = sensor()
    ti = FakeTaskInstance(task_id="wait_green")
    write_signal(signal, green_in_s=3600, period_s=60)
    assert wait.poke({"ti": ti}) is False
    write_signal(signal, green_in_s=-60, period_s=60)
    assert wait.poke({"ti": ti}) is True
    wait._finish({"ti": ti}, wait._poked)
    record = ti.pushed[XCOM_KEY]
    assert record["reason"] == "green_window" and record["estimated"]  # the sensor does not see the work run
    assert record["energy_kwh"] == 1.0 and record["intensity_g_per_kwh"] == pytest.approx(120)
    [row] = CarbonMetricsHook().get_store().rows()
    assert row["state"] == "completed" and row["task_id"] == "wait_green"
