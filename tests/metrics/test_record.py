"""The one schema of a task try's record: its JSON, what it refuses, and what XCom readers rely on."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from airflow_carbon.metrics import (
    COMPLETED,
    DEFERRED,
    FAILED,
    RUNNING,
    InvalidRecordError,
    TaskTryKey,
    TaskTryRecord,
)
from airflow_carbon.metrics.record import FIELD_PHASES, SCHEMA_VERSION
from airflow_carbon.metrics.spool import parse_record
from tests.helpers import T0

HOUR = timedelta(hours=1)
#: Every key the ``carbon`` XCom of the previous release had; DAGs downstream read them.
PREVIOUS_XCOM_KEYS = (
    "job_id", "policy", "region", "source", "reason", "ready_at", "deadline", "started_at", "ended_at", "energy_kwh",
    "solar_kwh", "intensity_g_per_kwh", "baseline_intensity_g_per_kwh", "emissions_g", "baseline_emissions_g",
    "estimated", "delay_s", "grid_kwh", "saved_g", "served_by", "failed_sources", "signal", "planned_start",
    "try_number", "map_index", "signal_kind",
)


def decision(state: str = DEFERRED) -> TaskTryRecord:
    return TaskTryRecord(
        "nightly", "summarize", "manual__1", map_index=3, try_number=2, state=state, region="DE",
        source="conn:watttime_default", served_by="conn:electricitymaps_default", signal="electricitymaps:DE",
        signal_kind="average", failed_sources=["conn:watttime_default: AuthError: 401"], policy="forecast",
        reason="green_window", ready_at=T0, deadline=T0 + 4 * HOUR, energy_kwh=0.5, decided_at=T0,
        planned_start=T0 + 2 * HOUR, expected_emissions_now_g=150.0, expected_emissions_at_start_g=50.0)


def completion(state: str = COMPLETED) -> TaskTryRecord:
    return replace(decision(state), energy_kwh=0.4, started_at=T0 + 2 * HOUR, ended_at=T0 + 3 * HOUR, delay_s=7200.0,
                   intensity_g_per_kwh=100.0, baseline_intensity_g_per_kwh=300.0, solar_kwh=0.0, grid_kwh=0.4,
                   emissions_g=40.0, baseline_emissions_g=120.0, saved_g=80.0, estimated=True,
                   updated_at=T0 + 3 * HOUR)


RECORDS = {DEFERRED: decision(), RUNNING: decision(RUNNING), COMPLETED: completion(),
           FAILED: replace(completion(FAILED), intensity_g_per_kwh=None, emissions_g=None, saved_g=None)}


@pytest.mark.parametrize("state", list(RECORDS))
def test_json_round_trip_in_every_state(state):
    record = RECORDS[state]
    data = json.loads(json.dumps(record.to_json()))  # JSON types only: no default= needed
    assert data["version"] == SCHEMA_VERSION and data["state"] == state
    assert data["ready_at"] == "2024-06-01T00:00:00+00:00"
    assert TaskTryRecord.from_json(data) == record


def test_the_json_has_every_field_and_what_is_derived_from_them():
    data = RECORDS[COMPLETED].to_json()
    assert set(data) == {"version", "job_id", *(f.name for f in fields(TaskTryRecord))}
    assert data["job_id"] == "nightly.summarize"
    assert data["failed_sources"] == ["conn:watttime_default: AuthError: 401"]


def test_every_key_of_the_previous_xcom_is_still_there():
    data = RECORDS[COMPLETED].to_json()
    assert [name for name in PREVIOUS_XCOM_KEYS if name not in data] == []
    assert (data["try_number"], data["map_index"], data["signal_kind"]) == (2, 3, "average")
    assert data["planned_start"] == "2024-06-01T02:00:00+00:00" and data["saved_g"] == 80.0


def test_numpy_scalars_come_out_as_json_numbers():
    """The accounting works in numpy; a figure that stayed a numpy scalar must not break XCom or the spool."""
    record = replace(RECORDS[COMPLETED], energy_kwh=np.float32(0.25), emissions_g=np.float64(10.0),
                     estimated=np.bool_(True))
    data = json.loads(json.dumps(record.to_json()))
    assert (data["energy_kwh"], data["emissions_g"], data["estimated"]) == (0.25, 10.0, True)


@pytest.mark.parametrize("version", [1, 7, "3", None])
def test_from_json_refuses_another_version(version):
    data = RECORDS[DEFERRED].to_json() | {"version": version}
    with pytest.raises(InvalidRecordError,
                       match=f"record version {version!r} is not one of 2, 3, 4, 5, {SCHEMA_VERSION}"):
        TaskTryRecord.from_json(data)


@pytest.mark.parametrize("state", list(RECORDS))
def test_a_version_2_record_from_xcom_or_a_spool_file_still_loads_without_the_solar_fields(state):
    """What the previous release pushed to XCom and spooled: version 2, no site, solar source or solar basis."""
    solar = ("site", "solar_served_by", "solar_basis")
    data = {name: value for name, value in RECORDS[state].to_json().items() if name not in solar} | {"version": 2}
    record = TaskTryRecord.from_json(json.loads(json.dumps(data)))
    assert record == RECORDS[state] and all(getattr(record, name) is None for name in solar)
    spooled = parse_record(json.dumps({"format": 2, "record": data}))
    assert spooled == RECORDS[state]
    assert spooled.to_json()["version"] == SCHEMA_VERSION == 6


@pytest.mark.parametrize("state", list(RECORDS))
def test_a_version_3_record_from_xcom_or_a_spool_file_still_loads_without_the_release_fields(state):
    """What the previous release pushed to XCom and spooled: version 3, nobody released it."""
    released = ("released_by", "released_at", "release_reason")
    data = {name: value for name, value in RECORDS[state].to_json().items() if name not in released} | {"version": 3}
    record = TaskTryRecord.from_json(json.loads(json.dumps(data)))
    assert record == RECORDS[state] and all(getattr(record, name) is None for name in released)
    assert parse_record(json.dumps({"format": 2, "record": data})) == RECORDS[state]


@pytest.mark.parametrize("state", list(RECORDS))
def test_a_version_4_record_from_xcom_or_a_spool_file_still_loads_without_the_energy_fields(state):
    """What the previous release pushed to XCom and spooled: version 4, its energy declared or assumed."""
    energy = ("energy_method", "energy_scope", "energy_breakdown_kwh", "energy_notes", "pue", "expected_duration_s",
              "expected_energy_kwh", "expected_from")
    data = {name: value for name, value in RECORDS[state].to_json().items() if name not in energy} | {"version": 4}
    record = TaskTryRecord.from_json(json.loads(json.dumps(data)))
    assert record == RECORDS[state] and record.energy_method is None and record.energy_notes == []
    assert parse_record(json.dumps({"format": 2, "record": data})) == RECORDS[state]


@pytest.mark.parametrize("state", list(RECORDS))
def test_a_version_5_record_from_xcom_or_a_spool_file_still_loads_without_the_region_fields(state):
    """What the previous release pushed to XCom and spooled: version 5, no region chosen."""
    chosen = ("home_region", "chosen_task_id", "region_expected_g", "saved_time_g", "saved_place_g")
    data = {name: value for name, value in RECORDS[state].to_json().items() if name not in chosen} | {"version": 5}
    record = TaskTryRecord.from_json(json.loads(json.dumps(data)))
    assert record == RECORDS[state] and all(getattr(record, name) is None for name in chosen)
    assert parse_record(json.dumps({"format": 2, "record": data})) == RECORDS[state]


def test_the_region_fields_round_trip_with_a_failed_candidate_and_a_bad_one_is_named():
    record = replace(RECORDS[COMPLETED], region="FR", home_region="DE", chosen_task_id="evaluate_fr",
                     region_expected_g={"DE": 12.5, "FR": 1.5, "PL": None}, saved_time_g=1.0, saved_place_g=10.0)
    assert TaskTryRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    with pytest.raises(InvalidRecordError, match="field 'region_expected_g': expected an object of numbers"):
        TaskTryRecord.from_json(record.to_json() | {"region_expected_g": {"FR": True}})


def test_the_energy_fields_round_trip_and_a_bad_breakdown_is_named():
    record = replace(RECORDS[COMPLETED], energy_method="gpu:0=measured-nvml, cpu=estimated-cpu-model",
                     energy_scope="gpu:0=device, cpu=process", energy_breakdown_kwh={"gpu:0": 0.2, "cpu": 0.05},
                     energy_notes=["gpu:0: shared with 1 other process"], pue=1.2, expected_duration_s=60.0,
                     expected_energy_kwh=0.3, expected_from="history (n=3)")
    assert TaskTryRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    with pytest.raises(InvalidRecordError, match="field 'energy_breakdown_kwh': expected an object of numbers"):
        TaskTryRecord.from_json(record.to_json() | {"energy_breakdown_kwh": {"cpu": "lots"}})


def test_the_solar_fields_round_trip_and_have_their_phases():
    record = replace(RECORDS[COMPLETED], site="roof-1", solar_served_by="conn:inverter", solar_basis="measured",
                     solar_kwh=0.1, grid_kwh=0.3)
    assert TaskTryRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert (FIELD_PHASES["site"], FIELD_PHASES["solar_served_by"], FIELD_PHASES["solar_basis"]) == (
        "shared", "shared", "completion")


@pytest.mark.parametrize("name", ["dag_id", "task_id", "run_id"])
def test_from_json_refuses_a_missing_or_empty_key_field_and_names_it(name):
    data = RECORDS[DEFERRED].to_json()
    for broken in ({k: v for k, v in data.items() if k != name}, data | {name: ""}, data | {name: None}):
        with pytest.raises(InvalidRecordError, match=f"field '{name}' is missing"):
            TaskTryRecord.from_json(broken)


@pytest.mark.parametrize(("name", "value"), [
    ("dag_id", 7),
    ("map_index", "3"),
    ("try_number", 1.5),
    ("try_number", True),
    ("energy_kwh", "half a kWh"),
    ("emissions_g", False),
    ("estimated", "yes"),
    ("ready_at", "the day before yesterday"),
    ("deadline", 1717200000),
    ("failed_sources", "watttime"),
    ("failed_sources", [1, 2]),
    ("region", ["DE"]),
])
def test_from_json_refuses_a_value_of_the_wrong_type_and_names_the_field(name, value):
    with pytest.raises(InvalidRecordError, match=f"field '{name}'"):
        TaskTryRecord.from_json(RECORDS[COMPLETED].to_json() | {name: value})


def test_from_json_refuses_an_unknown_state_and_what_is_no_object():
    with pytest.raises(InvalidRecordError, match="state 'waiting' is not one of deferred, running, completed, failed"):
        TaskTryRecord.from_json(RECORDS[DEFERRED].to_json() | {"state": "waiting"})
    with pytest.raises(InvalidRecordError, match="not list"):
        TaskTryRecord.from_json([RECORDS[DEFERRED].to_json()])


def test_from_values_reads_naive_instants_as_utc_and_converts_others_to_utc():
    paris = timezone(timedelta(hours=2))
    record = TaskTryRecord.from_values({
        "dag_id": "d", "task_id": "t", "run_id": "r", "ready_at": datetime(2024, 6, 1),
        "deadline": "2024-06-01T04:00:00", "decided_at": datetime(2024, 6, 1, 2, tzinfo=paris),
        "started_at": "2024-06-01T04:00:00+02:00", "failed_sources": None, "job_id": "ignored"})
    assert record.ready_at == T0 and record.ready_at.tzinfo is UTC
    assert record.deadline == T0 + 4 * HOUR and record.deadline.tzinfo is UTC
    assert record.decided_at == T0 and record.decided_at.tzinfo is UTC
    assert record.started_at == T0 + 2 * HOUR and record.started_at.tzinfo is UTC
    assert record.failed_sources == []  # a NULL column is no failure
    assert (record.state, record.map_index, record.try_number) == (DEFERRED, -1, 1)


def test_the_key_and_whether_the_try_is_finished():
    assert RECORDS[DEFERRED].key == TaskTryKey("nightly", "summarize", "manual__1", 3, 2)
    assert {state: record.finished for state, record in RECORDS.items()} == {
        DEFERRED: False, RUNNING: False, COMPLETED: True, FAILED: True}
    with pytest.raises(InvalidRecordError, match="state 'done'"):
        TaskTryRecord("d", "t", "r", state="done")
