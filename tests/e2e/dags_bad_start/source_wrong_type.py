"""``CarbonAwareSensor`` whose source ``web`` is an HTTP connection, no signal source: refused at its start."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_carbon import CarbonAwareSensor


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_start_source_wrong_type():
    CarbonAwareSensor(task_id="wait_green", source="web")


bad_start_source_wrong_type()
