"""On-site solar in a running Airflow: three tasks of one site wait for the sun, then share it.

``dags/solar_site.py`` runs three 1 kW jobs on the site ``roof``. Its solar connection ``site_solar`` is a
``forecast_solar`` one served by a loopback Forecast.Solar, whose sun rises ``SUN_IN_S`` after its first
estimate request, which is the first task's own first decision: the window is anchored to the tasks, not
to when the test started. The grid (a CSV, ``[carbon] source``) stays dirty, so only the sun lets a task
run before its deadline. A logger thread appends the site's measured output to the connection's
``measured_path`` as a real inverter logger would, one row per ``LOG_PERIOD_S``: less than forecast, so a
record that counted the forecast, or counted one kWh twice, would exceed it.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from airflow_carbon.metrics import MetricsStore
from airflow_carbon.metrics.solar import SolarLedger
from tests.e2e.airflow_cluster import AirflowCluster
from tests.fakes.forecast_solar import FakeForecastSolar

FOLDER = Path(tempfile.mkdtemp(prefix="carbon_solar_"))
GRID, MEASURED = FOLDER / "grid.csv", FOLDER / "measured.csv"
SUN_IN_S = 90  # after the first estimate request: every task of the run has decided by then
SUN_FOR_S = 1800
FORECAST_KW, MEASURED_KW = 3.0, 1.5  # the forecast fits the three 1 kW jobs; the panels give half of it
LOG_PERIOD_S = 10
SUN = FakeForecastSolar(timezone="UTC", step_s=60).start()

AIRFLOW_DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
AIRFLOW_ENV = {
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    "AIRFLOW__CARBON__SOURCE": "grid_signal",
    "AIRFLOW__CARBON__REGION": "TEST",
    "AIRFLOW_CONN_GRID_SIGNAL": json.dumps({"conn_type": "carbon_csv", "extra": {"path": str(GRID)}}),
    "AIRFLOW_CONN_SITE_SOLAR": json.dumps({
        "conn_type": "forecast_solar", "host": SUN.base_url,
        "extra": {"latitude": 52.52, "longitude": 13.4, "declination": 30, "azimuth": 0, "kwp": FORECAST_KW,
                  "site": "roof", "measured_path": str(MEASURED)}}),
}
DAG_ID = "solar_site"
TASKS = ("translate_contracts", "translate_manuals", "translate_tickets")

pytestmark = pytest.mark.timeout(720)


def write_grid(path: Path) -> None:
    """400 g/kWh for two days around now: never at or below the DAG's threshold of 100."""
    now_s = int(time.time()) // 300 * 300
    rows = ["timestamp,region,carbon_intensity"]
    rows += [f"{datetime.fromtimestamp(s, UTC):%Y-%m-%dT%H:%M:%S},TEST,400"
             for s in range(now_s - 86400, now_s + 86400, 300)]
    path.write_text("\n".join(rows) + "\n")


class Logger(threading.Thread):
    """Appends ``timestamp,solar_kw`` for each period as it starts: what the panels give, measured."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="solar-logger")
        self.stopped = threading.Event()
        MEASURED.write_text("timestamp,solar_kw\n")
        self.next_s = int(time.time()) // LOG_PERIOD_S * LOG_PERIOD_S - 600
        self.log_until(time.time())

    def kw_at(self, at_s: float) -> float:
        window = SUN.sun_window()
        return MEASURED_KW if window is not None and window[0] <= at_s < window[1] else 0.0

    def log_until(self, now_s: float) -> None:
        rows = []
        while self.next_s <= now_s:
            rows.append(f"{datetime.fromtimestamp(self.next_s, UTC):%Y-%m-%dT%H:%M:%S},{self.kw_at(self.next_s)}\n")
            self.next_s += LOG_PERIOD_S
        with MEASURED.open("a") as log:
            log.write("".join(rows))

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            self.log_until(time.time())


def measured_kwh_over(intervals: list[tuple[float, float]]) -> float:
    """The logged output integrated over the union of the intervals, second by second."""
    rows = [line.split(",") for line in MEASURED.read_text().splitlines()[1:] if line]
    starts = np.array([datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp() for t, _ in rows])
    kw = np.array([float(v) for _, v in rows])
    seconds = np.unique(np.concatenate([np.arange(int(a), int(np.ceil(b))) for a, b in intervals]))
    index = np.searchsorted(starts, seconds, side="right") - 1
    return float(kw[index].sum()) / 3600.0


@pytest.fixture(scope="module")
def sun():
    SUN.sunny_after_first_request(SUN_IN_S, SUN_FOR_S, FORECAST_KW)
    write_grid(GRID)
    logger = Logger()
    logger.start()
    yield SUN
    logger.stopped.set()
    SUN.stop()


def test_three_tasks_of_one_site_wait_for_the_sun_and_share_it(sun, airflow_cluster):
    cluster: AirflowCluster = airflow_cluster
    cluster.wait_for_dag(DAG_ID, timeout_s=180)
    run_id = cluster.trigger(DAG_ID)
    for task_id in TASKS:  # each decides before the sun rises, on the forecast, and waits for it
        cluster.wait_for_state(DAG_ID, run_id, task_id, "deferred", timeout_s=SUN_IN_S + 60)
    sun_start, sun_end = sun.sun_window()
    assert time.time() < sun_start, "the sun rose before every task had deferred: raise SUN_IN_S"
    run = cluster.wait_for_run(DAG_ID, run_id, timeout_s=SUN_IN_S + 420)
    assert run["state"] == "success"

    records = [cluster.xcom(DAG_ID, run_id, task_id, key="carbon") for task_id in TASKS]
    intervals = []
    for record in records:
        started, ended = (datetime.fromisoformat(record[k]).timestamp() for k in ("started_at", "ended_at"))
        intervals.append((started, ended))
        assert record["reason"] == "solar" and started >= sun_start - 1, record  # it waited for the sun
        assert record["site"] == "roof" and record["solar_served_by"] == "conn:site_solar", record
        assert record["solar_basis"] == "measured", record
        assert 0 <= record["solar_kwh"] <= record["energy_kwh"] + 1e-9
        assert record["grid_kwh"] == pytest.approx(record["energy_kwh"] - record["solar_kwh"])
        assert record["failed_sources"] == [], record
    used_kwh = sum(record["solar_kwh"] for record in records)
    print(f"\nsolar site: solar {[round(r['solar_kwh'], 5) for r in records]} kWh of energy "
          f"{[round(r['energy_kwh'], 5) for r in records]} kWh; {used_kwh:.5f} kWh used of "
          f"{measured_kwh_over(intervals):.5f} kWh measured over their intervals; waits "
          f"{[round(r['delay_s']) for r in records]} s (sun {sun_start - min(a for a, _ in intervals):+.0f} s)")
    assert sum(record["solar_kwh"] > 0 for record in records) >= 2  # the sun was shared, not taken by one
    assert used_kwh <= measured_kwh_over(intervals) + 1e-6  # no kWh counted twice, none that was not measured

    store = MetricsStore(f"sqlite:///{cluster.home}/carbon_metrics.db")
    rows = {row["task_id"]: row for row in store.rows(dag_id=DAG_ID)}
    assert {rows[t]["solar_kwh"] for t in TASKS} == {r["solar_kwh"] for r in records}
    [day] = [d for d in SolarLedger(store).site_days(datetime.now(UTC) - timedelta(days=1)) if d["site"] == "roof"]
    assert day["used_kwh"] >= used_kwh - 1e-6 and day["output_kwh"] >= day["used_kwh"]
    for slot in SolarLedger(store).site_slots("roof", datetime.fromtimestamp(sun_start, UTC),
                                              datetime.fromtimestamp(sun_end, UTC)):
        assert slot["used_kw"] <= slot["output_kw"] + 1e-9, slot  # the tasks of a slot split its output

    # What the Carbon view's solar chart is drawn from: the site's output beside what the tasks used.
    auth = {"Authorization": f"Bearer {cluster.login()}"}
    chart = httpx.get(f"{cluster.base_url}/carbon/api/solar", headers=auth, timeout=60).json()
    [site] = [entry for entry in chart if entry["site"] == "roof"]
    assert site["used_kwh"] == pytest.approx(day["used_kwh"]) and site["output_kwh"] == pytest.approx(day["output_kwh"])
