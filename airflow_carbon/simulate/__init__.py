"""Replay job streams against carbon series with any policy; builds on signals, planning and accounting."""

from airflow_carbon.simulate.engine import PolicySummary, simulate, summarize
from airflow_carbon.simulate.jobs import Jobs, read_jobs_csv

__all__ = ["Jobs", "PolicySummary", "read_jobs_csv", "simulate", "summarize"]
