"""Releases and eco-mode-off switches reach waiting triggers through one poll per triggerer, on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import event

from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics import control
from airflow_carbon.metrics.record import DEFERRED, TaskTryRecord
from airflow_carbon.settings import resolve
from airflow_carbon.signals.source import SourceRef
from airflow_carbon.triggers import control as trigger_control
from airflow_carbon.triggers.carbon import CarbonWindowTrigger
from airflow_carbon.triggers.event import CarbonEvent
from tests.signal_files import write_signal

POLL_S = 0.2


@pytest.fixture
def store(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "metrics.db")}))
    monkeypatch.setattr(trigger_control, "POLL_INTERVAL_S", POLL_S)
    yield CarbonMetricsHook().get_store()
    CarbonMetricsHook.reset_store_cache()


def waiting_trigger(store, signal, task_id: str, dag_id: str = "dag") -> CarbonWindowTrigger:
    """A trigger as a triggerer makes it (``task_instance`` set), its try's row deferred in the store."""
    now = datetime.now(UTC)
    trigger = CarbonWindowTrigger(
        ready_at=now, deadline=now + timedelta(hours=2), policy="forecast", duration_s=60, energy_kwh=0.01,
        signals=[SourceRef.file(str(signal), "TEST", replay=False).to_dict()], refresh_s=3600,
        task_settings=resolve(task_id, {"region": "TEST"}).to_json())
    trigger.task_instance = SimpleNamespace(dag_id=dag_id, task_id=task_id, run_id="run", map_index=-1,
                                            try_number=1)
    store.write(TaskTryRecord(dag_id, task_id, "run", state=DEFERRED, ready_at=now, region="TEST"))
    return trigger


async def events(triggers, timeout_s: float) -> list:
    tasks = [asyncio.create_task(anext(trigger.run())) for trigger in triggers]
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    return [CarbonEvent.from_json("t", task.result().payload) if task in done else None for task in tasks]


def test_a_released_trigger_fires_at_the_next_poll_and_the_others_keep_waiting(store, tmp_path):
    signal = write_signal(tmp_path / "signal.csv", green_in_s=3600, period_s=60)
    triggers = [waiting_trigger(store, signal, f"task_{i}") for i in range(30)]
    selects: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: selects.append(statement) if "carbon_release" in statement else None)
    asked = datetime.now(UTC)

    async def scenario() -> list:
        running = asyncio.create_task(events(triggers, timeout_s=5 * POLL_S + 3))
        await asyncio.sleep(2 * POLL_S)
        await asyncio.to_thread(control.release, store.engine, "dag", "run", "task_7", -1, actor="alice",
                                reason="the board wants it now", now=asyncio_now())
        return await running

    fired = asyncio.run(scenario())
    released = [e for e in fired if e is not None]
    assert len(released) == 1 and fired[7] is not None
    event_7 = fired[7]
    assert event_7.reason == "released" and event_7.decision.run_now
    assert (event_7.override.by, event_7.override.note) == ("alice", "the board wants it now")
    assert event_7.override.at >= asked
    # The plan's figures for now stay; the release expects no saving.
    assert event_7.decision.expected_saving_g in (0.0, None)
    polls = len(selects)
    assert 1 <= polls <= (5 * POLL_S + 3) / POLL_S + 2  # one query per poll for 30 triggers, not one per trigger


def asyncio_now() -> datetime:
    return datetime.now(UTC)


def test_a_release_made_during_a_slow_read_is_decided_after_it_was_made(store, tmp_path, monkeypatch):
    """A read that takes longer than a poll (a busy triggerer, a slow source): the release reaches the watch while
    the trigger reads, and the event says it was decided when the trigger saw it, never before the release."""
    signal = write_signal(tmp_path / "signal.csv", green_in_s=3600, period_s=60)
    trigger = waiting_trigger(store, signal, "slow")
    read = CarbonWindowTrigger._read

    async def slow_read(self, now: datetime) -> None:
        await read(self, now)
        await asyncio.sleep(6 * POLL_S)

    monkeypatch.setattr(CarbonWindowTrigger, "_read", slow_read)

    async def scenario() -> tuple[list, datetime]:
        running = asyncio.create_task(events([trigger], timeout_s=20 * POLL_S + 3))
        await asyncio.sleep(2 * POLL_S)
        released_at = asyncio_now()
        await asyncio.to_thread(control.release, store.engine, "dag", "run", "slow", -1, actor="alice",
                                reason=None, now=released_at)
        return await running, released_at

    [fired], released_at = asyncio.run(scenario())
    assert fired is not None and fired.reason == "released"
    assert fired.decision.now >= released_at and fired.decision.start == fired.decision.now


def test_eco_mode_off_releases_every_waiting_trigger_of_its_scope(store, tmp_path):
    signal = write_signal(tmp_path / "signal.csv", green_in_s=3600, period_s=60)
    mine = [waiting_trigger(store, signal, f"mine_{i}", dag_id="mine") for i in range(3)]
    other = [waiting_trigger(store, signal, f"other_{i}", dag_id="other") for i in range(2)]

    async def scenario() -> list:
        running = asyncio.create_task(events(mine + other, timeout_s=5 * POLL_S + 3))
        await asyncio.sleep(POLL_S)
        await asyncio.to_thread(control.set_eco_off, store.engine, "mine", until=None, windows=[], actor="bob",
                                reason="incident 42", now=asyncio_now())
        return await running

    fired = asyncio.run(scenario())
    assert [e.reason if e else None for e in fired] == ["eco_off"] * 3 + [None, None]
    assert {(e.override.by, e.override.note) for e in fired[:3]} == {("bob", "incident 42")}


def test_the_current_plan_of_each_waiting_try_reaches_its_row_in_one_batch(store, tmp_path):
    signal = write_signal(tmp_path / "signal.csv", green_in_s=3600, period_s=60)
    triggers = [waiting_trigger(store, signal, f"task_{i}") for i in range(5)]
    updates: list[int] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, params, _ctx, many: updates.append(len(params) if many else 1)
                 if statement.startswith("UPDATE carbon_task_try") else None)
    fired = asyncio.run(events(triggers, timeout_s=3 * POLL_S + 1))
    assert fired == [None] * 5
    rows = store.rows(state=DEFERRED)
    assert all(row["planned_start"] is not None and row["decided_at"] is not None for row in rows)
    assert updates and updates[0] == 5  # the five plans in one statement


def test_a_store_that_cannot_be_read_leaves_the_triggers_waiting_on_their_plans(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(trigger_control, "POLL_INTERVAL_S", POLL_S)
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "no" / "such" / "dir.db")}))
    signal = write_signal(tmp_path / "signal.csv", green_in_s=3)
    now = datetime.now(UTC)
    trigger = CarbonWindowTrigger(
        ready_at=now, deadline=now + timedelta(hours=2), policy="forecast", duration_s=60, energy_kwh=0.01,
        signals=[SourceRef.file(str(signal), "TEST", replay=False).to_dict()], refresh_s=3600,
        task_settings=resolve("t", {"region": "TEST"}).to_json())
    trigger.task_instance = SimpleNamespace(dag_id="dag", task_id="t", run_id="run", map_index=-1, try_number=1)
    [fired] = asyncio.run(events([trigger], timeout_s=120))
    CarbonMetricsHook.reset_store_cache()
    assert fired is not None and fired.reason == "green_window"
    assert "reading releases and eco-mode switches" in caplog.text


def test_a_plan_that_did_not_change_is_not_written_again():
    from airflow_carbon.metrics.record import TaskTryKey
    from airflow_carbon.planning import Decision, Reason

    watch = trigger_control.ControlWatch("carbon_metrics_default")
    key = TaskTryKey("dag", "t", "run")
    now = datetime.now(UTC)
    plan = Decision("forecast", now, now + timedelta(hours=1), now + timedelta(hours=2), Reason.GREEN_WINDOW, 5.0, 2.0)
    watch.report(key, plan)
    watch._plans.clear()  # as a poll takes them
    watch.report(key, replace(plan, now=now + timedelta(minutes=5)))
    assert watch._plans == {}
    watch.report(key, replace(plan, start=now + timedelta(minutes=90)))
    assert watch._plans[key]["planned_start"] == now + timedelta(minutes=90)
