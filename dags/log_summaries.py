"""Nightly log summaries: ``@carbon_aware`` stacked on ``@task``, waiting up to 4 hours."""

from __future__ import annotations

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


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["carbon", "inference"])
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
