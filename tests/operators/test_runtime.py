"""One try of a carbon-aware task around its work, with a stand-in task instance and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partialmethod
from pathlib import Path

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_carbon.clock import utcnow
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics import COMPLETED, DEFERRED, FAILED, RUNNING, TaskTryRecord
from airflow_carbon.operators.runtime import RESUME_METHOD, XCOM_KEY, CarbonTaskRun, source_refs
from airflow_carbon.planning import Decision, Reason
from airflow_carbon.settings import CarbonSettingsError, resolve
from airflow_carbon.signals.services import BadResponse
from airflow_carbon.signals.source import Reading, SourceRef
from airflow_carbon.triggers.carbon import CarbonWindowTrigger
from airflow_carbon.triggers.event import CarbonEvent
from tests.fakes import FakeTask, FakeTaskInstance

RECORD_FIELDS = {"region", "source", "served_by", "signal", "policy", "ready_at", "deadline", "started_at", "ended_at",
                 "delay_s", "reason", "intensity_g_per_kwh", "baseline_intensity_g_per_kwh", "energy_kwh", "solar_kwh",
                 "emissions_g", "baseline_emissions_g", "saved_g", "estimated", "version", "job_id"}
CORPUS = Path(__file__).parents[1] / "signals" / "corpus"


def start(ti: FakeTaskInstance, **given) -> CarbonTaskRun:
    settings = resolve(ti.task_id, {"source": "signal", "max_delay": timedelta(hours=2), **given})
    return CarbonTaskRun.start(FakeTask(ti.task_id), {"ti": ti}, settings)


def stored() -> list[TaskTryRecord]:
    return CarbonMetricsHook().get_store().records()


def event_at_deadline(run: CarbonTaskRun, now: datetime) -> CarbonEvent:
    """What a trigger whose every source failed hands back at the deadline."""
    decision = Decision(run.settings.policy, now, now, run.deadline, Reason.DEADLINE)
    return CarbonEvent.of(decision, run.ready_at, run.deadline, Reading(None, None, None), run.settings,
                          tuple(run.sources))


def test_a_retry_keeps_the_first_tries_ready_time_and_deadline(env):
    first = start(FakeTaskInstance())
    event = first.decide_now()
    assert not event.decision.run_now  # clean in an hour, two hours allowed: it waits
    first.write_decision(event)
    [row] = stored()
    assert row.state == DEFERRED and row.planned_start == event.decision.start
    retry = start(FakeTaskInstance(try_number=2))
    assert retry.ready_at == first.ready_at and retry.deadline == first.deadline == first.ready_at + timedelta(hours=2)


def test_a_task_that_runs_at_once_is_stored_running(env):
    run = start(FakeTaskInstance(), policy="immediate")
    event = run.wait_if_needed(FakeTask())
    assert event.decision.run_now and event.reason == "immediate"
    [row] = stored()
    assert row.state == RUNNING and row.energy_kwh == pytest.approx(run.job.energy_kwh)


def test_a_task_that_must_wait_defers_to_a_trigger_holding_its_settings_and_sources(env):
    run = start(FakeTaskInstance())
    with pytest.raises(TaskDeferred) as deferred:
        run.wait_if_needed(FakeTask())
    trigger = deferred.value.trigger
    assert isinstance(trigger, CarbonWindowTrigger) and deferred.value.method_name == RESUME_METHOD
    kwargs = trigger.serialize()[1]
    assert kwargs["deadline"] == run.deadline.isoformat() and kwargs["signals"] == [
        {"name": "conn:signal", "region": "DE", "replay": None, "forecaster": "seasonal"}]
    assert kwargs["task_settings"] == run.settings.to_json()
    assert [row.state for row in stored()] == [DEFERRED]


def test_mapped_instances_share_the_deadline_of_the_first_that_became_ready(env):
    first = start(FakeTaskInstance(map_index=0))
    first.write_decision(first.decide_now())
    later = start(FakeTaskInstance(map_index=7))
    assert later.deadline == first.deadline


def test_the_record_goes_to_xcom_and_the_store_with_every_field(env):
    ti = FakeTaskInstance()
    run = start(ti, power_kw=0.5)
    event = run.decide_now()
    assert event.reason == "green_window" and not event.decision.run_now
    started = datetime.now(UTC)
    record = run.finish({"ti": ti}, event, started, started + timedelta(minutes=30))
    assert set(ti.pushed[XCOM_KEY]) >= RECORD_FIELDS and TaskTryRecord.from_json(ti.pushed[XCOM_KEY]) == record
    assert record.energy_kwh == pytest.approx(0.25) and record.state == COMPLETED
    assert record.intensity_g_per_kwh == pytest.approx(400) and record.emissions_g == pytest.approx(100)
    assert record.source == record.served_by == "conn:signal" and record.failed_sources == []
    assert record.estimated and record.energy_method == "power-x-time"  # declared power: not measured
    assert (record.energy_scope, record.pue, record.expected_from) == ("task", 1.0, "duration: defaults (no history); "
                                                                                     "energy: declared")
    [row] = stored()
    assert row.state == COMPLETED and row.emissions_g == pytest.approx(100)


def test_work_that_raised_is_recorded_failed_with_the_energy_it_drew(env):
    ti = FakeTaskInstance()
    run = start(ti, power_kw=0.5)
    started = datetime.now(UTC)
    record = run.finish({"ti": ti}, run.decide_now(), started, started + timedelta(minutes=30), failed=True)
    assert record.state == FAILED and record.energy_kwh == pytest.approx(0.25)
    assert [row.state for row in stored()] == [FAILED] and ti.pushed[XCOM_KEY]["state"] == FAILED


def test_undeclared_energy_is_estimated_and_a_dead_source_still_gives_a_record(env):
    ti = FakeTaskInstance()
    run = start(ti)
    (env / "signal.csv").unlink()
    started = datetime.now(UTC)
    record = run.finish({"ti": ti}, event_at_deadline(run, started), started, started + timedelta(minutes=6))
    assert record.estimated and record.emissions_g is None and record.reason == "deadline"
    assert record.energy_kwh == pytest.approx(0.3 * 0.1)  # [carbon] power_kw default for 6 minutes
    assert "signal.csv" in record.failed_sources[0] and ti.pushed[XCOM_KEY]["saved_g"] is None


def test_a_deadline_before_the_task_became_ready_is_refused_with_the_task_named(env):
    with pytest.raises(CarbonSettingsError, match="task 'summarize': deadline 2020-01-01"):
        start(FakeTaskInstance(), deadline="2020-01-01T00:00:00+00:00")


def test_a_source_connection_of_another_type_is_refused(env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NOT_A_SIGNAL", json.dumps({"conn_type": "http", "host": "x"}))
    with pytest.raises(CarbonSettingsError, match="task 'summarize': connection 'not_a_signal' has type 'http'"):
        start(FakeTaskInstance(), source="not_a_signal")


def test_a_resumed_task_finishes_on_its_events_settings_and_sources_without_reading_them_again(env):
    settings = resolve("summarize", {"region": "FR", "energy_kwh": 0.2, "max_delay": timedelta(hours=2)})
    ready_at = datetime.now(UTC) - timedelta(hours=1)
    decision = Decision("forecast", ready_at, ready_at, ready_at + timedelta(hours=2), Reason.DEADLINE)
    gone = SourceRef.connection("deleted_since", "FR")  # read again, it would fail the task
    event = CarbonEvent.of(decision, ready_at, ready_at + timedelta(hours=2), Reading(None, None, None), settings,
                           (gone, SourceRef.bundled("FR")))
    task = FakeTask(carbon_options={"policy": "greenest"})  # resolved again, it would fail the task
    ti = FakeTaskInstance()
    run = CarbonTaskRun.resume(task, {"ti": ti}, CarbonEvent.from_json("summarize", event.to_json()))
    assert run.settings == settings and run.sources == [gone, SourceRef.bundled("FR")]
    assert (run.ready_at, run.deadline) == (ready_at, ready_at + timedelta(hours=2))
    now = datetime.now(UTC)
    record = run.finish({"ti": ti}, event, now, now + timedelta(minutes=10))
    assert record.source == "conn:deleted_since" and record.region == "FR" and record.energy_kwh == 0.2
    assert record.served_by == "bundled:FR" and record.failed_sources[0].startswith("conn:deleted_since: ")


def test_a_task_deferred_by_the_previous_release_resumes_on_its_settings_resolved_now(env):
    old_event = {
        "reason": "deadline", "fired_at": "2026-01-01T02:00:00+00:00", "ready_at": "2026-01-01T00:00:00+00:00",
        "deadline": "2026-01-01T02:00:00+00:00", "served_by": None, "failed_sources": [], "replayed": False,
        "signal": None,
        "decision": {"policy": "forecast", "now": "2026-01-01T02:00:00+00:00", "start": "2026-01-01T02:00:00+00:00",
                     "deadline": "2026-01-01T02:00:00+00:00", "reason": "deadline", "run_now": True, "wait_s": 0.0,
                     "expected_emissions_now_g": None, "expected_emissions_at_start_g": None,
                     "expected_saving_g": None, "extrapolated": False},
    }
    task = FakeTask(carbon_options={"region": "FR", "policy": "threshold"})
    run = CarbonTaskRun.resume(task, {"ti": FakeTaskInstance()}, CarbonEvent.from_json("summarize", old_event))
    assert run.ready_at == datetime(2026, 1, 1, tzinfo=UTC) and run.deadline == datetime(2026, 1, 1, 2, tzinfo=UTC)
    assert run.settings.region == "FR" and run.settings.policy == "threshold"
    assert run.sources == source_refs(run.settings) == [SourceRef.bundled("FR")]


def test_a_slow_source_at_the_start_is_read_only_until_the_deadline(env, monkeypatch):
    async def never_answers(ref, now, history):
        await asyncio.sleep(3600)

    monkeypatch.setattr("airflow_carbon.hooks.sources.aload", never_answers)
    run = start(FakeTaskInstance(), max_delay=timedelta(seconds=3))
    event = run.decide_now()
    assert event.reason == "signal_unavailable" and event.served_by is None
    bound = re.search(r"no answer in the ([\d.]+) s left before the deadline", event.failed_sources[0])
    assert bound is not None and float(bound.group(1)) <= 3.0


def test_a_retry_past_its_deadline_runs_at_once_without_reading_the_source(env, monkeypatch):
    ti = FakeTaskInstance()
    start(ti, max_delay=timedelta(minutes=1), policy="immediate").wait_if_needed(FakeTask())  # first try: ready now
    later = utcnow() + timedelta(minutes=2)
    monkeypatch.setattr("airflow_carbon.operators.runtime.utcnow", lambda: later)  # the retry comes after the deadline
    monkeypatch.setattr("airflow_carbon.hooks.sources.aload", None)  # any read would fail loudly
    ti.try_number = 2
    event = start(ti, max_delay=timedelta(minutes=1)).decide_now()
    assert event.decision.run_now and event.reason == "deadline" and event.failed_sources == ()


def csv_connection(monkeypatch, conn_id: str, path: Path) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}",
                       json.dumps({"conn_type": "carbon_csv", "extra": {"path": str(path), "region": "US-TX"}}))


@pytest.mark.parametrize(("name", "where"), [
    ("gap.csv", "line 5, column 'timestamp': gap"),
    ("missing_column.csv", "line 1, column 'intensity': no intensity column"),
    ("wrong_delimiter.csv", "line 1: the header holds ';'"),
])
def test_a_malformed_csv_connection_fails_the_start_naming_task_connection_file_and_line(env, monkeypatch, name, where):
    csv_connection(monkeypatch, "bad_csv", CORPUS / name)
    run = start(FakeTaskInstance(), source="bad_csv")
    with pytest.raises(CarbonSettingsError, match=rf"^task 'summarize': signal source connection 'bad_csv' cannot be "
                                                  rf"read: .*{re.escape(name)}, {re.escape(where)}"):
        run.wait_if_needed(FakeTask())
    assert stored() == []  # refused before any decision: nothing waits


def test_a_missing_csv_file_fails_the_start_even_when_a_fallback_answers(env, monkeypatch):
    csv_connection(monkeypatch, "moved_csv", env / "moved.csv")
    with pytest.raises(CarbonSettingsError, match=r"connection 'moved_csv' cannot be read: .*No such file.*moved\.csv"):
        start(FakeTaskInstance(), source="moved_csv", fallback="signal").decide_now()


def test_a_csv_connection_without_a_path_or_with_a_directory_fails_the_start(env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NO_PATH", json.dumps({"conn_type": "carbon_csv", "extra": {"region": "TEST"}}))
    with pytest.raises(CarbonSettingsError, match=r"connection 'no_path' cannot be read: .*has no 'path'"):
        start(FakeTaskInstance(), source="no_path").decide_now()
    csv_connection(monkeypatch, "a_directory", env)
    with pytest.raises(CarbonSettingsError, match=r"connection 'a_directory' cannot be read: .*Is a directory"):
        start(FakeTaskInstance(), source="a_directory").decide_now()


def test_a_csv_source_with_a_malformed_file_fails_the_start_naming_its_path(env):
    path = str(CORPUS / "negative_value.csv")
    run = replace(start(FakeTaskInstance()), sources=[SourceRef.file(path, "US-TX")])
    with pytest.raises(CarbonSettingsError, match=rf"signal source file {re.escape(repr(path))} cannot be read: "
                                                  r".*line 3, column 'carbon_intensity': negative value"):
        run.decide_now()


def test_a_file_broken_after_the_first_decision_is_fallen_back_from_not_refused(env):
    first = start(FakeTaskInstance())
    first.write_decision(first.decide_now())
    (env / "signal.csv").write_text((CORPUS / "gap.csv").read_text())  # replaced while the task waits
    next_poke = first.decide_now()
    retry = start(FakeTaskInstance(try_number=2)).decide_now()
    for event in (next_poke, retry):
        assert event.served_by is None and event.failed_sources[0].startswith("conn:signal: SignalDataError")


def test_a_failing_service_at_the_start_is_still_fallen_back_from(env, monkeypatch):
    async def bad_answer(ref, now, history):
        raise BadResponse("watttime: /v3/forecast: data is not a list", service="watttime")

    monkeypatch.setattr("airflow_carbon.hooks.sources.aload", bad_answer)
    run = start(FakeTaskInstance())
    assert run.check_files
    event = run.decide_now()
    assert event.reason == "signal_unavailable" and event.served_by is None
    assert event.failed_sources[0].startswith("conn:signal: BadResponse")


def test_a_retry_while_the_store_is_down_keeps_the_first_tries_deadline_from_the_spool(env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(env / "airflow_home"))
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(env / "down" / "metrics.db")}))  # no such dir
    monkeypatch.setattr(CarbonMetricsHook, "__init__", partialmethod(CarbonMetricsHook.__init__, retry_wait_s=0))
    ti = FakeTaskInstance()
    first = start(ti)
    first.write_decision(first.decide_now())
    assert len(CarbonMetricsHook().spool().pending()) == 1  # the store is down: the decision is kept on this host

    monkeypatch.setattr("airflow_carbon.operators.runtime.utcnow", lambda: first.ready_at + timedelta(minutes=30))
    ti.try_number = 2
    retry = start(ti)
    assert retry.ready_at == first.ready_at and retry.deadline == first.deadline == first.ready_at + timedelta(hours=2)

    (env / "down").mkdir()
    retry.write_decision(retry.decide_now())  # the store answers: the first try's decision is written too
    rows = stored()
    assert [row.try_number for row in rows] == [1, 2] and {row.ready_at for row in rows} == {first.ready_at}
    assert CarbonMetricsHook().spool().pending() == []


def test_a_task_on_replayed_data_says_so_once_in_its_log(env, caplog):
    ti = FakeTaskInstance()
    run = CarbonTaskRun.start(FakeTask(ti.task_id), {"ti": ti}, resolve(ti.task_id, {"region": "DE"}))
    with caplog.at_level("WARNING", logger="airflow_carbon.operators.runtime"):
        run.decide_now()
        run.decide_now()  # a sensor's next poke, a re-plan: said once
    told = [r.getMessage() for r in caplog.records if "replayed onto today" in r.getMessage()]
    assert len(told) == 1 and "'summarize'" in told[0] and "replay of" in told[0] and "de_ci.csv" in told[0]
