"""Overnight translation of the day's documents: a classic BashOperator, made carbon-aware by wrapping it.

Nobody reads the translations before morning, so the batch may wait up to 30 minutes for a
cleaner grid; the operator's own templating and return value are untouched. The day is the
run's ``run_after`` rather than ``ds``: a run triggered from the UI or the API without a logical
date has no ``ds`` in Airflow 3, and for a scheduled run the two are the same day.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag

from airflow_carbon import carbon_aware

DAY = "{{ dag_run.run_after | ds }}"


@dag(schedule="0 22 * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["carbon", "inference"], default_args={"retries": 1, "region": "DE"})
def batch_translation():
    carbon_aware(
        BashOperator(
            task_id="translate",
            bash_command=(
                f"mkdir -p /tmp/translations/{DAY} && "
                "for doc in invoice contract memo; do "
                f"echo \"[de] $doc translated for {DAY}\" > /tmp/translations/{DAY}/$doc.txt; done && "
                f"ls /tmp/translations/{DAY} | wc -l"
            ),
        ),
        max_delay=timedelta(minutes=30),
        power_kw=0.35,
    )


batch_translation()
