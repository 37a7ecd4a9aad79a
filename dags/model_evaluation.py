"""Weekly model evaluation gated by ``CarbonAwareSensor``: the sensor waits, the evaluation runs after it."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import CarbonAwareSensor


@dag(schedule="@weekly", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["carbon", "inference"])
def model_evaluation():
    wait_green = CarbonAwareSensor(task_id="wait_green", max_delay=timedelta(hours=2), energy_kwh=1.2,
                                   expected_duration=timedelta(minutes=45))

    @task
    def evaluate() -> dict[str, float]:
        """Stands in for an evaluation run: accuracy of fixed predictions against fixed labels."""
        predictions, labels = [1, 0, 1, 1, 0, 1], [1, 0, 0, 1, 0, 1]
        return {"accuracy": sum(p == q for p, q in zip(predictions, labels, strict=True)) / len(labels)}

    wait_green >> evaluate()


model_evaluation()
