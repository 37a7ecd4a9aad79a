"""A try's energy on its record (how it was obtained, per component, with the PUE) and a task planned from the
tries before it, with a stand-in task instance, stand-in meters and a real SQLite store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred

from airflow_carbon import carbon_aware
from airflow_carbon.accounting.energy import Component
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics import DEFERRED, MetricsStore, TaskTryRecord
from airflow_carbon.operators import runtime
from airflow_carbon.operators.carbon_aware import UNMETERED_DEFERRAL
from airflow_carbon.operators.runtime import XCOM_KEY, CarbonTaskRun
from airflow_carbon.settings import resolve
from tests.fakes import FakeTask, FakeTaskInstance

CPU_AND_RAM = (Component("cpu", 0.004, "estimated-cpu-model", "process"),
               Component("ram", 0.002, "estimated-ram-model", "process"))


class StandInMetering:
    """Reads what it is given; counts its starts and stops."""

    started: ClassVar[list[str]] = []
    stopped = 0

    def __init__(self, components: tuple[Component, ...], notes: tuple[str, ...] = ()) -> None:
        self.components, self.notes = components, notes

    def stop(self) -> tuple[tuple[Component, ...], tuple[str, ...]]:
        StandInMetering.stopped += 1
        return self.components, self.notes


@pytest.fixture
def meters(monkeypatch):
    """Every meter reads ``CPU_AND_RAM``."""
    StandInMetering.started, StandInMetering.stopped = [], 0

    def start(energy_meter: str, task_id: str) -> StandInMetering:
        StandInMetering.started.append(energy_meter)
        return StandInMetering(CPU_AND_RAM)

    monkeypatch.setattr(runtime.Metering, "start", staticmethod(start))
    return StandInMetering


def start(ti: FakeTaskInstance, **given) -> CarbonTaskRun:
    settings = resolve(ti.task_id, {"source": "signal", "max_delay": timedelta(hours=2), **given})
    return CarbonTaskRun.start(FakeTask(ti.task_id), {"ti": ti}, settings)


def stored(**where) -> list[TaskTryRecord]:
    return CarbonMetricsHook().get_store().records(**where)


def run_once(run_id: str, minutes: float, **given) -> TaskTryRecord:
    """A try that ran ``minutes`` under the stand-in meters."""
    ti = FakeTaskInstance(run_id=run_id)
    run = start(ti, policy="immediate", **given)
    event = run.wait_if_needed(FakeTask())
    started = datetime.now(UTC)
    ended = started + timedelta(minutes=minutes)
    return run.finish({"ti": ti}, event, started, ended, energy=run.energy(run.meter(), started, ended))


def test_the_record_says_how_its_energy_was_obtained_per_component_with_the_pue(env, meters):
    record = run_once("r1", 6, pue=1.5)
    assert record.energy_kwh == pytest.approx(0.006 * 1.5)
    assert record.energy_method == "cpu=estimated-cpu-model, ram=estimated-ram-model"
    assert record.energy_scope == "process" and record.pue == 1.5
    assert record.energy_breakdown_kwh == {"cpu": 0.004, "ram": 0.002} and record.estimated
    assert meters.started == ["auto"] and meters.stopped == 1
    [row] = stored()
    assert (row.energy_method, row.energy_breakdown_kwh, row.pue) == (record.energy_method, {"cpu": 0.004,
                                                                                              "ram": 0.002}, 1.5)


def test_with_auto_a_declared_power_beats_an_estimate_and_keeps_it_in_the_notes(env, meters):
    record = run_once("r1", 30, power_kw=0.5)
    assert (record.energy_kwh, record.energy_method, record.energy_scope) == (pytest.approx(0.25), "power-x-time",
                                                                             "task")
    assert "the meters estimated cpu 0.004 kWh (estimated-cpu-model)" in record.energy_notes[-1]
    forced = run_once("r2", 30, power_kw=0.5, energy_meter="codecarbon")
    assert (forced.energy_kwh, forced.energy_method) == (pytest.approx(0.006), "cpu=estimated-cpu-model, "
                                                                               "ram=estimated-ram-model")


def test_a_task_run_three_times_is_then_planned_on_its_measured_duration_and_energy(env, meters):
    first = start(FakeTaskInstance(run_id="r0"))
    assert first.settings.expected_from == "defaults (no history)"
    assert first.job.duration == timedelta(minutes=30)
    for run_id, minutes in (("r1", 4), ("r2", 12), ("r3", 6)):
        run_once(run_id, minutes)
    ti = FakeTaskInstance(run_id="r4")
    run = start(ti)
    assert run.settings.expected_from == "history (n=3)"
    assert run.job.duration == timedelta(minutes=6) and run.job.energy_kwh == pytest.approx(0.006)
    with pytest.raises(TaskDeferred) as deferred:
        run.wait_if_needed(FakeTask())
    kwargs = deferred.value.trigger.serialize()[1]
    assert kwargs["duration_s"] == 360 and kwargs["energy_kwh"] == pytest.approx(0.006)
    [waiting] = stored(run_id="r4")
    assert waiting.state == DEFERRED
    assert (waiting.expected_duration_s, waiting.expected_energy_kwh, waiting.expected_from) == (
        360.0, pytest.approx(0.006), "history (n=3)")
    # the trigger hands the expectation back with the settings: the resumed task records what it planned on
    resumed = CarbonTaskRun.resume(FakeTask(), {"ti": ti}, type(run.decide_now()).from_json(
        "summarize", json.loads(json.dumps(run.decide_now().to_json()))))
    assert (resumed.settings.expected_from, resumed.job.duration) == ("history (n=3)", timedelta(minutes=6))


def test_a_declared_value_always_wins_over_the_history(env, meters):
    for run_id in ("r1", "r2", "r3"):
        run_once(run_id, 4)
    run = start(FakeTaskInstance(run_id="r4"), expected_duration="20min", energy_kwh=1.0)
    assert run.settings.expected_from == "declared"
    assert run.job.duration == timedelta(minutes=20) and run.job.energy_kwh == 1.0
    learned_energy = start(FakeTaskInstance(run_id="r5"), expected_duration="20min")
    assert learned_energy.settings.expected_from == "duration: declared; energy: history (n=3)"
    assert learned_energy.job.energy_kwh == pytest.approx(0.006)
    assert start(FakeTaskInstance(run_id="r6"), history_tries=0).settings.expected_from == "defaults (no history)"


def test_a_store_that_cannot_be_read_plans_on_the_defaults_and_says_so(env, meters, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(MetricsStore, "history", broken)
    run = start(FakeTaskInstance())
    assert run.settings.expected_from == "defaults (no history)"
    assert "cannot read its earlier tries from the metrics store (OSError: disk gone)" in caplog.text


def test_an_operator_s_work_runs_under_its_meters_and_is_recorded_with_them(env, meters):
    from airflow.providers.standard.operators.python import PythonOperator

    with DAG("d", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)):
        task = carbon_aware(PythonOperator(task_id="work", python_callable=lambda: 42), source="signal",
                            policy="immediate")
    ti = FakeTaskInstance(dag_id="d", task_id="work")
    assert task.execute({"ti": ti, "task": task}) == 42
    assert meters.started == ["auto"] and meters.stopped == 1
    assert ti.pushed[XCOM_KEY]["energy_method"] == "cpu=estimated-cpu-model, ram=estimated-ram-model"


def test_work_that_deferred_itself_is_not_metered_and_says_so(env, meters):
    """Its energy in its own trigger and in what it waited on no meter here saw."""
    from tests.operators.test_carbon_aware import FakeTaskInstance as XComTaskInstance
    from tests.operators.test_carbon_aware import RemoteJob, resume

    with DAG("d", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)):
        task = carbon_aware(RemoteJob(task_id="remote", job="j1"), source="signal", policy="immediate")
    ti = XComTaskInstance("remote")
    context = {"ti": ti, "task": task}
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    assert meters.started == ["auto"] and meters.stopped == 1  # the meter stopped when the work deferred
    resume(task, deferred.value, context, {"done": True})
    record = ti.xcoms[XCOM_KEY]
    assert record["energy_method"] == "assumed-power-x-time" and UNMETERED_DEFERRAL in record["energy_notes"]
    assert meters.started == ["auto"]  # the resumed work started no meter
