"""A negative ``max_delay`` in ``default_args`` under ``@carbon_aware``: refused when the DAG is parsed."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     default_args={"max_delay": "-2h"})
def bad_parse_default_args_max_delay():
    @carbon_aware
    @task
    def summarize() -> None: ...

    summarize()


bad_parse_default_args_max_delay()
