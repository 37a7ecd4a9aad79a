"""Image tagging in chunks: the registered ``@task.carbon_aware``, mapped so every chunk picks its own window.

Each mapped instance plans for itself against the deadline shared by the whole task, so a
job split into chunks runs each chunk in the cleanest slot it can reach.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

IMAGES = [f"img_{n:04d}.jpg" for n in range(12)]


@dag(schedule="@hourly", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["carbon", "inference"], max_active_runs=1)
def image_tagging():
    @task
    def chunks(size: int = 4) -> list[list[str]]:
        return [IMAGES[i:i + size] for i in range(0, len(IMAGES), size)]

    @task.carbon_aware(max_delay=timedelta(hours=1), power_kw=0.25, expected_duration=timedelta(minutes=10))
    def tag(batch: list[str]) -> dict[str, list[str]]:
        """Stands in for a vision model: tags from the file name, deterministic for tests."""
        return {name: ["even" if int(name[4:8]) % 2 == 0 else "odd"] for name in batch}

    tag.expand(batch=chunks())


image_tagging()
