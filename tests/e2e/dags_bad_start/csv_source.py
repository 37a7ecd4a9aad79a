"""A carbon-aware task reading the ``carbon_csv`` connection ``signal_csv``; the tests point it at a bad file."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_start_csv_source():
    @carbon_aware(source="signal_csv")
    @task
    def evaluate() -> None: ...

    evaluate()


bad_start_csv_source()
