"""Operators that defer themselves, and a mapped one, made carbon-aware (``test_deferrable_operators.py``).

The signal gets cleaner all day, so each task's best start is its deadline, 10 s after it became
ready: every task first defers on the carbon trigger. Then the wrapped sensors defer on their own
triggers, as KubernetesPodOperator(deferrable=True) does while its pod runs.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.providers.standard.sensors.time_delta import WaitSensor
from airflow.sdk import DAG, task

from airflow_carbon import carbon_aware

CARBON = {"source": "falling_signal", "policy": "forecast", "min_saving_pct": 0, "max_delay": timedelta(seconds=10)}

with DAG("carbon_deferrable", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    # Waits 5 s from its own start on a trigger that would end the task itself (end_from_trigger).
    remote_inference = carbon_aware(
        WaitSensor(task_id="remote_inference", time_to_wait=timedelta(seconds=5), deferrable=True), **CARBON)
    # Resumes into its own execute_complete; the moment has passed, so its trigger fires at once, but it defers.
    carbon_aware(DateTimeSensorAsync(task_id="remote_batch", target_time="{{ dag_run.run_after }}"), **CARBON)
    carbon_aware(BashOperator.partial(task_id="shards").expand(bash_command=["echo 0", "echo 1", "echo 2"]), **CARBON)

    @task
    def report(ti=None) -> dict:
        return ti.xcom_pull(task_ids="remote_inference", key="carbon")

    remote_inference >> report()
