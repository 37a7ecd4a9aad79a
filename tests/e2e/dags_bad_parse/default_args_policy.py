"""A policy from the DAG's ``default_args`` that live tasks cannot use: refused when the DAG is parsed."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_carbon import CarbonAwareSensor


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     default_args={"policy": "oracle"})
def bad_parse_default_args_policy():
    CarbonAwareSensor(task_id="wait_green")


bad_parse_default_args_policy()
