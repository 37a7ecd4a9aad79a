"""``@task.carbon_aware`` with a misspelled setting: refused as one, naming the settings there are."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_parse_setting_misspelled_task_decorator():
    @task.carbon_aware(regoin="DE")
    def tag_images() -> None: ...

    tag_images()


bad_parse_setting_misspelled_task_decorator()
