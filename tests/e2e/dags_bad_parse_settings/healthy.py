"""A well-set carbon-aware DAG beside the broken ones; the Carbon API shows its records."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def hostile_values():
    @carbon_aware(max_delay=timedelta(hours=2), region="DE")
    @task
    def summarize() -> None: ...

    summarize()


hostile_values()
