"""The spool against a real SQLite store that goes down (its directory moved away) and comes back."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from airflow_carbon.metrics import COMPLETED, DEFERRED, FAILED, RUNNING, MetricsStore, Spool, TaskTryKey, TaskTryRecord
from airflow_carbon.metrics.record import SCHEMA_VERSION
from airflow_carbon.metrics.spool import parse_record
from tests.helpers import T0

HOUR = timedelta(hours=1)
NAME = re.compile(r"^\d{20}-\d+-\d{6}-(decision|completion)\.json$")
SPOOL_V1 = Path(__file__).with_name("fixtures") / "spool_v1"


class SqliteStore:
    """A SQLite store in a directory of its own, which ``down()`` moves away: no file, no store."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir()
        self.store = MetricsStore(f"sqlite:///{directory / 'metrics.db'}")

    def down(self) -> None:
        self.store.close()
        self.directory.rename(self.directory.with_name("away"))

    def up(self) -> None:
        self.directory.with_name("away").rename(self.directory)


@pytest.fixture
def sqlite(tmp_path):
    sqlite = SqliteStore(tmp_path / "store")
    yield sqlite
    sqlite.store.close()


@pytest.fixture
def spool(tmp_path) -> Spool:
    return Spool(tmp_path / "spool")


def key(task_id: str = "summarize", map_index: int = -1, try_number: int = 1) -> TaskTryKey:
    return TaskTryKey("dag", task_id, "manual__1", map_index, try_number)


def decision(k: TaskTryKey | None = None, ready_at=T0, **changes) -> TaskTryRecord:
    record = TaskTryRecord(
        **asdict(k or key()), state=DEFERRED, region="DE", source="bundled:DE", served_by="bundled:DE",
        policy="forecast", reason="green_window", ready_at=ready_at, deadline=ready_at + 4 * HOUR, energy_kwh=0.5,
        decided_at=ready_at, planned_start=ready_at + 2 * HOUR, expected_emissions_now_g=30.0,
        expected_emissions_at_start_g=10.0)
    return replace(record, **changes)


def completion(k: TaskTryKey | None = None, ready_at=T0, **changes) -> TaskTryRecord:
    record = TaskTryRecord(
        **asdict(k or key()), state=COMPLETED, region="DE", source="bundled:DE", served_by="bundled:DE",
        signal="replay of de_ci.csv", failed_sources=["conn:watttime_default: timeout"], policy="forecast",
        reason="green_window", ready_at=ready_at, deadline=ready_at + 4 * HOUR, energy_kwh=0.4,
        started_at=ready_at + 2 * HOUR, ended_at=ready_at + 3 * HOUR, delay_s=7200.0, intensity_g_per_kwh=100.0,
        baseline_intensity_g_per_kwh=300.0, solar_kwh=0.0, grid_kwh=0.4, emissions_g=40.0,
        baseline_emissions_g=120.0, saved_g=80.0, estimated=True)
    return replace(record, **changes)


def stored(store: MetricsStore) -> list[TaskTryRecord]:
    """The store's records, without the time the store wrote them."""
    return [replace(record, updated_at=None) for record in store.records()]


def test_names_sort_in_write_order_and_hold_the_record_with_its_version(spool):
    records = [decision(key(try_number=i)) if i % 2 else completion(key(try_number=i)) for i in range(1, 41)]
    paths = [spool.put(record) for record in records]
    assert spool.pending() == paths
    assert all(NAME.match(path.name) for path in paths)
    assert [path.name.endswith("-decision.json") for path in paths] == [i % 2 == 1 for i in range(1, 41)]
    assert sorted(os.listdir(spool.directory)) == [path.name for path in paths]  # no temporary file left
    first = json.loads(paths[0].read_text())
    assert set(first) == {"format", "record"} and first["format"] == 2
    assert first["record"] == records[0].to_json() and first["record"]["version"] == SCHEMA_VERSION
    assert first["record"]["ready_at"] == T0.isoformat()
    assert [parse_record(path.read_text()) for path in paths] == records


def test_a_failed_record_is_a_completion_and_a_running_one_a_decision(spool, sqlite):
    failed = completion(state=FAILED, emissions_g=None, saved_g=None)
    assert spool.put(failed).name.endswith("-completion.json")
    assert spool.put(decision(state=RUNNING)).name.endswith("-decision.json")
    assert spool.replay(sqlite.store) == (2, 0)
    assert stored(sqlite.store) == [replace(failed, decided_at=T0, expected_emissions_now_g=30.0,
                                            expected_emissions_at_start_g=10.0, planned_start=T0 + 2 * HOUR)]


def test_a_put_that_fails_leaves_neither_a_record_nor_a_temporary_file(spool, monkeypatch):
    spool.put(decision())

    def disk_full(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        spool.put(completion())
    assert [path.name for path in spool.directory.iterdir()] == [path.name for path in spool.pending()]
    assert len(spool.pending()) == 1


def test_replay_stops_when_the_store_goes_down_and_a_later_one_writes_each_record_once(spool, sqlite, monkeypatch):
    tries = (1, 2, 3)
    paths = [spool.put(decision(key(try_number=n), T0 + n * HOUR)) for n in tries]
    paths += [spool.put(completion(key(try_number=n), T0 + n * HOUR)) for n in tries]
    original = MetricsStore.write

    def goes_down_after_one_write(self, record):
        original(self, record)
        sqlite.down()

    monkeypatch.setattr(MetricsStore, "write", goes_down_after_one_write)
    assert spool.replay(sqlite.store) == (1, 5)
    assert spool.pending() == paths[1:]
    monkeypatch.setattr(MetricsStore, "write", original)

    assert spool.replay(sqlite.store) == (0, 5)  # still down: nothing lost, nothing written
    sqlite.up()
    assert spool.replay(sqlite.store) == (5, 0)
    assert spool.replay(sqlite.store) == (0, 0) and not list(spool.directory.iterdir())
    # each completion, with its decision's own fields kept
    assert stored(sqlite.store) == [
        replace(completion(key(try_number=n), T0 + n * HOUR), decided_at=T0 + n * HOUR,
                planned_start=T0 + (n + 2) * HOUR, expected_emissions_now_g=30.0, expected_emissions_at_start_g=10.0)
        for n in tries]


def test_a_replayed_decision_never_downgrades_a_completed_row(spool, sqlite):
    sqlite.store.write(completion())
    spool.put(decision(region="FR", served_by="conn:electricitymaps_default"))
    assert spool.replay(sqlite.store) == (1, 0)
    [record] = stored(sqlite.store)
    assert record == replace(completion(), decided_at=T0, planned_start=T0 + 2 * HOUR,  # it gains what it lacked
                             expected_emissions_now_g=30.0, expected_emissions_at_start_g=10.0)


def test_a_corrupt_or_refused_file_is_set_aside_and_named_at_error(spool, sqlite, caplog):
    with sqlite.store.engine.begin() as connection:  # a store that answers and refuses one task's records
        connection.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON carbon_task_try WHEN NEW.task_id = 'refused'"
                                " BEGIN SELECT RAISE(ABORT, 'refused by a check'); END"))
    good = spool.put(completion())
    names = ["00000000000000000001-1-000000-completion.json", "00000000000000000002-1-000000-decision.json",
             "00000000000000000003-1-000000-decision.json", "00000000000000000004-1-000000-decision.json"]
    spool.directory.joinpath(names[0]).write_text('{"format": 2, "rec')
    spool.directory.joinpath(names[1]).write_text(
        json.dumps({"format": 1, "kind": "decision", "key": {"dag_id": "dag"}, "region": "DE"}))
    spool.directory.joinpath(names[2]).write_text(
        json.dumps({"format": 2, "record": decision(key("tag")).to_json() | {"ready_at": "the day before yesterday"}}))
    spool.directory.joinpath(names[3]).write_text(json.dumps({"format": 3, "record": decision().to_json()}))
    refused = spool.put(decision(key("refused")))
    with caplog.at_level(logging.ERROR):
        assert spool.replay(sqlite.store) == (1, 0)
    assert not good.exists() and [record.task_id for record in sqlite.store.records()] == ["summarize"]
    bad = sorted(path.name for path in spool.directory.glob("*.bad"))
    assert bad == sorted(name.replace(".json", ".bad") for name in [*names, refused.name])
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 5
    assert names[0] in errors[0] and "not JSON" in errors[0]
    assert names[1] in errors[1] and "key" in errors[1]
    assert names[2] in errors[2] and "'ready_at'" in errors[2] and "the day before yesterday" in errors[2]
    assert names[3] in errors[3] and "format 3" in errors[3]
    assert refused.name in errors[4] and "IntegrityError" in errors[4] and "refused by a check" in errors[4]


def test_two_replays_at_once_write_each_record_once_and_neither_fails(spool, sqlite):
    records = [completion(key(try_number=n), T0 + n * HOUR) for n in range(1, 21)]
    for record in records:
        spool.put(record)
    results: list[tuple[int, int]] = []
    threads = [threading.Thread(target=lambda: results.append(Spool(spool.directory).replay(sqlite.store)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and all(remaining == 0 for _, remaining in results)
    assert sum(written for written, _ in results) >= 20 and spool.pending() == []
    assert stored(sqlite.store) == records


def test_earliest_ready_at_over_spooled_decisions_and_completions(spool):
    assert spool.earliest_ready_at("dag", "summarize", "manual__1", None) is None  # no directory yet
    spool.put(decision(key(map_index=2, try_number=2), T0 + 3 * HOUR))
    spool.put(completion(key(map_index=2), T0 + 2 * HOUR))
    spool.put(decision(key(map_index=5), T0 + HOUR))
    spool.put(decision(key("other"), T0))
    spool.directory.joinpath("00000000000000000001-1-000000-decision.json").write_text("not json")
    assert spool.earliest_ready_at("dag", "summarize", "manual__1", 2) == T0 + 2 * HOUR
    assert spool.earliest_ready_at("dag", "summarize", "manual__1", None) == T0 + HOUR
    assert spool.earliest_ready_at("dag", "summarize", "manual__1", -1) is None
    assert spool.earliest_ready_at("dag", "summarize", "manual__2", None) is None
    assert spool.earliest_ready_at("dag", "other", "manual__1", -1) == T0
    assert spool.earliest_ready_at("dag", "summarize", "manual__1", 2).tzinfo is not None


# -- format 1: the files the previous release spooled (fixtures/spool_v1, written by that release's code) --------

V1_KEY = TaskTryKey("nightly_summaries", "summarize_logs", "scheduled__2024-06-01T00:00:00+00:00", 2, 1)
V1_SHARED = {"region": "DE", "source": "conn:watttime_default", "served_by": "conn:electricitymaps_default",
             "signal": "electricitymaps:DE", "failed_sources": ["conn:watttime_default: AuthError: 401 from WattTime"],
             "policy": "forecast", "reason": "green_window", "ready_at": T0, "deadline": T0 + 4 * HOUR,
             "planned_start": T0 + 2 * HOUR}
V1_DECISION = TaskTryRecord(**asdict(V1_KEY), **V1_SHARED, state=DEFERRED, energy_kwh=0.5,
                            decided_at=T0 + timedelta(minutes=1), expected_emissions_now_g=150.0,
                            expected_emissions_at_start_g=50.0)
V1_COMPLETION = TaskTryRecord(**asdict(V1_KEY), **V1_SHARED, state=COMPLETED, signal_kind="average", energy_kwh=0.4,
                              started_at=T0 + 2 * HOUR, ended_at=T0 + 3 * HOUR, delay_s=7200.0,
                              intensity_g_per_kwh=100.0, baseline_intensity_g_per_kwh=300.0, solar_kwh=0.0,
                              grid_kwh=0.4, emissions_g=40.0, baseline_emissions_g=120.0, saved_g=80.0, estimated=True)


def spool_v1(spool: Spool, *kinds: str) -> None:
    """The fixture files of ``kinds``, in that order, as the previous release named them in its spool."""
    spool.directory.mkdir(parents=True, exist_ok=True)
    for i, kind in enumerate(kinds):
        shutil.copy(SPOOL_V1 / f"{kind}.json", spool.directory / f"{i + 1:020d}-4242-{i:06d}-{kind}.json")


def test_the_fixtures_are_format_1_files():
    for kind in ("decision", "completion"):
        payload = json.loads((SPOOL_V1 / f"{kind}.json").read_text())
        assert payload["format"] == 1 and payload["kind"] == kind


@pytest.mark.parametrize(("kind", "expected"), [("decision", V1_DECISION), ("completion", V1_COMPLETION)])
def test_a_format_1_file_replays_into_the_right_row(spool, sqlite, kind, expected):
    spool_v1(spool, kind)
    assert spool.earliest_ready_at(V1_KEY.dag_id, V1_KEY.task_id, V1_KEY.run_id, V1_KEY.map_index) == T0
    assert spool.replay(sqlite.store) == (1, 0)
    assert stored(sqlite.store) == [expected]


@pytest.mark.parametrize("order", [("decision", "completion"), ("completion", "decision")])
def test_a_format_1_decision_and_completion_replay_into_one_completed_row(spool, sqlite, order):
    spool_v1(spool, *order)
    assert spool.replay(sqlite.store) == (2, 0)
    assert stored(sqlite.store) == [replace(V1_COMPLETION, decided_at=T0 + timedelta(minutes=1),
                                            expected_emissions_now_g=150.0, expected_emissions_at_start_g=50.0)]



def test_an_entry_that_cannot_be_read_is_set_aside_and_the_others_are_written(spool, sqlite, caplog, monkeypatch):
    first = spool.put(completion(key(try_number=1)))
    folder = spool.directory / "00000000000000000000-1-000000-decision.json"  # sorts first: a directory
    folder.mkdir()
    unreadable = spool.put(completion(key(try_number=2)))
    last = spool.put(completion(key(try_number=3)))
    read_text = Path.read_text

    def permission_denied(self, *args, **kwargs):
        if self == unreadable:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", permission_denied)
    with caplog.at_level(logging.ERROR):
        assert spool.replay(sqlite.store) == (2, 0)  # never "the store did not answer"
    assert [record.try_number for record in sqlite.store.records()] == [1, 3]
    assert not first.exists() and not last.exists()
    assert folder.with_suffix(".bad").is_dir() and unreadable.with_suffix(".bad").exists()
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 2
    assert folder.name in errors[0] and "cannot be read" in errors[0] and "IsADirectoryError" in errors[0]
    assert unreadable.name in errors[1] and "PermissionError" in errors[1]
    assert not any("did not answer" in record.getMessage() for record in caplog.records)


def test_an_entry_that_cannot_be_set_aside_stays_and_the_others_are_written(spool, sqlite, caplog):
    stuck = spool.directory / "00000000000000000000-1-000000-decision.json"
    (stuck.with_suffix(".bad") / "inside").mkdir(parents=True)  # a rename onto a full directory fails
    stuck.mkdir()
    written = spool.put(completion())
    with caplog.at_level(logging.ERROR):
        assert spool.replay(sqlite.store) == (1, 1)
    assert spool.pending() == [stuck] and not written.exists() and len(sqlite.store.records()) == 1
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert stuck.name in error and "cannot be set aside" in error


def test_a_written_record_that_cannot_be_removed_stays_pending_and_is_not_an_outage(spool, sqlite, caplog,
                                                                                    monkeypatch):
    path = spool.put(completion())

    def read_only(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    with caplog.at_level(logging.ERROR):
        assert spool.replay(sqlite.store) == (1, 1)
    assert spool.pending() == [path] and len(sqlite.store.records()) == 1
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert path.name in error and "cannot be removed" in error
    monkeypatch.undo()
    assert spool.replay(sqlite.store) == (1, 0) and len(sqlite.store.records()) == 1  # written again: one row
