"""A carbon-aware task whose every setting comes from ``[carbon]``; the tests set a bad one in the environment."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_start_from_config():
    @carbon_aware
    @task
    def evaluate() -> None: ...

    evaluate()


bad_start_from_config()
