"""One carbon-aware task that really defers, then runs and shows its record: the DAG ``make demo`` runs.

Its signal source and region come from ``[carbon]``, like any task that does not name them. On a
deployment with nothing configured that is the data shipped in the package (Germany, replayed onto
today), so triggering it from the UI or the API just works: it waits at most 5 minutes for the
cleanest start. ``make demo`` sets ``AIRFLOW__CARBON__SOURCE=carbon_demo_signal``, a CSV connection
that ``airflow-carbon example-signal`` writes: dirty for the next 40 seconds and clean after.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["carbon", "demo"])
def carbon_demo():
    @carbon_aware(max_delay=timedelta(minutes=5), energy_kwh=0.05, expected_duration=timedelta(seconds=10),
                  refresh_interval=timedelta(seconds=10))
    @task
    def summarize_logs() -> dict:
        lines = ["INFO start", "WARN disk 91%", "INFO done", "ERROR retry 1", "INFO done"]
        return {level: sum(line.startswith(level) for line in lines) for level in ("INFO", "WARN", "ERROR")}

    @task
    def report(summary: dict, ti=None) -> dict:
        record = ti.xcom_pull(task_ids="summarize_logs", key="carbon")
        print(f"summary: {summary}")
        print("carbon record: " + json.dumps(record))
        return record

    report(summarize_logs())


carbon_demo()
