"""Choices between regions in the Carbon API, as the API server runs it (see ``test_api.py``): the history's split of
the saving into what the time and what the place saved, and the region filter, under which a choice counts where it
chose to run.

On 2024-06-05, after ``test_api``'s history: ``dag_a`` chose FR over its home DE (time and place both saved), then DE
itself (time only), and ran a task without a choice in DE; ``dag_b``'s choice of FR is waiting for its chosen task to
finish, so its record has no energy and no split yet.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_carbon.metrics import TaskTryKey, TaskTryRecord
from tests.plugins.test_api import airflow_api, as_user, client

__all__ = ["airflow_api", "client"]  # the fixtures, shared with test_api.py

H = timedelta(hours=1)
DAY = datetime(2024, 6, 5, tzinfo=UTC)
CANDIDATES = {"DE": 400.0, "FR": 50.0, "PL": None}
PL_FAILED = "PL: conn:em_pl: HTTP 503"


def choice(key: TaskTryKey, region: str, ready_at: datetime, *, saved: tuple[float, float] | None,
           **fields: Any) -> TaskTryRecord:
    """A choice's record: once its chosen task finished (``saved`` is the split), or before (``saved`` None)."""
    finished = {} if saved is None else {
        "energy_method": "gated: cpu=measured-rapl", "energy_kwh": 1.0, "emissions_g": 500.0 - sum(saved),
        "baseline_emissions_g": 500.0, "saved_g": sum(saved), "saved_time_g": saved[0], "saved_place_g": saved[1]}
    return TaskTryRecord(
        **asdict(key), state="completed", region=region, home_region="DE", chosen_task_id=f"evaluate_{region.lower()}",
        region_expected_g=CANDIDATES, failed_sources=[PL_FAILED], source="bundled:DE", policy="forecast",
        reason="green_window", ready_at=ready_at, deadline=ready_at + 4 * H, decided_at=ready_at,
        planned_start=ready_at + H, started_at=ready_at + H, ended_at=ready_at + 2 * H, delay_s=3600.0,
        energy_scope="gated", **({"energy_method": "none"} | finished | fields))


@pytest.fixture(scope="module")
def api(airflow_api):
    store = airflow_api["store"]
    store.write(choice(TaskTryKey("dag_a", "choose_region", "r5"), "FR", DAY + 8 * H, saved=(100.0, 350.0)))
    store.write(choice(TaskTryKey("dag_a", "choose_region", "r6"), "DE", DAY + 10 * H, saved=(30.0, 0.0)))
    store.write(TaskTryRecord(
        "dag_a", "summarize", "r6", state="completed", region="DE", source="bundled:DE", ready_at=DAY + 12 * H,
        started_at=DAY + 12 * H, ended_at=DAY + 13 * H, energy_kwh=0.5, emissions_g=100.0, baseline_emissions_g=120.0,
        saved_g=20.0))
    store.write(choice(TaskTryKey("dag_b", "choose_region", "r5"), "FR", DAY + 9 * H, saved=None))
    return airflow_api


def get(api, client, path: str, user: str = "admin", **params: str) -> Any:
    response = client.get(f"/carbon/api/{path}", params=params, headers=as_user(api, user))
    assert response.status_code == 200, response.text
    return response.json()


def by_dag(rows: list[dict]) -> dict[str, dict]:
    return {row["dag_id"]: row for row in rows}


def test_the_history_splits_the_saving_of_the_choices_into_time_and_place(api, client):
    rows = by_dag(get(api, client, "history", start="2024-06-05"))
    assert set(rows) == {"dag_a", "dag_b"}
    dag_a = rows["dag_a"]
    assert dag_a["tasks_run"] == 3 and dag_a["saved_g"] == pytest.approx(500.0)  # 450 + 30 + 20
    # Over the two choices only: the task without one has no split to add.
    assert (dag_a["saved_time_g"], dag_a["saved_place_g"]) == (pytest.approx(130.0), pytest.approx(350.0))
    # A choice whose chosen task has not finished saved nothing yet; days without a choice have no split at all.
    assert (rows["dag_b"]["saved_time_g"], rows["dag_b"]["saved_place_g"]) == (None, None)
    earlier = get(api, client, "history", end="2024-06-02")
    assert earlier and all(row["saved_time_g"] is None and row["saved_place_g"] is None for row in earlier)


def test_the_csv_ends_with_the_split_and_leaves_unknown_cells_empty(api, client):
    response = client.get("/carbon/api/history.csv", params={"start": "2024-06-05"}, headers=as_user(api, "admin"))
    header, *lines = response.text.splitlines()
    assert header.endswith(",saved_g,saved_pct,saved_time_g,saved_place_g")
    assert [line.split(",")[-2:] for line in lines] == [["130.0", "350.0"], ["", ""]]


def test_a_choice_counts_under_the_region_it_chose(api, client):
    fr = get(api, client, "history", start="2024-06-05", region="FR")
    assert [(row["dag_id"], row["tasks_run"], row["saved_place_g"]) for row in fr] == [
        ("dag_a", 1, 350.0), ("dag_b", 1, None)]
    tasks = get(api, client, "tasks", start="2024-06-05", region="FR")
    assert {(row["dag_id"], row["run_id"]) for row in tasks} == {("dag_a", "r5"), ("dag_b", "r5")}
    assert all(row["region"] == "FR" for row in tasks)
    # DE, its home region, holds only the choice that stayed home and the task without a choice.
    de = get(api, client, "tasks", start="2024-06-05", region="DE")
    assert sorted((row["task_id"], row["run_id"]) for row in de) == [("choose_region", "r6"), ("summarize", "r6")]
    [dag_a] = get(api, client, "history", start="2024-06-05", region="DE")
    assert (dag_a["saved_time_g"], dag_a["saved_place_g"]) == (30.0, 0.0)
    # A user who may read dag_a only sees its choice, not dag_b's.
    [mine] = get(api, client, "history", user="analyst", start="2024-06-05", region="FR")
    assert mine["dag_id"] == "dag_a"


def test_the_decision_of_a_choice_has_every_candidate_and_the_split(api, client):
    [row] = get(api, client, "decision/dag_a/r5/choose_region")
    assert (row["region"], row["home_region"], row["chosen_task_id"]) == ("FR", "DE", "evaluate_fr")
    assert row["region_expected_g"] == CANDIDATES and row["failed_sources"] == [PL_FAILED]
    assert (row["saved_time_g"], row["saved_place_g"], row["saved_g"]) == (100.0, 350.0, 450.0)
    [waiting] = get(api, client, "decision/dag_b/r5/choose_region")
    assert waiting["energy_method"] == "none" and waiting["saved_time_g"] is None
