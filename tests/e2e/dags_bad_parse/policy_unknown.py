"""``CarbonAwareSensor`` with a policy that does not exist: refused when the DAG is parsed."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_carbon import CarbonAwareSensor


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_parse_policy_unknown():
    CarbonAwareSensor(task_id="wait_green", policy="greenest")


bad_parse_policy_unknown()
