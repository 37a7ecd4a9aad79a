"""One CPU-bound carbon-aware task that declares neither its energy nor its duration: metered, then planned on its
history."""

from __future__ import annotations

import time
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

#: CPU seconds each run burns: on a busy machine its wall time varies, its work does not.
CPU_S = 2.0


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_runs=1,
     tags=["carbon", "test"])
def carbon_energy():
    @task.carbon_aware(max_delay=timedelta(minutes=10), policy="immediate")
    def crunch() -> int:
        until = time.process_time() + CPU_S
        loops = 0
        while time.process_time() < until:
            loops += 1
        return loops

    crunch()


carbon_energy()
