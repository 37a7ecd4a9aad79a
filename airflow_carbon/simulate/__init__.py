"""Replay job streams against carbon series with any policy; builds on signals, planning and accounting."""

from airflow_carbon.simulate.engine import PolicySummary, simulate, summarize
from airflow_carbon.simulate.jobs import Jobs, read_jobs_csv
from airflow_carbon.simulate.regions import ModeSummary, RegionRecord, simulate_regions, summarize_regions

__all__ = ["Jobs", "ModeSummary", "PolicySummary", "RegionRecord", "read_jobs_csv", "simulate", "simulate_regions",
           "summarize", "summarize_regions"]
