"""A DAG for the e2e harness's own test: a deferrable sensor (the triggerer) and then a task with an XCom."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.sensors.time_delta import WaitSensor
from airflow.sdk import dag, task


@dag(dag_id="harness_probe", schedule=None, catchup=False, tags=["e2e"])
def harness_probe():
    # Counted from the sensor's own start, not from the trigger time: it defers for 20 s however late it starts.
    wait = WaitSensor(task_id="wait", time_to_wait=timedelta(seconds=20), deferrable=True, poke_interval=1)

    @task
    def report() -> dict:
        return {"probe": "ok", "answer": 42}

    wait >> report()


harness_probe()
