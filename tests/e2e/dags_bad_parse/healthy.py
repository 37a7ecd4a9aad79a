"""A well-set carbon-aware DAG beside the broken ones: a bad file must not break its neighbours."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_parse_healthy():
    @carbon_aware(max_delay=timedelta(hours=2), policy="threshold")
    @task
    def summarize() -> None: ...

    summarize()


bad_parse_healthy()
