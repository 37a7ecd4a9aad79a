"""A choice between two regions, each served by its own Celery queue: the DAG of ``test_regions_distributed.py``.

``choose_region`` (home DE) plans both regions on their own signal connections, ``carbon_regions_de`` and
``carbon_regions_fr``, waits for the best (region, start) and follows that region's task only. ``evaluate_fr`` and
``evaluate_de`` are pinned to the queues ``fr`` and ``de``, each consumed by a worker of its own; each burns a second
of CPU and returns where it ran.
"""

from __future__ import annotations

import re
import socket
import time
from datetime import timedelta

import pendulum
import psutil
from airflow.sdk import dag, task

REGIONS = {
    "DE": {"task_id": "evaluate_de", "source": "carbon_regions_de"},
    "FR": {"task_id": "evaluate_fr", "source": "carbon_regions_fr"},
}


def celery_worker_name() -> str | None:
    """The node name (``fr@host``) of the Celery worker this task process descends from, None outside Celery.

    Celery names itself in its process title: ``[celeryd: fr@host:MainProcess] ...``.
    """
    for proc in psutil.Process().parents():
        if found := re.match(r"\[celeryd: ([^:\]]+)", " ".join(proc.cmdline())):
            return found[1]
    return None


def burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["carbon", "regions"])
def carbon_regions():
    @task.carbon_aware_branch(regions=REGIONS, max_delay=timedelta(minutes=15), energy_kwh=0.05,
                              expected_duration=timedelta(seconds=10), refresh_interval=timedelta(seconds=20))
    def choose_region() -> None:
        """Both regions are candidates."""

    def evaluate(queue: str):
        @task(task_id=f"evaluate_{queue}", queue=queue)
        def evaluate_in_region(ti=None) -> dict:
            burn_cpu(1.0)
            return {"hostname": socket.gethostname(), "queue": ti.queue, "worker": celery_worker_name()}

        return evaluate_in_region()

    choose_region() >> [evaluate("fr"), evaluate("de")]


carbon_regions()
