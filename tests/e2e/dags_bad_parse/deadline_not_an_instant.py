"""``CarbonAwareSensor`` with a ``deadline`` that is no instant (and no template): refused when the DAG is parsed."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_carbon import CarbonAwareSensor


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_parse_deadline_not_an_instant():
    CarbonAwareSensor(task_id="wait_green", deadline="next tuesday")


bad_parse_deadline_not_an_instant()
