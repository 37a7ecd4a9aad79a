"""An energy that would overflow the planner's arithmetic: refused when the DAG is parsed."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_settings_energy_absurd():
    @task.carbon_aware(energy_kwh=1e308)
    def evaluate() -> None: ...

    evaluate()


bad_settings_energy_absurd()
