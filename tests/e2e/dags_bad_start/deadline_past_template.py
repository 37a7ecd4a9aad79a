"""A templated ``deadline`` that renders to an hour before the run: refused at the task's start."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_start_deadline_past_template():
    @carbon_aware(deadline="{{ dag_run.run_after - macros.timedelta(hours=1) }}")
    @task
    def summarize() -> None: ...

    summarize()


bad_start_deadline_past_template()
