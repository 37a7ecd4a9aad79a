"""``deadline`` and ``max_delay`` on one sensor: refused naming both, rather than one silently winning."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from airflow_carbon import CarbonAwareSensor


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_settings_deadline_and_max_delay():
    CarbonAwareSensor(task_id="wait_green", deadline="{{ data_interval_end }}", max_delay=timedelta(hours=1))


bad_settings_deadline_and_max_delay()
