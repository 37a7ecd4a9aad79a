"""``@carbon_aware`` with a misspelled setting: refused, not ignored, when the DAG is parsed."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_parse_setting_misspelled():
    @carbon_aware(max_dealy=timedelta(hours=1))
    @task
    def summarize() -> None: ...

    summarize()


bad_parse_setting_misspelled()
