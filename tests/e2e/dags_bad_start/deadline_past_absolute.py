"""``carbon_aware(operator)`` with an absolute ``deadline`` long gone by the time it runs: refused at its start."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_start_deadline_past_absolute():
    carbon_aware(BashOperator(task_id="translate", bash_command="echo translated"),
                 deadline="2020-01-01T00:00:00+00:00")


bad_start_deadline_past_absolute()
