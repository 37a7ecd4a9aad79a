"""Pure planning: when should a job that may wait start? No Airflow imports."""

from airflow_carbon.planning.decision import Decision, Reason
from airflow_carbon.planning.policies import POLICIES, Job, PolicySettings, decide

__all__ = ["POLICIES", "Decision", "Job", "PolicySettings", "Reason", "decide"]
