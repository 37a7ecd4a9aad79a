"""Nightly log summaries: ``@carbon_aware`` stacked on ``@task``, waiting up to 4 hours, within a carbon budget.

The DAG's budget (200 g of CO2e a day) shows on the Carbon view's Control page, spent against budget with a
projection; a try that takes the DAG over it calls ``tell_the_team`` once that day.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from airflow_carbon import carbon_aware

SAMPLE_LOG = """\
2026-01-01T00:00:01 INFO api request served in 12 ms
2026-01-01T00:00:02 WARN cache miss ratio 0.31
2026-01-01T00:00:03 ERROR upstream timeout after 30 s
2026-01-01T00:00:04 INFO api request served in 9 ms
"""




def tell_the_team(context) -> None:
    """Stands in for a page or a chat message."""
    budget = context["carbon_budget"]
    logging.getLogger(__name__).warning("log_summaries spent %.0f g of its %.0f g a %s", budget["spent_g"],
                                        budget["budget_g"], budget["period"])


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["carbon", "inference"],
     default_args={"carbon_budget": "200 g/day", "on_budget_exceeded": tell_the_team})
def log_summaries():
    @carbon_aware(max_delay=timedelta(hours=4), region="DE", energy_kwh=0.04)
    @task
    def summarize_logs() -> dict[str, int]:
        """Stands in for an LLM summary: counts by level, the figures a summary would lead with."""
        return dict(Counter(line.split()[1] for line in SAMPLE_LOG.splitlines()))

    @task
    def publish(summary: dict[str, int]) -> str:
        return ", ".join(f"{level}: {count}" for level, count in sorted(summary.items()))

    publish(summarize_logs())


log_summaries()
