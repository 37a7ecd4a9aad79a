"""``carbon_aware(operator)`` with a naive ``deadline``: refused, not guessed, when the DAG is parsed."""

from __future__ import annotations

from datetime import datetime

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_parse_deadline_naive():
    carbon_aware(BashOperator(task_id="translate", bash_command="true"), deadline=datetime(2026, 1, 1, 6))


bad_parse_deadline_naive()
