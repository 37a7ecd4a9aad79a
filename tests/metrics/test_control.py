"""Releases, switches, budgets and their audit in a real store: SQLite, and Debian's PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from airflow_carbon.control import ControlInputError
from airflow_carbon.metrics import control
from airflow_carbon.metrics.record import COMPLETED, DEFERRED, RUNNING, TaskTryKey, TaskTryRecord
from airflow_carbon.metrics.schema import AUDIT, RELEASE

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def count(store, table) -> int:
    with store.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_release_names_the_latest_waiting_try_and_a_second_keeps_the_first(store):
    store.write(TaskTryRecord("d", "t", "r", 2, 1, state=COMPLETED))
    store.write(TaskTryRecord("d", "t", "r", 2, 2, state=DEFERRED))
    first = control.release(store.engine, "d", "r", "t", 2, actor="ann", reason="urgent", now=NOW)
    again = control.release(store.engine, "d", "r", "t", 2, actor="bob", reason="me too", now=NOW + timedelta(1))
    assert first == again and (first["try_number"], first["released_by"], first["reason"]) == (2, "ann", "urgent")
    assert [entry["actor"] for entry in control.audit(store.engine, None)] == ["ann"]
    state = control.control_state(store.engine)
    assert state.override(TaskTryKey("d", "t", "r", 2, 2), NOW).by == "ann"
    assert state.override(TaskTryKey("d", "t", "r", 2, 1), NOW) is None


def test_a_task_that_is_not_waiting_cannot_be_released_and_nothing_is_written(store):
    store.write(TaskTryRecord("d", "t", "r", state=RUNNING))
    with pytest.raises(control.NotWaitingError, match="is not waiting"):
        control.release(store.engine, "d", "r", "t", -1, actor="ann", reason=None, now=NOW)
    assert count(store, RELEASE) == count(store, AUDIT) == 0


def test_a_release_is_no_longer_polled_once_its_try_stopped_waiting(store):
    store.write(TaskTryRecord("d", "t", "r", state=DEFERRED))
    control.release(store.engine, "d", "r", "t", -1, actor="ann", reason=None, now=NOW)
    store.write(TaskTryRecord("d", "t", "r", state=RUNNING))
    assert control.control_state(store.engine).releases == {}


def test_the_poll_is_one_query(store):
    store.write(TaskTryRecord("d", "t", "r", state=DEFERRED))
    control.release(store.engine, "d", "r", "t", -1, actor="ann", reason=None, now=NOW)
    control.set_eco_off(store.engine, None, until=None, windows=["daily 08:00-10:00"], actor="ann", reason=None,
                        now=NOW)
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    state = control.control_state(store.engine)
    assert len(seen) == 1 and len(state.releases) == 1 and len(state.switches) == 1


def test_switches_replace_each_other_per_scope_and_every_change_is_audited(store):
    control.set_eco_off(store.engine, "d", until=NOW + timedelta(hours=1), windows=[], actor="ann", reason="a",
                        now=NOW)
    control.set_eco_off(store.engine, "d", until=None, windows=["weekdays 08:00-10:00"], actor="bob", reason="b",
                        now=NOW)
    [switch] = control.eco_switches(store.engine, NOW)
    assert (switch["set_by"], switch["until"], switch["windows"], switch["active"]) == (
        "bob", None, ["weekdays 08:00-10:00"], True)
    assert control.clear_eco_off(store.engine, "d", actor="cy", reason="over", now=NOW)
    assert not control.clear_eco_off(store.engine, "d", actor="cy", reason="again", now=NOW)
    assert [(e["action"], e["actor"]) for e in control.audit(store.engine, {"d"})] == [
        ("eco_on", "cy"), ("eco_off", "bob"), ("eco_off", "ann")]


def test_a_bad_switch_is_refused_before_anything_is_written(store):
    with pytest.raises(ControlInputError, match=r"windows\[1\]"):
        control.set_eco_off(store.engine, None, until=None, windows=["daily 08:00-09:00", "never"], actor="a",
                            reason=None, now=NOW)
    with pytest.raises(ControlInputError, match="not in the future"):
        control.set_eco_off(store.engine, None, until=NOW, windows=[], actor="a", reason=None, now=NOW)
    assert count(store, AUDIT) == 0 and control.eco_switches(store.engine, NOW) == []


def test_a_budget_counts_what_its_dags_tries_emitted_in_the_period(store):
    control.set_budget(store.engine, "d", grams=100, period="day", strict=False, actor="a", reason=None, now=NOW)
    for i, (ended, grams) in enumerate([(NOW - timedelta(hours=1), 30.0), (NOW - timedelta(days=1), 500.0)]):
        store.write(TaskTryRecord("d", "t", f"r{i}", state=COMPLETED, ended_at=ended, emissions_g=grams))
    store.write(TaskTryRecord("other", "t", "r", state=COMPLETED, ended_at=NOW, emissions_g=900.0))
    [status] = control.budget_status(store.engine, {"d", "other"}, NOW)
    assert (status["spent_g"], status["over"], status["spent_pct"]) == (30.0, False, 30.0)
    assert status["projected_g"] == pytest.approx(80.0)  # 30 g in 9 h, carried to 24 h
    assert control.budget_status(store.engine, {"other"}, NOW) == []


def test_only_the_first_to_find_a_dag_over_budget_tells(store):
    claims = [control.claim_budget_alert(store.engine, "d", NOW.replace(hour=0), spent=5, budget_g=1, now=NOW)
              for _ in range(3)]
    assert claims == [True, False, False]
    assert control.claim_budget_alert(store.engine, "d", NOW.replace(hour=0) + timedelta(days=1), spent=5,
                                      budget_g=1, now=NOW + timedelta(days=1))


def test_the_audit_shows_the_readable_dags_and_the_global_entries(store):
    control.set_eco_off(store.engine, None, until=None, windows=[], actor="a", reason=None, now=NOW)
    control.set_budget(store.engine, "secret", grams=1, period="day", strict=False, actor="a", reason=None, now=NOW)
    control.set_budget(store.engine, "mine", grams=1, period="day", strict=False, actor="a", reason=None, now=NOW)
    assert {(e["action"], e["dag_id"]) for e in control.audit(store.engine, {"mine"})} == {
        ("eco_off", None), ("budget_set", "mine")}


def test_the_latest_plans_are_written_to_waiting_rows_only(store):
    store.write(TaskTryRecord("d", "t", "r", state=DEFERRED, planned_start=NOW))
    store.write(TaskTryRecord("d", "u", "r", state=RUNNING, planned_start=NOW))
    plans = [{"dag_id": "d", "task_id": task_id, "run_id": "r", "map_index": -1, "try_number": 1,
              "decided_at": NOW + timedelta(minutes=5), "planned_start": NOW + timedelta(hours=2),
              "expected_emissions_now_g": 9.0, "expected_emissions_at_start_g": 4.0} for task_id in ("t", "u")]
    control.write_plans(store.engine, plans, NOW + timedelta(minutes=5))
    by_task = {row["task_id"]: row for row in store.rows()}
    assert (by_task["t"]["planned_start"], by_task["t"]["expected_emissions_at_start_g"]) == (
        NOW + timedelta(hours=2), 4.0)
    assert by_task["u"]["planned_start"] == NOW  # it stopped waiting: its row is left as it was
