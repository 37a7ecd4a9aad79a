"""What a job emitted and what it saved; no Airflow imports."""

from airflow_carbon.accounting.record import JobRecord, account, mean_intensity_g_per_kwh
from airflow_carbon.accounting.solar import SolarBudget

__all__ = ["JobRecord", "SolarBudget", "account", "mean_intensity_g_per_kwh"]
