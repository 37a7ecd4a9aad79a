"""The history queries on a real SQLite store, seeded the way tasks write it."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import date, timedelta

import pytest

from airflow_carbon.metrics import MetricsStore, TaskTryKey, TaskTryRecord, queries
from airflow_carbon.metrics.queries import Filters
from tests.metrics.seeds import D1, H, complete, decide, seed_history


@pytest.fixture
def store(tmp_path):
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield store
    store.close()


@pytest.fixture
def seeded(store):
    seed_history(store)
    return store


def by_key(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(row["dag_id"], row["day"]): row for row in rows}


def test_history_aggregates_per_dag_and_utc_day(seeded):
    rows = queries.history(seeded.engine, None)
    assert [(row["dag_id"], row["day"]) for row in rows] == [
        ("dag_a", "2024-06-01"), ("dag_b", "2024-06-01"), ("dag_a", "2024-06-02")]
    day1 = by_key(rows)["dag_a", "2024-06-01"]
    assert day1 == {"dag_id": "dag_a", "day": "2024-06-01", "tasks_run": 2, "delayed": 1, "forced_by_deadline": 0,
                    "served_by_fallback": 0, "energy_kwh": pytest.approx(0.7), "solar_kwh": 0.0,
                    "grid_kwh": pytest.approx(0.7), "emissions_g": 90.0,
                    "baseline_emissions_g": 140.0, "saved_g": 50.0, "saved_pct": pytest.approx(100 * 50 / 140),
                    "saved_time_g": None, "saved_place_g": None}


def test_a_try_counts_for_the_day_it_started_with_deadline_and_fallback_counted(seeded):
    day2 = by_key(queries.history(seeded.engine, None))["dag_a", "2024-06-02"]
    # No decision row, but it started two hours after it became ready: delayed.
    assert day2["tasks_run"] == 1 and day2["delayed"] == 1
    assert day2["forced_by_deadline"] == 1 and day2["served_by_fallback"] == 1
    assert day2["saved_g"] == 5.0 and day2["saved_pct"] == pytest.approx(100 * 5 / 35)


def test_a_completion_naming_where_its_data_came_from_is_no_fallback(store):
    """The series' origin (``signal``: ``replay of ...``) is not a source name, and is never compared with one."""
    key = TaskTryKey("dag_a", "t", "r")
    decide(store, key, ready_at=D1, start=D1 + H, deadline=D1 + 2 * H, source="bundled:DE", served_by="bundled:DE")
    complete(store, key, ready_at=D1, started_at=D1 + H, reason="green_window", energy_kwh=0.1, emissions_g=1.0,
             baseline_g=2.0, signal="replay of /data/de_ci.csv", served_by="bundled:DE")
    [row] = queries.history(store.engine, None)
    assert row["served_by_fallback"] == 0


def test_tries_without_a_signal_count_but_have_no_saving_pct(seeded):
    dag_b = by_key(queries.history(seeded.engine, None))["dag_b", "2024-06-01"]
    assert dag_b["tasks_run"] == 1 and dag_b["energy_kwh"] == 1.0
    assert dag_b["emissions_g"] == 0.0 and dag_b["saved_g"] == 0.0 and dag_b["saved_pct"] is None
    assert dag_b["served_by_fallback"] == 1  # a failed source, though its own source served it
    assert dag_b["delayed"] == 1


@pytest.mark.parametrize(("filters", "expected"), [
    (Filters(dag_id="dag_b"), [("dag_b", "2024-06-01")]),
    (Filters(region="FR"), [("dag_b", "2024-06-01")]),
    (Filters(task_id="tag"), [("dag_a", "2024-06-01")]),
    (Filters(start=date(2024, 6, 2)), [("dag_a", "2024-06-02")]),
    (Filters(end=date(2024, 6, 1)), [("dag_a", "2024-06-01"), ("dag_b", "2024-06-01")]),
    (Filters(start=date(2024, 6, 2), end=date(2024, 6, 2)), [("dag_a", "2024-06-02")]),
    (Filters(start=date(2024, 6, 3)), []),
])
def test_history_filters(seeded, filters, expected):
    assert [(row["dag_id"], row["day"]) for row in queries.history(seeded.engine, None, filters)] == expected


def test_end_day_is_included_to_its_last_second(store):
    for minute, run in ((23 * 60 + 59, "last"), (24 * 60, "next")):
        started = D1 + timedelta(minutes=minute)
        complete(store, TaskTryKey("dag_a", "t", run), ready_at=started, started_at=started, reason="immediate",
                 energy_kwh=0.1, emissions_g=1.0, baseline_g=1.0)
    [row] = queries.history(store.engine, None, Filters(end=date(2024, 6, 1)))
    assert row["day"] == "2024-06-01" and row["tasks_run"] == 1


def test_only_readable_dags_are_seen(seeded):
    assert {row["dag_id"] for row in queries.history(seeded.engine, {"dag_b", "dag_x"})} == {"dag_b"}
    assert queries.history(seeded.engine, set()) == []
    assert queries.tasks(seeded.engine, set()) == []
    # A filter on a DAG the user may not read finds nothing rather than failing.
    assert queries.history(seeded.engine, {"dag_b"}, Filters(dag_id="dag_a")) == []


def test_history_csv_has_a_header_and_empty_cells_for_unknown_values(seeded):
    text = queries.history_csv(queries.history(seeded.engine, None))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == queries.HISTORY_COLUMNS and len(rows) == 3
    dag_b = next(row for row in rows if row["dag_id"] == "dag_b")
    assert dag_b["saved_pct"] == "" and dag_b["tasks_run"] == "1" and float(dag_b["energy_kwh"]) == 1.0


def test_tasks_are_the_most_recent_oldest_first(seeded):
    rows = queries.tasks(seeded.engine, None)
    assert [(row["dag_id"], row["task_id"], row["run_id"]) for row in rows] == [
        ("dag_a", "tag", "r1"), ("dag_a", "summarize", "r1"), ("dag_b", "evaluate", "r1"),
        ("dag_a", "summarize", "r2")]
    last_two = queries.tasks(seeded.engine, None, limit=2)
    assert [row["run_id"] for row in last_two] == ["r1", "r2"] and last_two[0]["dag_id"] == "dag_b"
    first = rows[1]
    assert first["started_at"] == D1 + 10 * H and first["delay_s"] == 7200.0 and first["intensity_g_per_kwh"] == 100.0
    assert queries.tasks(seeded.engine, None, Filters(region="FR"))[0]["solar_kwh"] == 0.0


def test_deferred_shows_intensity_now_saving_and_time_waited_and_left(store):
    now = D1 + 10 * H
    key = TaskTryKey("dag_a", "translate", "r3", map_index=2)
    decide(store, key, ready_at=now - H, start=now + H, deadline=now + 3 * H, now_g=120.0, at_start_g=60.0,
           energy_kwh=0.4)
    # Already past its deadline (the task is about to resume): nothing left, never negative.
    decide(store, TaskTryKey("dag_a", "late", "r3"), ready_at=now - 5 * H, start=now - H, deadline=now - H)
    store.write(TaskTryRecord("dag_a", "late", "r3", region="DE", source="bundled:DE", policy="forecast",
                              ready_at=now - 5 * H, deadline=now - H, decided_at=now - 5 * H, planned_start=now - H))
    [waiting, late] = sorted(queries.deferred(store.engine, None, now), key=lambda row: row["task_id"], reverse=True)
    assert tuple(waiting) == queries.DEFERRED_COLUMNS
    assert waiting["map_index"] == 2 and waiting["current_intensity_g_per_kwh"] == pytest.approx(300.0)
    assert waiting["expected_saving_g"] == 60.0 and waiting["waited_s"] == 3600.0 and waiting["remaining_s"] == 10800.0
    assert waiting["planned_start"] == now + H and waiting["reason"] == "green_window"
    assert late["remaining_s"] == 0.0


def test_deferred_leaves_out_completed_superseded_and_unreadable_tries(seeded):
    now = D1 + 10 * H
    for try_number in (1, 2):  # try 1 failed while deferred; try 2 waits now
        decide(seeded, TaskTryKey("dag_b", "evaluate", "r2", try_number=try_number), ready_at=now - H,
               start=now + H, deadline=now + 3 * H)
    rows = queries.deferred(seeded.engine, None, now)
    assert [(row["dag_id"], row["run_id"], row["try_number"]) for row in rows] == [("dag_b", "r2", 2)]
    assert queries.deferred(seeded.engine, {"dag_a"}, now) == []
    assert queries.deferred(seeded.engine, None, now, dag_id="dag_a") == []


def test_a_deferred_row_without_planned_energy_has_no_current_intensity(store):
    decide(store, TaskTryKey("d", "t", "r"), ready_at=D1, start=D1 + H, deadline=D1 + 2 * H, energy_kwh=None)
    [row] = queries.deferred(store.engine, None, D1)
    assert row["current_intensity_g_per_kwh"] is None and row["expected_emissions_now_g"] == 100.0


def test_the_completion_replaces_the_planned_energy_and_a_late_decision_keeps_it(store):
    key = TaskTryKey("d", "t", "r")
    decide(store, key, ready_at=D1, start=D1 + H, deadline=D1 + 2 * H, energy_kwh=0.5)
    complete(store, key, ready_at=D1, started_at=D1 + H, reason="green_window", energy_kwh=0.42, emissions_g=4.2,
             baseline_g=8.4)
    decide(store, key, ready_at=D1, start=D1 + H, deadline=D1 + 2 * H, energy_kwh=0.5)  # replayed, late
    [row] = store.rows()
    assert row["state"] == "completed" and row["energy_kwh"] == 0.42


def test_decision_returns_every_try_of_one_task_instance(seeded):
    now = D1 + 20 * H
    key = TaskTryKey("dag_a", "summarize", "r1", try_number=2)
    decide(seeded, key, ready_at=D1 + 8 * H, start=D1 + 21 * H, deadline=D1 + 22 * H)
    rows = queries.decision(seeded.engine, None, "dag_a", "r1", "summarize", -1, now)
    assert [(row["try_number"], row["state"]) for row in rows] == [(1, "completed"), (2, "deferred")]
    assert rows[1]["current_intensity_g_per_kwh"] == 200.0 and rows[1]["failed_sources"] == []
    assert queries.decision(seeded.engine, None, "dag_a", "r1", "summarize", 0, now) == []
    assert queries.decision(seeded.engine, {"dag_b"}, "dag_a", "r1", "summarize", -1, now) == []


def test_source_regions_are_limited_to_readable_dags(seeded):
    assert queries.source_regions(seeded.engine, None, "conn:em") == {"DE"}  # served a dag_a try
    assert queries.source_regions(seeded.engine, {"dag_a"}, "conn:wt") == {"DE"}
    assert queries.source_regions(seeded.engine, {"dag_b"}, "conn:wt") == set()
    assert queries.source_regions(seeded.engine, None, "conn:nobody") == set()


def test_bad_filters_are_refused_with_the_field():
    with pytest.raises(ValueError, match="end 2024-06-01 is before start 2024-06-02"):
        Filters(start=date(2024, 6, 2), end=date(2024, 6, 1))


def test_deferred_shows_the_latest_plan_the_trigger_wrote_not_the_first(store):
    """The trigger re-plans at every refresh and writes each plan over the last: the figures follow the latest."""
    key = TaskTryKey("dag_a", "translate", "r3")
    decide(store, key, ready_at=D1, start=D1 + 3 * H, deadline=D1 + 4 * H, now_g=120.0, at_start_g=60.0,
           energy_kwh=0.4)
    replanned = D1 + H
    store.write(TaskTryRecord("dag_a", "translate", "r3", region="DE", source="bundled:DE", policy="forecast",
                              reason="green_window", ready_at=D1, deadline=D1 + 4 * H, energy_kwh=0.4,
                              decided_at=replanned, planned_start=D1 + 2 * H, expected_emissions_now_g=80.0,
                              expected_emissions_at_start_g=70.0))
    [row] = queries.deferred(store.engine, None, D1 + 90 * timedelta(minutes=1))
    assert row["decided_at"] == replanned and row["planned_start"] == D1 + 2 * H
    assert row["expected_emissions_now_g"] == 80.0 and row["expected_emissions_at_start_g"] == 70.0
    assert row["current_intensity_g_per_kwh"] == pytest.approx(200.0)  # 80 g / 0.4 kWh, not the first 300
    assert row["expected_saving_g"] == 10.0 and row["waited_s"] == 5400.0


def test_three_mapped_tries_that_waited_a_minute_are_delayed_whatever_their_last_plan(store):
    for map_index, last_reason in enumerate(["deadline", "green_window", "no_green_window"]):
        key = TaskTryKey("dag_a", "score", "r1", map_index=map_index)
        decide(store, key, ready_at=D1, start=D1 + 2 * H, deadline=D1 + 4 * H)
        # The last plan before it ran said "now" (a deadline, no window left, or the window came early).
        started = D1 + timedelta(seconds=60 + map_index)
        store.write(TaskTryRecord(**asdict(key), state="running", region="DE", source="bundled:DE",
                                  policy="forecast", reason=last_reason, ready_at=D1, deadline=D1 + 4 * H,
                                  decided_at=started, planned_start=started))
        complete(store, key, ready_at=D1, started_at=started, reason=last_reason, energy_kwh=0.1, emissions_g=1.0,
                 baseline_g=1.0)
    [day] = queries.history(store.engine, None)
    assert day["tasks_run"] == 3 and day["delayed"] == 3
    assert day["forced_by_deadline"] == 1


def test_delayed_starts_at_the_records_threshold(store):
    from airflow_carbon.metrics.record import DELAYED_AFTER_S

    for run_id, delay_s in (("at_once", 0.0), ("source_read", DELAYED_AFTER_S - 1), ("waited", DELAYED_AFTER_S)):
        complete(store, TaskTryKey("dag_a", "t", run_id), ready_at=D1, started_at=D1 + timedelta(seconds=delay_s),
                 reason="immediate", energy_kwh=0.1, emissions_g=1.0, baseline_g=1.0)
    [day] = queries.history(store.engine, None)
    assert day["tasks_run"] == 3 and day["delayed"] == 1
