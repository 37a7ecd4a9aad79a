"""The listener that meters the tasks a ``CarbonAwareSensor`` let run, on a real DAG object and stand-in task instances.

A stand-in for the task SDK's ``RuntimeTaskInstance`` is the real class built without validation, holding the task;
the meters are a stand-in that reads a fixed CPU figure, and the store is a SQLite file in the test's folder.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from types import SimpleNamespace

import pendulum
import pytest
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

from airflow_carbon import CarbonAwareSensor, carbon_aware, meters
from airflow_carbon.accounting.energy import Component, gated
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics.gated import gated_rows
from airflow_carbon.metrics.record import COMPLETED, TaskTryRecord
from airflow_carbon.plugins import gated as listener_module
from airflow_carbon.plugins.gated import GatedEnergyListener, gating_sensor
from tests.signal_files import write_signal

CPU_KWH = 0.002
PUE = 1.5
SENSOR_DELAY_S = 600.0
DIRTY, CLEAN = 400.0, 120.0


def work() -> None:
    return None


def build_dag() -> DAG:
    """wait >> work >> after; near >> after; lone alone; wait >> eco (carbon-aware itself); a, b >> tied."""
    with DAG("gated", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             default_args={"pue": PUE, "energy_meter": "codecarbon"}) as dag:
        options = {"max_delay": timedelta(minutes=5), "source": "signal", "region": "TEST"}
        wait = CarbonAwareSensor(task_id="wait", **options)
        near = CarbonAwareSensor(task_id="near", **options)
        a, b = CarbonAwareSensor(task_id="a", **options), CarbonAwareSensor(task_id="b", **options)
        step = PythonOperator(task_id="work", python_callable=work)
        after = PythonOperator(task_id="after", python_callable=work)
        tied = PythonOperator(task_id="tied", python_callable=work)
        PythonOperator(task_id="lone", python_callable=work)
        eco = carbon_aware(PythonOperator(task_id="eco", python_callable=work), max_delay=timedelta(minutes=5))
        wait >> step >> after
        near >> after
        wait >> eco
        [b, a] >> tied
    return dag


@pytest.fixture
def dag() -> DAG:
    return build_dag()


def runtime_ti(task, try_number: int = 1) -> RuntimeTaskInstance:
    return RuntimeTaskInstance.model_construct(dag_id="gated", task_id=task.task_id, run_id="r", map_index=-1,
                                               try_number=try_number, task=task)


class FakeMetering:
    """Reads a fixed CPU figure; remembers each start."""

    started: list[tuple[str, str]] = []  # noqa: RUF012

    @classmethod
    def start(cls, energy_meter: str, task_id: str) -> FakeMetering:
        cls.started.append((energy_meter, task_id))
        return cls()

    def stop(self) -> tuple[tuple[Component, ...], tuple[str, ...]]:
        return (Component("cpu", CPU_KWH, "estimated-cpu-model", "process"),), ("from the stand-in meter",)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """The store and a signal clean since five minutes ago, dirty before: a run now, had it not waited, was dirty."""
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "metrics.db")}))
    signal = write_signal(tmp_path / "signal.csv", green_in_s=-300, period_s=60, dirty=DIRTY, clean=CLEAN)
    monkeypatch.setenv("AIRFLOW_CONN_SIGNAL", json.dumps({"conn_type": "carbon_csv",
                                                          "extra": {"path": str(signal), "region": "TEST"}}))
    FakeMetering.started = []
    monkeypatch.setattr(meters, "Metering", FakeMetering)
    yield tmp_path
    CarbonMetricsHook.reset_store_cache()


def store():
    return CarbonMetricsHook().get_store()


def write_sensor_record(task_id: str = "wait") -> None:
    store().write(TaskTryRecord("gated", task_id, "r", state=COMPLETED, energy_kwh=0.0, delay_s=SENSOR_DELAY_S,
                                energy_method=gated(PUE).method, energy_scope=gated(PUE).scope, pue=PUE))


def test_the_sensor_upstream_is_found_directly_and_through_other_tasks(dag):
    assert gating_sensor(dag.get_task("work")).task_id == "wait"
    assert gating_sensor(dag.get_task("after")).task_id == "near"  # one step away, where wait is two
    assert gating_sensor(dag.get_task("tied")).task_id == "a"  # a tie goes to the lowest task_id


def test_ungated_and_carbon_aware_tasks_are_not_gated(dag):
    assert gating_sensor(dag.get_task("lone")) is None
    assert gating_sensor(dag.get_task("eco")) is None  # it records its own energy
    assert gating_sensor(dag.get_task("wait")) is None


def test_a_gated_try_is_metered_and_added_to_its_sensor_record(env, dag):
    write_sensor_record()
    listener = GatedEnergyListener()
    ti = runtime_ti(dag.get_task("work"))
    listener.on_task_instance_running(previous_state=None, task_instance=ti)
    assert FakeMetering.started == [("codecarbon", "work")]  # the sensor's energy_meter
    listener.on_task_instance_success(previous_state=None, task_instance=ti)
    assert listener.running == {}

    [row] = gated_rows(store().engine, "gated", "r", "wait")
    energy_kwh = CPU_KWH * PUE
    assert (row["task_id"], row["sensor_try_number"], row["energy_method"], row["energy_scope"]) == (
        "work", 1, "estimated-cpu-model", "process")
    assert row["energy_kwh"] == pytest.approx(energy_kwh) and row["ended_at"] >= row["started_at"]
    assert row["emissions_g"] == pytest.approx(energy_kwh * CLEAN)
    assert row["baseline_emissions_g"] == pytest.approx(energy_kwh * DIRTY)  # started SENSOR_DELAY_S earlier
    [sensor] = store().rows(task_id="wait")
    assert sensor["energy_kwh"] == pytest.approx(energy_kwh)
    assert sensor["saved_g"] == pytest.approx(energy_kwh * (DIRTY - CLEAN))
    assert sensor["energy_method"] == "gated: estimated-cpu-model" and sensor["energy_breakdown_kwh"] == {
        "work": pytest.approx(energy_kwh)}


def test_a_failed_try_drew_energy_too(env, dag):
    write_sensor_record()
    listener = GatedEnergyListener()
    ti = runtime_ti(dag.get_task("work"))
    listener.on_task_instance_running(previous_state=None, task_instance=ti)
    listener.on_task_instance_failed(previous_state=None, task_instance=ti, error=RuntimeError("boom"))
    assert [row["try_number"] for row in gated_rows(store().engine, "gated", "r", "wait")] == [1]


def test_ungated_carbon_aware_and_server_side_task_instances_are_left_alone(env, dag):
    listener = GatedEnergyListener()
    server_ti = SimpleNamespace(dag_id="gated", task_id="work", run_id="r", map_index=-1, try_number=1,
                                task=dag.get_task("work"))
    for ti in (runtime_ti(dag.get_task("lone")), runtime_ti(dag.get_task("eco")), server_ti):
        listener.on_task_instance_running(previous_state=None, task_instance=ti)
        listener.on_task_instance_success(previous_state=None, task_instance=ti)
    assert FakeMetering.started == [] and listener.running == {}
    assert gated_rows(store().engine, "gated", "r", "wait") == []


def test_a_store_that_is_down_costs_one_warning_never_the_task(env, dag, monkeypatch, caplog):
    def down(_hook):
        raise ConnectionError("the metrics store is down")

    monkeypatch.setattr(CarbonMetricsHook, "get_store", down)
    listener = GatedEnergyListener()
    ti = runtime_ti(dag.get_task("work"))
    with caplog.at_level(logging.WARNING, logger=listener_module.__name__):
        listener.on_task_instance_running(previous_state=None, task_instance=ti)
        listener.on_task_instance_success(previous_state=None, task_instance=ti)
    [warning] = [r for r in caplog.records if r.name == listener_module.__name__]
    assert warning.levelno == logging.WARNING and "'work'" in warning.getMessage()
    assert "the metrics store is down" in warning.getMessage() and listener.running == {}


def test_settings_that_cannot_be_read_cost_one_warning_and_no_meter(env, dag, monkeypatch, caplog):
    monkeypatch.setitem(dag.get_task("wait").carbon_options, "policy", "no-such-policy")
    listener = GatedEnergyListener()
    ti = runtime_ti(dag.get_task("work"))
    with caplog.at_level(logging.WARNING, logger=listener_module.__name__):
        listener.on_task_instance_running(previous_state=None, task_instance=ti)
        listener.on_task_instance_success(previous_state=None, task_instance=ti)
    [warning] = [r for r in caplog.records if r.name == listener_module.__name__]
    assert "'work'" in warning.getMessage() and FakeMetering.started == []


def test_a_sensor_without_a_record_keeps_the_gated_row_and_says_so(env, dag, caplog):
    listener = GatedEnergyListener()
    ti = runtime_ti(dag.get_task("work"), try_number=2)
    with caplog.at_level(logging.WARNING, logger=listener_module.__name__):
        listener.on_task_instance_running(previous_state=None, task_instance=ti)
        listener.on_task_instance_success(previous_state=None, task_instance=ti)
    [row] = gated_rows(store().engine, "gated", "r", "wait")
    assert (row["try_number"], row["energy_kwh"]) == (2, pytest.approx(CPU_KWH * PUE))
    assert any("no finished record" in r.getMessage() for r in caplog.records)


def test_the_plugin_registers_the_listener():
    from airflow_carbon.plugins.plugin import CarbonPlugin

    assert listener_module.listener in CarbonPlugin.listeners
