"""``@carbon_aware`` on ``@task`` with a negative ``max_delay``: refused when the DAG is parsed."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_parse_max_delay_negative():
    @carbon_aware(max_delay="-2h")
    @task
    def summarize() -> None: ...

    summarize()


bad_parse_max_delay_negative()
