"""``CarbonAwareSensor`` with a misspelled setting: named as one, with the settings there are."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from airflow_carbon import CarbonAwareSensor


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_settings_sensor_misspelled():
    CarbonAwareSensor(task_id="wait_green", max_dealy=timedelta(hours=1))


bad_settings_sensor_misspelled()
