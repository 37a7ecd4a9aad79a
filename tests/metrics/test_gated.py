"""The energy of work a sensor gated, summed onto the sensor's record: SQLite, and Debian's PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.accounting.energy import gated
from airflow_carbon.metrics.gated import GatedTry, gated_rows, record_gated, sensor_row
from airflow_carbon.metrics.record import COMPLETED, RUNNING, TaskTryRecord
from airflow_carbon.metrics.store import MetricsStore

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
SENSOR = gated(1.0)


def sensor_record(try_number: int = 1, state: str = COMPLETED) -> TaskTryRecord:
    """The sensor's record as ``CarbonAwareSensor._finish`` writes it: no energy of its own."""
    return TaskTryRecord("d", "wait", "r", -1, try_number, state=state, started_at=NOW, ended_at=NOW, delay_s=600.0,
                         energy_kwh=0.0, emissions_g=0.0, baseline_emissions_g=0.0, saved_g=0.0, grid_kwh=0.0,
                         energy_method=SENSOR.method, energy_scope=SENSOR.scope, pue=1.0)


def downstream(task_id: str = "work", *, try_number: int = 1, energy_kwh: float = 0.01, emissions_g: float | None = 2.0,
               baseline_emissions_g: float | None = 3.0, method: str = "estimated-cpu-model",
               map_index: int = -1) -> GatedTry:
    return GatedTry("d", task_id, "r", map_index, try_number, sensor_task_id="wait", sensor_map_index=-1,
                    sensor_try_number=1, started_at=NOW + timedelta(minutes=1), ended_at=NOW + timedelta(minutes=2),
                    energy_kwh=energy_kwh, energy_method=method, energy_scope="process", emissions_g=emissions_g,
                    baseline_emissions_g=baseline_emissions_g)


def the_sensor(store: MetricsStore, try_number: int = 1) -> dict:
    [row] = [row for row in store.rows(task_id="wait") if row["try_number"] == try_number]
    return row


def test_two_downstream_tries_add_up_on_the_sensor_and_say_how_their_energy_was_obtained(store):
    store.write(sensor_record())
    assert record_gated(store.engine, downstream("a", energy_kwh=0.01, emissions_g=2.0, baseline_emissions_g=3.0), NOW)
    assert record_gated(store.engine, downstream("b", energy_kwh=0.02, emissions_g=4.0, baseline_emissions_g=7.0,
                                                 map_index=3), NOW)
    row = the_sensor(store)
    assert row["energy_kwh"] == pytest.approx(0.03) and row["grid_kwh"] == pytest.approx(0.03)
    assert row["emissions_g"] == pytest.approx(6.0) and row["baseline_emissions_g"] == pytest.approx(10.0)
    assert row["saved_g"] == pytest.approx(4.0)
    assert row["energy_method"] == "gated: estimated-cpu-model"
    assert row["energy_breakdown_kwh"] == pytest.approx({"a": 0.01, "b[3]": 0.02})
    assert (row["energy_scope"], row["started_at"], row["ended_at"], row["state"]) == ("gated", NOW, NOW, COMPLETED)
    assert [(gated["task_id"], gated["map_index"]) for gated in gated_rows(store.engine, "d", "r", "wait")] == [
        ("a", -1), ("b", 3)]


def test_after_a_choice_between_regions_the_saving_splits_into_time_and_place(store):
    """Home when ready 10 g, home at the start 8 g (the time saved 2 g), the chosen region then 1 g (the place 7 g)."""
    store.write(replace(sensor_record(), region="FR", home_region="DE", chosen_task_id="work"))
    record_gated(store.engine, replace(downstream(emissions_g=0.6, baseline_emissions_g=6.0), home_emissions_g=5.0),
                 NOW)
    record_gated(store.engine, replace(downstream(try_number=2, emissions_g=0.4, baseline_emissions_g=4.0),
                                       home_emissions_g=3.0), NOW)
    row = the_sensor(store)
    assert (row["emissions_g"], row["baseline_emissions_g"]) == (pytest.approx(1.0), pytest.approx(10.0))
    assert row["saved_time_g"] == pytest.approx(2.0) and row["saved_place_g"] == pytest.approx(7.0)
    assert row["saved_time_g"] + row["saved_place_g"] == pytest.approx(row["saved_g"])
    assert (row["region"], row["home_region"]) == ("FR", "DE")


def test_a_sensors_saving_is_not_split(store):
    store.write(sensor_record())
    record_gated(store.engine, downstream(), NOW)
    assert (the_sensor(store)["saved_time_g"], the_sensor(store)["saved_place_g"]) == (None, None)


def test_the_same_downstream_try_written_twice_counts_once_with_its_latest_figures(store):
    store.write(sensor_record())
    record_gated(store.engine, downstream(energy_kwh=0.01), NOW)
    record_gated(store.engine, downstream(energy_kwh=0.015), NOW + timedelta(seconds=1))
    assert the_sensor(store)["energy_kwh"] == pytest.approx(0.015)
    [row] = gated_rows(store.engine, "d", "r", "wait")
    assert row["energy_kwh"] == pytest.approx(0.015) and row["updated_at"] == NOW + timedelta(seconds=1)


def test_each_try_of_a_retried_downstream_task_drew_energy_so_both_count(store):
    store.write(sensor_record())
    record_gated(store.engine, downstream(try_number=1, energy_kwh=0.01, method="estimated-cpu-model"), NOW)
    record_gated(store.engine, downstream(try_number=2, energy_kwh=0.02, method="measured-rapl"), NOW)
    row = the_sensor(store)
    assert row["energy_kwh"] == pytest.approx(0.03)
    assert row["energy_breakdown_kwh"] == pytest.approx({"work": 0.03})
    assert row["energy_method"] == "gated: work: estimated-cpu-model; work: measured-rapl"
    assert len(gated_rows(store.engine, "d", "r", "wait")) == 2


def test_different_methods_are_named_per_task(store):
    store.write(sensor_record())
    record_gated(store.engine, downstream("a", method="cpu=estimated-cpu-model, ram=estimated-ram-model"), NOW)
    record_gated(store.engine, downstream("b", method="assumed-power-x-time"), NOW)
    assert the_sensor(store)["energy_method"] == (
        "gated: a: cpu=estimated-cpu-model, ram=estimated-ram-model; b: assumed-power-x-time")


def test_a_missing_sensor_row_keeps_the_gated_row(store):
    assert not record_gated(store.engine, downstream(), NOW)
    assert [row["task_id"] for row in gated_rows(store.engine, "d", "r", "wait")] == ["work"]
    assert store.rows(task_id="wait") == []


def test_a_sensor_row_not_finished_yet_is_left_alone(store):
    store.write(sensor_record(state=RUNNING))
    assert not record_gated(store.engine, downstream(), NOW)
    assert the_sensor(store)["energy_method"] is None and len(gated_rows(store.engine, "d", "r", "wait")) == 1


def test_an_unknown_emissions_figure_leaves_the_sum_and_the_saving_unknown(store):
    store.write(sensor_record())
    record_gated(store.engine, downstream("a", emissions_g=2.0, baseline_emissions_g=5.0), NOW)
    record_gated(store.engine, downstream("b", emissions_g=None, baseline_emissions_g=4.0), NOW)
    row = the_sensor(store)
    assert row["emissions_g"] is None and row["saved_g"] is None and row["baseline_emissions_g"] == pytest.approx(9.0)


def test_only_the_try_of_the_sensor_that_gated_counts(store):
    store.write(sensor_record(1))
    store.write(sensor_record(2))
    record_gated(store.engine, downstream(energy_kwh=0.01), NOW)
    record_gated(store.engine, replace(downstream("later", energy_kwh=0.04), sensor_try_number=2), NOW)
    assert the_sensor(store, 1)["energy_kwh"] == pytest.approx(0.01)
    assert the_sensor(store, 2)["energy_kwh"] == pytest.approx(0.04)


def test_the_sensor_row_a_gated_task_reads_is_its_latest_finished_try(store):
    assert sensor_row(store.engine, "d", "r", "wait", -1) is None
    store.write(sensor_record(1))
    store.write(sensor_record(2))
    store.write(sensor_record(3, state=RUNNING))
    found = sensor_row(store.engine, "d", "r", "wait", 4)
    assert found is not None and (found["try_number"], found["map_index"], found["delay_s"]) == (2, -1, 600.0)


def test_concurrent_finishes_never_lose_one_another(store):
    store.write(sensor_record())
    tries = [downstream(f"t{i}", energy_kwh=0.001 * (i + 1)) for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(lambda row: record_gated(store.engine, row, NOW), tries))
    row = the_sensor(store)
    assert row["energy_kwh"] == pytest.approx(sum(t.energy_kwh for t in tries))
    assert len(row["energy_breakdown_kwh"]) == 8
