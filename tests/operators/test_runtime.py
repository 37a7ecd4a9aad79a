"""One try of a carbon-aware task around its work, with a stand-in task instance and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics import COMPLETED, RUNNING
from airflow_carbon.operators.runtime import XCOM_KEY, CarbonTaskRun
from airflow_carbon.settings import CarbonSettingsError, resolve
from tests.signal_files import write_signal

RECORD_FIELDS = {"region", "source", "policy", "ready_at", "deadline", "started_at", "ended_at", "delay_s", "reason",
                 "intensity_g_per_kwh", "baseline_intensity_g_per_kwh", "energy_kwh", "solar_kwh", "emissions_g",
                 "baseline_emissions_g", "saved_g", "estimated"}


@dataclass
class FakeTaskInstance:
    """What the runtime reads of a task instance, and the XComs it pushes."""

    dag_id: str = "nightly"
    task_id: str = "summarize"
    run_id: str = "manual__1"
    map_index: int = -1
    try_number: int = 1
    pushed: dict = field(default_factory=dict)

    def xcom_push(self, key: str, value) -> None:
        self.pushed[key] = json.loads(json.dumps(value))  # what XCom would store: JSON


@dataclass
class FakeTask:
    task_id: str = "summarize"


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "metrics.db")}))
    signal = write_signal(tmp_path / "signal.csv", green_in_s=3600, period_s=60)
    monkeypatch.setenv("AIRFLOW_CONN_SIGNAL", json.dumps({"conn_type": "carbon_csv",
                                                          "extra": {"path": str(signal), "region": "TEST"}}))
    yield tmp_path
    CarbonMetricsHook.reset_store_cache()


def start(ti: FakeTaskInstance, **given) -> CarbonTaskRun:
    settings = resolve(ti.task_id, {"source": "signal", "max_delay": timedelta(hours=2), **given})
    return CarbonTaskRun.start(FakeTask(ti.task_id), {"ti": ti}, settings)


def test_a_retry_keeps_the_first_tries_ready_time_and_deadline(env):
    first = start(FakeTaskInstance())
    decision, payload = first.decide_now()
    assert decision.start == datetime.fromisoformat(payload["decision"]["start"])
    first.write_decision(decision, payload)
    [row] = CarbonMetricsHook().get_store().rows()
    assert row["state"] == RUNNING if decision.run_now else row["state"] == "deferred"
    retry = start(FakeTaskInstance(try_number=2))
    assert retry.ready_at == first.ready_at and retry.deadline == first.deadline == first.ready_at + timedelta(hours=2)


def test_mapped_instances_share_the_deadline_of_the_first_that_became_ready(env):
    first = start(FakeTaskInstance(map_index=0))
    first.write_decision(*first.decide_now())
    later = start(FakeTaskInstance(map_index=7))
    assert later.deadline == first.deadline


def test_the_record_goes_to_xcom_and_the_store_with_every_field(env):
    ti = FakeTaskInstance()
    run = start(ti, power_kw=0.5)
    decision, payload = run.decide_now()
    assert payload["reason"] == "green_window" and not decision.run_now  # clean in an hour: it waits
    started = datetime.now(UTC)
    record = run.finish({"ti": ti}, payload, started, started + timedelta(minutes=30))
    assert set(ti.pushed[XCOM_KEY]) >= RECORD_FIELDS and ti.pushed[XCOM_KEY]["energy_kwh"] == pytest.approx(0.25)
    assert record["intensity_g_per_kwh"] == pytest.approx(400) and record["emissions_g"] == pytest.approx(100)
    assert record["served_by"] == "conn:signal" and record["failed_sources"] == []
    assert not record["estimated"]  # declared power, a measured interval, a file that covers it
    [row] = CarbonMetricsHook().get_store().rows()
    assert row["state"] == COMPLETED and row["emissions_g"] == pytest.approx(100)


def test_undeclared_energy_is_estimated_and_a_dead_source_still_gives_a_record(env, monkeypatch):
    ti = FakeTaskInstance()
    run = start(ti)
    (env / "signal.csv").unlink()
    started = datetime.now(UTC)
    record = run.finish({"ti": ti}, {"reason": "deadline"}, started, started + timedelta(minutes=6))
    assert record["estimated"] and record["emissions_g"] is None and record["reason"] == "deadline"
    assert record["energy_kwh"] == pytest.approx(0.3 * 0.1)  # [carbon] power_kw default for 6 minutes
    assert "signal.csv" in record["failed_sources"][0] and ti.pushed[XCOM_KEY]["saved_g"] is None


def test_a_deadline_before_the_task_became_ready_is_refused_with_the_task_named(env):
    with pytest.raises(CarbonSettingsError, match="task 'summarize': deadline 2020-01-01"):
        start(FakeTaskInstance(), deadline="2020-01-01T00:00:00+00:00")


def test_a_source_connection_of_another_type_is_refused(env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NOT_A_SIGNAL", json.dumps({"conn_type": "http", "host": "x"}))
    with pytest.raises(CarbonSettingsError, match="'not_a_signal' has type 'http'"):
        start(FakeTaskInstance(), source="not_a_signal")


def test_a_resumed_task_takes_its_ready_time_and_deadline_from_the_trigger_event(env):
    event = {"ready_at": "2026-01-01T00:00:00+00:00", "deadline": "2026-01-01T02:00:00+00:00", "reason": "deadline"}
    settings = resolve("summarize", {"source": "signal"})
    run = CarbonTaskRun.start(FakeTask(), {"ti": FakeTaskInstance()}, settings, event)
    assert run.ready_at == datetime(2026, 1, 1, tzinfo=UTC) and run.deadline == datetime(2026, 1, 1, 2, tzinfo=UTC)


def test_a_slow_source_at_the_start_is_read_only_until_the_deadline(env, monkeypatch):
    async def never_answers(spec, now, history):
        await asyncio.sleep(3600)

    monkeypatch.setattr("airflow_carbon.hooks.sources.aload_signal", never_answers)
    run = start(FakeTaskInstance(), max_delay=timedelta(seconds=1.5))
    decision, payload = run.decide_now()
    assert decision.reason in ("signal_unavailable", "deadline")
    assert datetime.now(UTC) <= run.deadline + timedelta(seconds=1)
    assert "no answer in the" in payload["failed_sources"][0]


def test_a_retry_past_its_deadline_runs_at_once_without_reading_the_source(env, monkeypatch):
    ti = FakeTaskInstance()
    start(ti, max_delay=timedelta(seconds=0)).wait_if_needed(FakeTask())  # first try: ready now, deadline now
    monkeypatch.setattr("airflow_carbon.hooks.sources.aload_signal", None)  # any read would fail loudly
    ti.try_number = 2
    decision, payload = start(ti, max_delay=timedelta(seconds=0)).decide_now()
    assert decision.run_now and decision.reason == "deadline" and payload["failed_sources"] == []
