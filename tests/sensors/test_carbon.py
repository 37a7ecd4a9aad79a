"""The sensor as Airflow runs it: ``dag.test()`` on a migrated metadata database, deferring, poking and rescheduling.

The signal is the loopback WattTime fake: dirty until a few seconds after the sensor's first read, clean after,
so every wait starts from the sensor's own first decision however long Airflow took to get there. A task
downstream pulls the sensor's ``carbon`` XCom as a DAG author would, and the metrics store is a SQLite file.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics import COMPLETED, TaskTryRecord
from tests.fakes.signal_server import FakeSignalServer
from tests.helpers import dag_file_module, watttime_fake_connection

LBS_PER_MWH_IN_G_PER_KWH = 0.453592
GREEN_AFTER_S = 4  # after the sensor's first read; the fake's points are 5 s apart

DAGS = '''
import json
import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from airflow_carbon import CarbonAwareSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")
GREEN = {"source": "wt", "region": "CAISO_NORTH", "max_delay": timedelta(hours=1), "energy_kwh": 1.0,
         "expected_duration": timedelta(minutes=30), "refresh_interval": timedelta(seconds=5)}


@task
def downstream(ti=None):
    record = ti.xcom_pull(task_ids="wait_green", key="carbon")
    Path(os.environ["CARBON_SENSOR_XCOM"]).write_text(json.dumps(record))


def sensor_dag(dag_id, **kwargs):
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        CarbonAwareSensor(task_id="wait_green", **kwargs) >> downstream()
    return dag


deferrable = sensor_dag("sensor_deferrable", **GREEN)
poke = sensor_dag("sensor_poke", **GREEN, deferrable=False, mode="poke", poke_interval=1)
reschedule = sensor_dag("sensor_reschedule", **GREEN, deferrable=False, mode="reschedule", poke_interval=1,
                        timeout=600)
# With its source down it waits for it until its deadline. Were the deadline taken afresh at each reschedule,
# it would never come, and the sensor would time out instead.
to_the_deadline = sensor_dag("sensor_to_the_deadline", source="wt", region="CAISO_NORTH",
                             max_delay=timedelta(seconds=6), energy_kwh=1.0, deferrable=False, mode="reschedule",
                             poke_interval=1, timeout=120)
'''


@pytest.fixture(scope="module")
def dags(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A migrated metadata database and a DAGs folder holding ``DAGS``, this process pointed at both."""
    with dag_file_module(tmp_path_factory.mktemp("airflow_home"), "carbon_sensor_dags", DAGS) as module:
        yield {dag.dag_id: dag for dag in (module.deferrable, module.poke, module.reschedule, module.to_the_deadline)}


@pytest.fixture
def server(monkeypatch, tmp_path) -> Iterator[FakeSignalServer]:
    """The WattTime fake as connection ``wt``, a store of this test's own, and where the downstream task writes."""
    monkeypatch.setenv("CARBON_SENSOR_XCOM", str(tmp_path / "xcom.json"))
    with watttime_fake_connection(monkeypatch, tmp_path) as fake:
        yield fake


def run_dag(dag, tmp_path: Path) -> tuple[TaskTryRecord, TaskTryRecord]:
    """Run the DAG; the record as the downstream task pulled it from XCom, and the store's one row."""
    assert dag.test().state == "success"
    pulled = TaskTryRecord.from_json(json.loads((tmp_path / "xcom.json").read_text()))
    [row] = CarbonMetricsHook().get_store().records()
    return pulled, row


#: What the store's row of a sensor gains from the task it gated when that task finishes, after the sensor's XCom.
GATED_FIELDS = ("energy_kwh", "grid_kwh", "emissions_g", "baseline_emissions_g", "saved_g", "energy_method",
                "energy_breakdown_kwh", "updated_at")


def assert_gated(record: TaskTryRecord, row: TaskTryRecord) -> None:
    """The store's row is the sensor's XCom record plus the energy of the downstream task, metered as it ran."""
    assert row == replace(record, **{name: getattr(row, name) for name in GATED_FIELDS})
    assert row.energy_method.startswith("gated: ") and row.energy_kwh > 0
    assert list(row.energy_breakdown_kwh) == ["downstream"]


@pytest.mark.parametrize("dag_id", ["sensor_deferrable", "sensor_poke", "sensor_reschedule"])
def test_the_sensor_waits_for_the_green_window_and_records_the_work_it_gated(dags, server, tmp_path, dag_id):
    server.green_window(after_first_request_s=GREEN_AFTER_S)
    record, row = run_dag(dags[dag_id], tmp_path)
    first_read = datetime.fromtimestamp(server.green_at_s - GREEN_AFTER_S, UTC)
    green_at = datetime.fromtimestamp(server.green_at_s, UTC)

    assert record.task_id == "wait_green" and record.state == COMPLETED and record.reason == "green_window"
    assert record.source == record.served_by == "conn:wt" and record.signal == "watttime:co2_moer"
    assert record.signal_kind == "marginal" and record.failed_sources == []
    # The ready time is from before the first read (each reschedule reads it back); the deadline is kept from it.
    assert record.ready_at <= first_read and record.deadline == record.ready_at + timedelta(hours=1)
    assert record.started_at >= green_at  # the first clean point of the forecast is at or after it
    # It planned on the work downstream as declared (1 kWh over 30 min), but claims no energy of its own: the tasks
    # it gates add theirs as they finish; nothing ends in the future.
    assert (record.expected_energy_kwh, record.expected_duration_s, record.expected_from) == (1.0, 1800.0, "declared")
    assert record.energy_kwh == 0.0 and record.ended_at == record.started_at
    assert (record.energy_method, record.energy_scope) == ("none", "gated") and record.estimated
    assert record.intensity_g_per_kwh == pytest.approx(300 * LBS_PER_MWH_IN_G_PER_KWH)
    assert record.emissions_g == record.saved_g == 0.0
    assert_gated(record, row)


def test_a_rescheduled_sensor_keeps_its_first_pokes_deadline_and_runs_at_it(dags, server, tmp_path):
    server.fail("/v3/forecast", 500, times=None)
    record, row = run_dag(dags["sensor_to_the_deadline"], tmp_path)
    assert record.reason == "deadline" and record.state == row.state == COMPLETED
    # The first poke, made when it became ready, found no signal and waited: the decision on the record was made
    # by a later poke, at the deadline of the first.
    assert record.deadline == record.ready_at + timedelta(seconds=6)
    assert record.decided_at >= record.deadline - timedelta(seconds=1) > record.ready_at  # plans count whole seconds
    assert record.served_by is None and record.emissions_g is None and record.estimated
    assert all(failure.startswith("conn:wt: ") for failure in record.failed_sources)
    assert "HTTP 500" in record.failed_sources[-1]  # the read for the record, after the work, is not bounded
    assert_gated(record, row)


# ------------------------------------------------------------------------------------------ at parse time


@pytest.mark.parametrize(("arguments", "message"), [
    ('max_delay="-2h"', "task 'wait': carbon setting max_delay='-2h'"),
    ('policy="greenest"', "task 'wait': carbon setting policy='greenest': unknown policy"),
    ('deadline="2026-01-01T06:00:00"', "task 'wait': carbon setting deadline=.*no timezone"),
    ("energy_kwh=-1", "task 'wait': carbon setting energy_kwh=-1"),
])
def test_bad_settings_fail_the_dag_file_when_it_is_parsed_naming_the_task_and_setting(tmp_path, arguments, message):
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "bad.py").write_text(textwrap.dedent(f"""
        import pendulum
        from airflow.sdk import DAG
        from airflow_carbon import CarbonAwareSensor

        with DAG("bad", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
            CarbonAwareSensor(task_id="wait", {arguments})
    """))
    bag = DagBag(dag_folder=str(tmp_path))
    [error] = bag.import_errors.values()
    assert "CarbonSettingsError" in error and re.search(message, error) and not bag.dags
