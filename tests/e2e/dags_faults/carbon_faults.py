"""Carbon-aware tasks for the fault-injection suite (``tests/e2e/test_faults.py``).

Each task of ``carbon_faults`` reads WattTime through its own connection ``fault_<task id>``, which the test
points at a loopback server playing one fault (or at a closed port). Waits and refreshes come from the
environment the test gives Airflow, so the DAG and the test cannot disagree on them.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import dag, get_current_context, task

from airflow_carbon import carbon_aware

FAULTS = ("healthy", "down", "flapping", "storm_429", "slow", "malformed", "empty", "short", "store_down",
          "worker_killed")
REFRESH = timedelta(seconds=float(os.environ.get("CARBON_FAULTS_REFRESH_S", "10")))
MAX_DELAY = timedelta(seconds=float(os.environ.get("CARBON_FAULTS_MAX_DELAY_S", "90")))
RUNS_DIR = Path(os.environ.get("CARBON_FAULTS_DIR", "/tmp"))
START = pendulum.datetime(2026, 1, 1, tz="UTC")


def note_run(name: str) -> int:
    """Count runs of the work itself, so the test can tell work that ran twice from a record written twice."""
    try_number = get_current_context()["ti"].try_number
    with (RUNS_DIR / f"{name}.runs").open("a") as runs:
        runs.write(f"{try_number}\n")
    return try_number


def fault_task(name: str):
    extra = {"metrics_conn_id": "carbon_metrics_pg"} if name == "store_down" else {}
    retries = {"retries": 1, "retry_delay": timedelta(seconds=2)} if name == "worker_killed" else {}

    @carbon_aware(source=f"fault_{name}", region="CAISO_NORTH", max_delay=MAX_DELAY, refresh_interval=REFRESH,
                  expected_duration=timedelta(seconds=5), energy_kwh=0.01, **extra)
    @task(task_id=name, **retries)
    def work() -> str:
        if note_run(name) == 1 and name == "worker_killed":
            os.kill(os.getpid(), signal.SIGKILL)  # the work ran; the worker dies before the record is written
        return name

    return work()


@dag(schedule=None, start_date=START, catchup=False, max_active_tasks=len(FAULTS), tags=["carbon", "faults"])
def carbon_faults():
    for name in FAULTS:
        fault_task(name)


@dag(schedule=None, start_date=START, catchup=False, tags=["carbon", "faults"])
def carbon_faults_drain():
    """A later task writing to the store that was down: its write also writes what was kept meanwhile."""

    @carbon_aware(source="fault_healthy", region="CAISO_NORTH", policy="immediate", energy_kwh=0.01,
                  metrics_conn_id="carbon_metrics_pg")
    @task
    def later() -> str:
        return "later"

    later()


@dag(schedule=None, start_date=START, catchup=False, tags=["carbon", "faults"])
def carbon_clock_jump():
    """Waits for a window half an hour away, with an hour to spare: until the triggerer's clock jumps."""

    @carbon_aware(source="fault_clock", region="CAISO_NORTH", max_delay=timedelta(hours=1), refresh_interval=REFRESH,
                  expected_duration=timedelta(seconds=5), energy_kwh=0.01)
    @task
    def overnight() -> str:
        return "overnight"

    overnight()


carbon_faults()
carbon_faults_drain()
carbon_clock_jump()
