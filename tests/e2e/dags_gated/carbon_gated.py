"""A sensor that lets its work run at once, then two CPU-busy tasks: each meters itself for the sensor's record."""

from __future__ import annotations

import time
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from airflow_carbon import CarbonAwareSensor

BUSY_S = 2.0


def busy() -> int:
    """Keep one CPU busy for about ``BUSY_S``: work a meter can see."""
    end, count = time.monotonic() + BUSY_S, 0
    while time.monotonic() < end:
        count += sum(i * i for i in range(1000))
    return count


with DAG("carbon_gated", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         tags=["carbon", "test"]):
    (CarbonAwareSensor(task_id="wait", policy="immediate", max_delay=timedelta(minutes=2))
     >> PythonOperator(task_id="first", python_callable=busy)
     >> PythonOperator(task_id="second", python_callable=busy))
