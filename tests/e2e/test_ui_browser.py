"""The Carbon view in a real browser (Debian's chromium, driven by Playwright) against a running Airflow.

A carbon-aware task is deferred for the whole test (once it has deferred, its signal turns green only at
its deadline) and the metrics store holds three days of history, on-site solar included (ledger rows written by
``SolarLedger.claim``, records carrying what each claim gave), so the page has something to show; the
screenshots land in docs/screenshots/ for the README.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from airflow_carbon.metrics import MetricsStore, TaskTryKey, TaskTryRecord
from airflow_carbon.metrics.solar import SLOT_S, SolarLedger
from airflow_carbon.signals import SOLAR_UNIT, Series
from tests.e2e.airflow_cluster import AirflowCluster
from tests.e2e.signal_window import write_signal_file

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
SIGNAL = Path(tempfile.mkdtemp(prefix="carbon_ui_")) / "signal.csv"
AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_carbon"
AIRFLOW_ENV = {
    "AIRFLOW__CARBON__SOURCE": "carbon_demo_signal",
    "AIRFLOW__CARBON__REGION": "TEST",
    "AIRFLOW_CONN_CARBON_DEMO_SIGNAL": json.dumps(
        {"conn_type": "carbon_csv", "extra": {"path": str(SIGNAL), "region": "TEST"}}),
}
DAG_ID, TASK_ID = "carbon_demo", "summarize_logs"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # `make test` installs Debian's chromium

pytestmark = pytest.mark.timeout(480)


def seed_history(store: MetricsStore) -> None:
    """Three days of finished tries: 10 kWh a day at 300 g/kWh instead of 400, 1 kg saved a day."""
    today = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    for day in range(1, 4):
        ready = today - timedelta(days=day)
        store.write(TaskTryRecord(
            "carbon_demo", "nightly_eval", f"scheduled__{day}", state="completed", region="DE", source="bundled:DE",
            served_by="bundled:DE", policy="forecast", reason="green_window", ready_at=ready,
            deadline=ready + timedelta(hours=4), started_at=ready + timedelta(hours=2),
            ended_at=ready + timedelta(hours=3), delay_s=7200.0, intensity_g_per_kwh=300.0,
            baseline_intensity_g_per_kwh=400.0, energy_kwh=10.0, solar_kwh=0.0, grid_kwh=10.0, emissions_g=3000.0,
            baseline_emissions_g=4000.0, saved_g=1000.0, estimated=False))
        seed_solar_try(store, today.replace(hour=11) - timedelta(days=day), measured=day < 3)


def seed_solar_try(store: MetricsStore, start: datetime, *, measured: bool) -> None:
    """A 6 kW try at the site ``roof`` for an hour, whose panels gave 10 kW then 2 kW (measured, or a forecast only):
    6 kWh of output, 4 kWh of it used, 2 kWh from the grid; had it run when ready, the same solar was free for
    it: 25 % saved, like the nightly tries of its day."""
    output = Series(np.array([int(start.timestamp()), int(start.timestamp()) + 1800]), np.array([10.0, 2.0]), 1800,
                    "roof", unit=SOLAR_UNIT, kind="measured" if measured else "forecast",
                    source="conn:inverter" if measured else "forecast.solar")
    key = TaskTryKey("carbon_demo", "score_images", f"scheduled__{start.date()}")
    end = start + timedelta(hours=1)
    ledger = SolarLedger(store)
    ledger.reserve("roof", key, start, end, 6.0, output)
    used, basis = ledger.claim("roof", key, start, end, 6.0, measured=output if measured else None, forecast=output)
    solar_kwh = float(used.values.sum()) * SLOT_S / 3600
    store.write(TaskTryRecord(
        **asdict(key), state="completed", region="DE", source="bundled:DE", served_by="bundled:DE",
        policy="forecast", reason="solar", ready_at=start - timedelta(hours=2), deadline=start + timedelta(hours=2),
        started_at=start, ended_at=end, delay_s=7200.0, intensity_g_per_kwh=300.0, baseline_intensity_g_per_kwh=400.0,
        energy_kwh=6.0, solar_kwh=solar_kwh, grid_kwh=6.0 - solar_kwh, site="roof", solar_served_by=output.source,
        solar_basis=basis, emissions_g=300.0 * (6.0 - solar_kwh), baseline_emissions_g=400.0 * (6.0 - solar_kwh),
        saved_g=100.0 * (6.0 - solar_kwh), estimated=not measured))


def seed_choice(store: MetricsStore) -> TaskTryKey:
    """A choice between regions whose chosen task has finished: FR over its home DE, PL's signal failed; 450 g saved
    against DE when ready, 100 g of it by waiting, 350 g by moving."""
    ready = datetime.now(UTC).replace(hour=5, minute=0, second=0, microsecond=0) - timedelta(days=1)
    key = TaskTryKey(DAG_ID, "choose_region", "manual__choice")
    store.write(TaskTryRecord(
        **asdict(key), state="completed", region="FR", home_region="DE", chosen_task_id="evaluate_fr",
        region_expected_g={"DE": 400.0, "FR": 50.0, "PL": None}, failed_sources=["PL: conn:em_pl: HTTP 503"],
        source="bundled:FR", served_by="bundled:FR", policy="forecast", reason="green_window", ready_at=ready,
        deadline=ready + timedelta(hours=4), decided_at=ready, planned_start=ready + timedelta(hours=1),
        started_at=ready + timedelta(hours=1), ended_at=ready + timedelta(hours=2), delay_s=3600.0, energy_kwh=1.0,
        emissions_g=50.0, baseline_emissions_g=500.0, saved_g=450.0, saved_time_g=100.0, saved_place_g=350.0,
        energy_method="gated: cpu=measured-rapl", energy_scope="gated"))
    return key


def test_log_in_open_the_carbon_view_and_see_the_deferred_task_and_the_history(airflow_cluster):
    from playwright.sync_api import sync_playwright

    cluster: AirflowCluster = airflow_cluster
    cluster.wait_for_dag(DAG_ID)
    write_signal_file(SIGNAL, green_in_s=240, period_s=60)  # green in 4 min, within its 5 min: it defers
    run_id = cluster.trigger(DAG_ID)
    cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "deferred", timeout_s=180)
    store = MetricsStore(f"sqlite:///{cluster.home}/carbon_metrics.db")
    [waiting] = store.rows(dag_id=DAG_ID, state="deferred")
    # Clean from the last minute before its deadline (rows are a minute each): it waits as long as it may.
    last_minute_s = (waiting["deadline"] - datetime.now(UTC)).total_seconds() - 60
    write_signal_file(SIGNAL, green_in_s=last_minute_s, period_s=60)
    seed_history(store)

    for path in ("/carbon/", "/carbon/api/deferred", "/carbon/api/history"):  # nobody anonymous gets in
        assert httpx.get(cluster.base_url + path, trust_env=False).status_code == 401

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        with told_where_it_failed(page):
            see_the_carbon_view(page, cluster, store, run_id)
        browser.close()

    links = cluster.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK_ID}/links")
    assert f"carbon/task/{DAG_ID}/" in str(links.get("extra_links", links).get("Carbon decision"))  # while deferred


@contextmanager
def told_where_it_failed(page) -> Iterator[None]:
    """A failure names the page it was on and every answer that refused or set the session cookie: a page of JSON
    saying "Not authenticated" is otherwise all a CI log shows of how it got there."""
    answers: list[str] = []

    def note(response) -> None:
        cookie = response.headers.get("set-cookie", "")
        if response.status >= 400 or "_token" in cookie:
            answers.append(f"{response.request.method} {response.url} {response.status} set-cookie={cookie[:60]!r}")

    page.on("response", note)
    try:
        yield
    except Exception as error:  # an expectation not met, or Playwright's own timeout
        raise AssertionError(f"on {page.url}; refused or cookie answers: {answers[-12:]}\n{error}") from error


def see_the_carbon_view(page, cluster: AirflowCluster, store: MetricsStore, run_id: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{cluster.base_url}/auth/login?next=/carbon/")
    page.get_by_label("Username").fill(cluster.username)
    page.get_by_label("Password").fill(cluster.password)
    page.get_by_role("button", name="Sign in").click()
    # The login page's own address names /carbon/ (its ``next``): wait for the view's path itself.
    page.wait_for_url(lambda url: urlsplit(url).path == "/carbon/", timeout=120_000)

    deferred = page.locator("#deferred-body")
    expect(deferred).to_contain_text(TASK_ID, timeout=60_000)
    expect(deferred).to_contain_text(DAG_ID)
    # Deferred in Airflow too, so it waits, and may be started now.
    expect(deferred.locator("tbody tr").filter(has_text=TASK_ID).get_by_role("button", name="Run now")
           ).to_have_count(1)
    history = page.locator("#history-body")
    expect(history).to_contain_text("carbon_demo", timeout=60_000)
    expect(history).to_contain_text("25")  # % saved: 1.2 kg of 4.8 kg, every day
    expect(history).to_contain_text("12 kWh")  # from the grid a day: 10 kWh at night, 2 kWh of the solar try's

    # Solar per day: the roof's output beside what the tasks used, both series, three days.
    solar = page.locator("#chart-solar")
    expect(solar).to_have_attribute("aria-label", re.compile(
        r"^site output and used by these tasks per UTC day, 3 days from "), timeout=60_000)
    expect(page.locator("#solar-key")).to_be_visible()
    expect(page.locator("#solar-key")).to_have_text(re.compile(r"site output\s*used by these tasks"))
    expect(page.locator("#solar-note")).to_contain_text(
        "at roof: its panels' output (measured where a meter covered it, else forecast)")
    plot = solar.locator(".u-over")
    box = plot.bounding_box()
    plot.hover(position={"x": box["width"] / 2, "y": box["height"] / 2})  # the middle day of three
    tip = solar.locator(".chart-tip")
    expect(tip).to_contain_text("site output: 6 kWh")
    expect(tip).to_contain_text("used by these tasks: 4 kWh")
    expect(tip).to_contain_text("output: measured")
    page.mouse.move(0, 0)
    page.wait_for_timeout(1500)  # let the charts draw before the picture
    page.screenshot(path=str(SCREENSHOTS / "carbon_view.png"), full_page=True)

    background = "getComputedStyle(document.body).backgroundColor"
    chart_line = "import('./static/js/common.js').then((m) => m.themeColor('--chart-line'))"
    assert page.evaluate(background) == "rgb(255, 255, 255)"
    assert page.evaluate(chart_line) == "rgb(60, 91, 137)"

    page.goto(f"{cluster.base_url}/carbon/?theme=dark")
    expect(page.locator("#deferred-body")).to_contain_text(TASK_ID, timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(SCREENSHOTS / "carbon_view_dark.png"), full_page=True)
    assert page.evaluate(background) == "rgb(17, 17, 17)"
    assert page.evaluate(chart_line) == "rgb(133, 162, 201)"  # the charts get the dark palette's colours

    page.emulate_media(color_scheme="dark")  # the OS in dark mode: followed unless ?theme pins light
    page.goto(f"{cluster.base_url}/carbon/")
    assert page.evaluate(background) == "rgb(17, 17, 17)"
    page.goto(f"{cluster.base_url}/carbon/?theme=light")
    assert page.evaluate(background) == "rgb(255, 255, 255)"
    page.emulate_media(color_scheme="light")

    page.goto(f"{cluster.base_url}/carbon/task/{DAG_ID}/{run_id}/{TASK_ID}?map_index=-1")
    expect(page.locator("main")).to_contain_text("waiting", timeout=60_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SCREENSHOTS / "carbon_decision.png"), full_page=True)

    # A choice between regions: where it ran, every candidate, and its saving split into time and place.
    choice = seed_choice(store)
    page.goto(f"{cluster.base_url}/carbon/task/{DAG_ID}/{choice.run_id}/{choice.task_id}?map_index=-1")
    where = page.locator(".where")
    expect(where).to_contain_text("Chosen regionFR", timeout=60_000)
    expect(where).to_contain_text("Task that runs thereevaluate_fr")
    expect(where.locator("tbody tr")).to_have_text([
        re.compile(r"^DE\s*400 g\s*home: the baseline$"), re.compile(r"^FR\s*50 g\s*chosen$"),
        re.compile("^PL\\s*\u2013\\s*its signal failed: PL: conn:em_pl: HTTP 503$")])
    expect(where.locator(".split")).to_have_text("Time saved 100 g, place saved 350 g.")
    # The history filtered to FR holds the choice alone, under the region it chose, with its split.
    page.goto(f"{cluster.base_url}/carbon/?region=FR")
    expect(page.locator("#history-body .split").first).to_have_text("time 100 g · place 350 g", timeout=60_000)
    expect(page.locator("#history-body tbody tr")).to_have_count(1)
