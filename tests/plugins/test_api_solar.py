"""On-site solar in the Carbon API, as the API server runs it (see ``test_api.py``): ``/solar`` and the history's
solar and grid columns, over a real SQLite store whose ledger rows are written by ``SolarLedger.reserve``/``claim``
and whose records carry what each claim gave, as a task writes them.

Two sites: ``roof``, shared by ``dag_a`` (which the user ``analyst`` may read) and ``dag_b``; ``barn``, used by
``dag_b`` only. A third, ``shed``, has ledger rows that no record of a registered DAG names.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from airflow_carbon.metrics import MetricsStore, TaskTryKey, TaskTryRecord
from airflow_carbon.metrics.solar import SLOT_S, SolarLedger
from airflow_carbon.signals import SOLAR_UNIT, Series
from airflow_carbon.signals.series import Kind
from tests.plugins.test_api import airflow_api, as_user, client

__all__ = ["airflow_api", "client"]  # the fixtures, shared with test_api.py

H = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
NOON_3 = datetime(2024, 6, 3, 12, tzinfo=UTC)
NOON_4 = NOON_3 + timedelta(days=1)
A3, B3 = TaskTryKey("dag_a", "infer", "r3"), TaskTryKey("dag_b", "score", "r3")
A4, B4 = TaskTryKey("dag_a", "infer", "r4"), TaskTryKey("dag_b", "score", "r4")


def sun(kw: float, start: datetime, period_s: int = 3600, kind: Kind = "forecast") -> Series:
    source = "conn:inverter" if kind == "measured" else "forecast.solar"
    return Series(np.array([int(start.timestamp())]), np.array([kw]), period_s, "site", unit=SOLAR_UNIT, kind=kind,
                  source=source)


def run_at_site(store: MetricsStore, key: TaskTryKey, site: str, start: datetime, end: datetime, draw_kw: float, *,
                measured: Series | None, forecast: Series | None, region: str = "DE", record: bool = True) -> None:
    """A try that planned on the site's solar, ran, claimed its share and wrote its record, as the operator does."""
    ledger = SolarLedger(store)
    ledger.reserve(site, key, start, end, draw_kw, forecast or measured)
    used, basis = ledger.claim(site, key, start, end, draw_kw, measured=measured, forecast=forecast)
    if not record:
        return
    energy_kwh = draw_kw * (end - start).total_seconds() / 3600
    solar_kwh = float(used.values.sum()) * SLOT_S / 3600
    grid_kwh = energy_kwh - solar_kwh
    store.write(TaskTryRecord(
        **asdict(key), state="completed", region=region, source="bundled:DE", served_by="bundled:DE",
        policy="forecast", reason="solar", ready_at=start, deadline=start + 4 * H, started_at=start, ended_at=end,
        delay_s=0.0, energy_kwh=energy_kwh, solar_kwh=solar_kwh, grid_kwh=grid_kwh, site=site,
        solar_served_by=used.source, solar_basis=basis, intensity_g_per_kwh=300.0,
        baseline_intensity_g_per_kwh=400.0, emissions_g=300.0 * grid_kwh, baseline_emissions_g=400.0 * energy_kwh,
        saved_g=400.0 * energy_kwh - 300.0 * grid_kwh, estimated=basis != "measured"))


@pytest.fixture(scope="module")
def api(airflow_api):
    """The API of ``test_api`` (its history of 2024-06-01 and 02, no solar), and two days of solar after it."""
    store = airflow_api["store"]
    # June 3, roof: two tries share a measured 2 kW by draw (3 kW and 1 kW): 1.5 and 0.5 kW for the hour.
    measured = sun(2.0, NOON_3, kind="measured")
    SolarLedger(store).reserve("roof", B3, NOON_3, NOON_3 + H, 1.0, sun(4.0, NOON_3))  # both are running
    run_at_site(store, A3, "roof", NOON_3, NOON_3 + H, 3.0, measured=measured, forecast=sun(4.0, NOON_3))
    run_at_site(store, B3, "roof", NOON_3, NOON_3 + H, 1.0, measured=measured, forecast=sun(4.0, NOON_3))
    # dag_a's grid-only try of that day: no site.
    store.write(TaskTryRecord(
        "dag_a", "tag", "r3", state="completed", region="DE", source="bundled:DE", started_at=NOON_3,
        ended_at=NOON_3 + H, ready_at=NOON_3, energy_kwh=0.25, solar_kwh=0.0, grid_kwh=0.25, emissions_g=75.0,
        baseline_emissions_g=75.0, saved_g=0.0))
    # June 4, roof: 2 kW measured for ten minutes, then the 3 kW forecast; the try draws 2 kW for half an hour.
    run_at_site(store, A4, "roof", NOON_4, NOON_4 + 30 * MINUTE, 2.0,
                measured=sun(2.0, NOON_4, period_s=600, kind="measured"), forecast=sun(3.0, NOON_4))
    # June 4, barn, in FR: a forecast of 0.5 kW only.
    run_at_site(store, B4, "barn", NOON_4 + H, NOON_4 + 2 * H, 1.0, measured=None, forecast=sun(0.5, NOON_4 + H),
                region="FR")
    # A site whose tries belong to no DAG the auth manager knows.
    run_at_site(store, TaskTryKey("dag_x", "t", "r"), "shed", NOON_4, NOON_4 + H, 1.0,
                measured=sun(1.0, NOON_4, kind="measured"), forecast=None, record=False)
    return airflow_api


def solar(api, client, user: str = "admin", **params: str) -> list[dict]:
    response = client.get("/carbon/api/solar", params=params, headers=as_user(api, user))
    assert response.status_code == 200, response.text
    return response.json()


def by_site_day(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(row["site"], row["day"]): row for row in rows}


def test_solar_per_site_and_day_beside_what_the_tries_used(api, client):
    rows = solar(api, client)
    assert [(row["site"], row["day"]) for row in rows] == [
        ("barn", "2024-06-04"), ("roof", "2024-06-03"), ("roof", "2024-06-04")]
    days = by_site_day(rows)
    assert days["roof", "2024-06-03"] == {
        "site": "roof", "day": "2024-06-03", "output_kwh": pytest.approx(2.0), "measured_kwh": pytest.approx(2.0),
        "output_basis": "measured", "used_kwh": pytest.approx(2.0), "tasks_run": 2, "solar_kwh": pytest.approx(2.0),
        "grid_kwh": pytest.approx(2.0)}
    # Ten measured minutes at 2 kW, twenty forecast at 3 kW; the try had its 2 kW throughout.
    june_4 = days["roof", "2024-06-04"]
    assert june_4["output_kwh"] == pytest.approx((10 * 2.0 + 20 * 3.0) / 60)
    assert june_4["measured_kwh"] == pytest.approx(10 * 2.0 / 60) and june_4["output_basis"] == "measured+forecast"
    assert june_4["used_kwh"] == pytest.approx(1.0) and june_4["solar_kwh"] == pytest.approx(1.0)
    assert june_4["grid_kwh"] == pytest.approx(0.0) and june_4["tasks_run"] == 1
    barn = days["barn", "2024-06-04"]
    assert barn["output_basis"] == "forecast" and barn["measured_kwh"] == 0.0
    assert barn["output_kwh"] == pytest.approx(0.5) and barn["solar_kwh"] == pytest.approx(0.5)
    # The ledger and the records agree where every try is one the caller may read.
    for row in rows:
        assert row["used_kwh"] == pytest.approx(row["solar_kwh"]) and row["used_kwh"] <= row["output_kwh"] + 1e-9


def test_a_user_sees_the_sites_of_the_dags_they_may_read_with_the_site_totals(api, client):
    rows = by_site_day(solar(api, client, "analyst"))
    assert set(rows) == {("roof", "2024-06-03"), ("roof", "2024-06-04")}  # barn is dag_b's only; shed nobody's
    shared = rows["roof", "2024-06-03"]
    # The roof's output and what every try there used, beside what dag_a's own try used.
    assert shared["output_kwh"] == pytest.approx(2.0) and shared["used_kwh"] == pytest.approx(2.0)
    assert shared["tasks_run"] == 1 and shared["solar_kwh"] == pytest.approx(1.5)
    assert shared["grid_kwh"] == pytest.approx(1.5)
    assert solar(api, client, "analyst", dag_id="dag_b") == []


@pytest.mark.parametrize(("params", "expected"), [
    ({"dag_id": "dag_b"}, {("barn", "2024-06-04"): 0.5, ("roof", "2024-06-03"): 0.5, ("roof", "2024-06-04"): 0.0}),
    ({"task_id": "infer"}, {("roof", "2024-06-03"): 1.5, ("roof", "2024-06-04"): 1.0}),
    ({"region": "FR"}, {("barn", "2024-06-04"): 0.5}),
    ({"start": "2024-06-04"}, {("barn", "2024-06-04"): 0.5, ("roof", "2024-06-04"): 1.0}),
    ({"end": "2024-06-03"}, {("roof", "2024-06-03"): 2.0}),
    ({"start": "2024-06-01", "end": "2024-06-02"}, {}),
])
def test_solar_follows_the_history_filters(api, client, params, expected):
    rows = solar(api, client, **params)
    assert {key: row["solar_kwh"] for key, row in by_site_day(rows).items()} == pytest.approx(expected)
    # A site the filtered tries named shows its whole output, also on a day none of them ran.
    for row in rows:
        assert row["output_kwh"] > 0 and row["used_kwh"] >= row["solar_kwh"] - 1e-9


def test_the_history_gains_solar_and_grid_energy(api, client):
    headers = as_user(api, "admin")
    rows = client.get("/carbon/api/history", params={"start": "2024-06-03"}, headers=headers).json()
    assert [(row["dag_id"], row["day"]) for row in rows] == [
        ("dag_a", "2024-06-03"), ("dag_b", "2024-06-03"), ("dag_a", "2024-06-04"), ("dag_b", "2024-06-04")]
    assert [(row["solar_kwh"], row["grid_kwh"]) for row in rows] == [
        pytest.approx((1.5, 1.75)), pytest.approx((0.5, 0.5)), pytest.approx((1.0, 0.0)), pytest.approx((0.5, 0.5))]
    first = rows[0]
    assert first["energy_kwh"] == pytest.approx(first["solar_kwh"] + first["grid_kwh"])
    # The history without solar: no solar, all from the grid.
    [june_1] = [row for row in client.get("/carbon/api/history", params={"dag_id": "dag_a", "end": "2024-06-01"},
                                          headers=headers).json()]
    assert june_1["solar_kwh"] == 0.0 and june_1["grid_kwh"] == pytest.approx(june_1["energy_kwh"])

    csv = client.get("/carbon/api/history.csv", params={"dag_id": "dag_a", "start": "2024-06-03"}, headers=headers)
    header, *lines = csv.text.splitlines()
    assert header == ("dag_id,day,tasks_run,delayed,forced_by_deadline,served_by_fallback,energy_kwh,solar_kwh,"
                      "grid_kwh,emissions_g,baseline_emissions_g,saved_g,saved_pct,saved_time_g,saved_place_g")
    assert [line.split(",")[7:9] for line in lines] == [["1.5", "1.75"], ["1.0", "0.0"]]


def test_solar_needs_a_user_and_names_a_bad_filter(api, client):
    assert client.get("/carbon/api/solar").status_code == 401
    headers = as_user(api, "admin")
    response = client.get("/carbon/api/solar", params={"start": "2024-06-04", "end": "2024-06-03"}, headers=headers)
    assert response.status_code == 400 and "before start" in response.json()["detail"]
    response = client.get("/carbon/api/solar", params={"dag_id": "dag_a\x00"}, headers=headers)
    assert response.status_code == 400 and response.json()["detail"].startswith("dag_id: ")
    response = client.get("/carbon/api/solar", params={"end": "2024-02-30"}, headers=headers)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "end"


def test_solar_is_documented_on_the_api_page(api, client):
    schema = client.get("/carbon/openapi.json", headers=as_user(api, "analyst")).json()
    route = schema["paths"]["/api/solar"]["get"]
    assert route["summary"] == "On-site solar per site and UTC day"
    assert "tries of every DAG included" in " ".join(route["description"].split())  # why a site's totals
    assert {param["name"] for param in route["parameters"]} == {"dag_id", "task_id", "region", "start", "end"}
    fields = schema["components"]["schemas"]["SolarDay"]["properties"]
    assert {"output_kwh", "measured_kwh", "output_basis", "used_kwh", "solar_kwh", "grid_kwh"} <= set(fields)
    assert "measured" in fields["output_basis"]["description"]
