"""Weekly model evaluation gated by ``CarbonAwareSensor``: the sensor waits, the evaluation runs after it.

``evaluate`` runs real inference on this machine: a digit classifier trained at task time on the images that ship
inside scikit-learn (``digits_model.py`` beside this file; nothing is downloaded) reads ``images`` noisy copies of
the digits it held out, 300,000 by default (15 to 25 s on one core), and returns its accuracy.

The sensor plans the window for that work on what it declares, a one-minute run (drawing ``[carbon] power_kw``, as it
declares no energy): a sensor does not learn from history. Its own record claims no energy; the energy ``evaluate``
draws, metered in its own process, is added to the sensor's record when it finishes (see the README, "What is
measured"). Give a smaller ``images`` when triggering to run it faster.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from airflow_carbon import CarbonAwareSensor

IMAGES = 300_000


@dag(schedule="@weekly", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["carbon", "inference"],
     params={"images": Param(IMAGES, type="integer", minimum=1, description="noisy digit images to evaluate on")})
def model_evaluation():
    wait_green = CarbonAwareSensor(task_id="wait_green", max_delay=timedelta(hours=2),
                                   expected_duration=timedelta(minutes=1))

    @task
    def evaluate(params: dict | None = None) -> dict[str, float | int]:
        """The classifier's accuracy over noisy held-out digits, in batches."""
        from digits_model import evaluate as evaluate_digits

        return evaluate_digits(int((params or {}).get("images", IMAGES)))

    wait_green >> evaluate()


model_evaluation()
