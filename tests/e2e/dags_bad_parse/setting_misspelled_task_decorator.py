"""``@task.carbon_aware`` with a misspelled setting: Airflow refuses the unknown argument when the DAG is parsed."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_parse_setting_misspelled_task_decorator():
    @task.carbon_aware(regoin="DE")
    def tag_images() -> None: ...

    tag_images()


bad_parse_setting_misspelled_task_decorator()
