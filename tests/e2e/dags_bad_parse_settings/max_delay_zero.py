"""``max_delay=0`` on a wrapped operator: refused, with the policy that runs at once."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag

from airflow_carbon import carbon_aware


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bad_settings_max_delay_zero():
    carbon_aware(BashOperator(task_id="translate", bash_command="true"), max_delay=0)


bad_settings_max_delay_zero()
