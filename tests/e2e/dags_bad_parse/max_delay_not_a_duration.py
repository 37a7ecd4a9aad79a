"""``@task.carbon_aware`` with a ``max_delay`` that is not a duration: refused when the DAG is parsed."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_parse_max_delay_not_a_duration():
    @task.carbon_aware(max_delay="soon")
    def tag_images() -> None: ...

    tag_images()


bad_parse_max_delay_not_a_duration()
