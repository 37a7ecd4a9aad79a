"""One carbon-aware task for the StatsD test: it defers on the test's signal, then runs and records in seconds."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["carbon", "test"])
def carbon_statsd():
    @carbon_aware(max_delay=timedelta(minutes=10), energy_kwh=0.05, expected_duration=timedelta(seconds=10),
                  refresh_interval=timedelta(seconds=5))
    @task
    def summarize() -> int:
        return 3

    summarize()


carbon_statsd()
