"""A region without bundled data and no source anywhere: the task could only plan on bundled data."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_settings_region_without_source():
    @carbon_aware(region="XX")
    @task
    def summarize() -> None: ...

    summarize()


bad_settings_region_without_source()
