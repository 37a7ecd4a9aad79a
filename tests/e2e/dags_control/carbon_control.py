"""One carbon-aware task that would wait about two hours on the test's signal: people make it run now.

``tests/e2e/test_control.py`` triggers it several times; each run's task defers, then is released through the API
or the CLI, or by carbon-awareness switched off for the DAG. Its plan refreshes only every 10 minutes, so a task
that runs within seconds of a release ran because of the release poll, not a refresh.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["carbon", "test"])
def carbon_control():
    @carbon_aware(max_delay=timedelta(hours=3), energy_kwh=0.05, expected_duration=timedelta(seconds=10),
                  refresh_interval=timedelta(minutes=10))
    @task
    def summarize() -> int:
        return 3

    summarize()


carbon_control()
