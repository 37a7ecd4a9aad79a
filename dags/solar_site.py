"""Three inference jobs on one site with panels on the roof: each waits for the sun, and they share it.

The site's solar source is the connection ``site_solar``: a ``forecast_solar`` connection (the plane's
latitude, longitude, declination, azimuth and kWp in its extra, and ``measured_path``, the CSV the site's
inverter logger appends to) or a ``carbon_solar_csv`` one. Its extra's ``site`` names the site; every task
naming it shares one solar budget in the metrics store, so two jobs never both count the same kWh.

The ``threshold`` policy runs a job when on-site solar covers its power (``solar_threshold_kw``, by default
the job's own power) or the grid is at or below ``threshold_g_per_kwh``; at its deadline it runs whatever.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

BATCHES = ("contracts", "manuals", "tickets")


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["carbon", "solar", "inference"], max_active_runs=1,
     default_args={"solar": "site_solar", "policy": "threshold", "threshold_g_per_kwh": 100,
                   "max_delay": timedelta(hours=1), "power_kw": 1.0, "expected_duration": timedelta(minutes=1)})
def solar_site():
    @task.carbon_aware
    def translate(name: str) -> dict[str, str]:
        """Stands in for a translation model drawing about 1 kW for a minute or less."""
        time.sleep(10)
        return {"batch": name, "status": "translated"}

    for batch in BATCHES:
        translate.override(task_id=f"translate_{batch}")(batch)


solar_site()
