"""A carbon-aware task whose source, fallbacks and deadline come from [carbon] in the environment."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def live_source():
    @carbon_aware(energy_kwh=0.1)
    @task
    def evaluate() -> str:
        return "evaluated"

    evaluate()


live_source()
