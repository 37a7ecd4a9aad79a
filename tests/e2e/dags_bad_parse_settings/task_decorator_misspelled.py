"""``@task.carbon_aware`` with a misspelled setting: named as one, with the settings there are."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_settings_task_decorator_misspelled():
    @task.carbon_aware(max_dealy=timedelta(hours=1))
    def tag_images() -> None: ...

    tag_images()


bad_settings_task_decorator_misspelled()
