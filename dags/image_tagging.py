"""Image tagging in chunks: the registered ``@task.carbon_aware``, mapped so every chunk picks its own window.

Each mapped instance plans for itself against the deadline shared by the whole task, so a
job split into chunks runs each chunk in the cleanest slot it can reach.

``tag`` runs real inference: a digit classifier trained at task time on the images that ship inside scikit-learn
(``digits_model.py`` beside this file; nothing is downloaded) reads the digit in each image of its chunk, noisy
copies of digits it never saw, seeded so every run tags the same images the same way. It declares no ``power_kw``
and no ``expected_duration``: it is planned from its history, the median run time and metered energy of its last
completed tries (its mapped instances pooled), and on the ``[carbon]`` defaults until it has any. Its records say
which in ``expected_from``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

IMAGES = 150_000
CHUNKS = 3


@dag(schedule="@hourly", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["carbon", "inference"], max_active_runs=1)
def image_tagging():
    @task
    def chunks(images: int = IMAGES, count: int = CHUNKS) -> list[dict[str, int]]:
        """The images split into ``count`` chunks: the first image of each and how many it holds."""
        size = -(-images // count)
        return [{"first": first, "count": min(size, images - first)} for first in range(0, images, size)]

    @task.carbon_aware(max_delay=timedelta(hours=1))
    def tag(chunk: dict[str, int]) -> dict[str, object]:
        """The digit read in each image of the chunk, counted per digit, and the share read right."""
        from digits_model import tag as tag_digits

        return tag_digits(chunk["first"], chunk["count"])

    tag.expand(chunk=chunks())


image_tagging()
