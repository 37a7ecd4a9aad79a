"""Pure planning: when should a job that may wait start? No Airflow imports."""

from airflow_carbon.planning.decision import Decision, Reason
from airflow_carbon.planning.policies import (
    DEFAULT_MAX_DELAY,
    DEFAULT_MIN_SAVING_PCT,
    DEFAULT_REPLAN_MARGIN_PCT,
    DEFAULT_RISK_AVERSION,
    DEFAULT_THRESHOLD_G_PER_KWH,
    POLICIES,
    Job,
    PolicySettings,
    decide,
    stricter,
)

__all__ = [
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MIN_SAVING_PCT",
    "DEFAULT_REPLAN_MARGIN_PCT",
    "DEFAULT_RISK_AVERSION",
    "DEFAULT_THRESHOLD_G_PER_KWH",
    "POLICIES",
    "Decision",
    "Job",
    "PolicySettings",
    "Reason",
    "decide",
    "stricter",
]
