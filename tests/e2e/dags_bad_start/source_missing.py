"""``@task.carbon_aware`` naming a signal connection that does not exist: refused at the task's start."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_start_source_missing():
    @task.carbon_aware(source="no_such_signal")
    def tag_images() -> None: ...

    tag_images()


bad_start_source_missing()
