"""The spool against a real SQLite store that goes down (its directory moved away) and comes back."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_carbon.accounting import account
from airflow_carbon.metrics import COMPLETED, DEFERRED, MetricsStore, Spool, TaskTryKey
from airflow_carbon.metrics.store import COMPLETION_COLUMNS
from airflow_carbon.planning.decision import Decision, Reason
from tests.helpers import T0, series

HOUR = timedelta(hours=1)
NAME = re.compile(r"^\d{20}-\d+-\d{6}-(decision|completion)\.json$")


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


def decision_fields(ready_at=T0) -> dict:
    decision = Decision(policy="forecast", now=ready_at, start=ready_at + 2 * HOUR, deadline=ready_at + 4 * HOUR,
                        reason=Reason.GREEN_WINDOW, expected_emissions_now_g=30.0,
                        expected_emissions_at_start_g=10.0).to_dict()
    return {"region": "DE", "source": "csv", "policy": "forecast", "ready_at": ready_at,
            "deadline": ready_at + 4 * HOUR, "decision": decision, "signal": None, "served_by": "csv",
            "failed_sources": [], "state": DEFERRED, "energy_kwh": 0.5}


def job_record(ready_at=T0) -> dict:
    return account(job_id="summarize", policy="forecast", reason="green_window", ready_at=ready_at,
                   deadline=ready_at + 4 * HOUR, started_at=ready_at + 2 * HOUR, ended_at=ready_at + 3 * HOUR,
                   energy_kwh=0.5, intensity=series([300, 250, 100, 120, 400], start=ready_at)).to_dict()


def completion_fields(ready_at=T0) -> dict:
    return {"record": job_record(ready_at), "signal": "csv", "served_by": "csv", "failed_sources": ["watttime"]}


def assert_completed_as(row: dict, record: dict) -> None:
    assert row["state"] == COMPLETED and row["failed_sources"] == ["watttime"]
    for name in COMPLETION_COLUMNS:
        expected = record[name]
        assert (row[name].isoformat() if hasattr(row[name], "isoformat") else row[name]) == (
            pytest.approx(expected) if isinstance(expected, float) else expected), name


def test_names_sort_in_write_order_and_hold_the_fields_with_iso_datetimes(spool):
    paths = [spool.put("decision" if i % 2 else "completion", key(try_number=i),
                       decision_fields() if i % 2 else completion_fields()) for i in range(1, 41)]
    assert spool.pending() == paths
    assert all(NAME.match(path.name) for path in paths)
    assert sorted(os.listdir(spool.directory)) == [path.name for path in paths]  # no temporary file left
    first = json.loads(paths[0].read_text())
    assert first["kind"] == "decision" and first["key"]["try_number"] == 1
    assert first["ready_at"] == T0.isoformat() and first["decision"]["start"] == (T0 + 2 * HOUR).isoformat()


def test_a_put_that_fails_leaves_neither_a_record_nor_a_temporary_file(spool, monkeypatch):
    spool.put("decision", key(), decision_fields())

    def disk_full(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        spool.put("completion", key(), completion_fields())
    assert [path.name for path in spool.directory.iterdir()] == [path.name for path in spool.pending()]
    assert len(spool.pending()) == 1


def test_only_the_store_writers_fields_are_kept(spool):
    with pytest.raises(ValueError, match="not the completion fields"):
        spool.put("completion", key(), {**completion_fields(), "password": "x"})
    with pytest.raises(ValueError, match="neither 'decision' nor 'completion'"):
        spool.put("running", key(), decision_fields())
    assert spool.pending() == []


def test_replay_stops_when_the_store_goes_down_and_a_later_one_writes_each_record_once(spool, sqlite, monkeypatch):
    records = {try_number: job_record(T0 + try_number * HOUR) for try_number in (1, 2, 3)}
    paths = [spool.put("decision", key(try_number=n), decision_fields(T0 + n * HOUR)) for n in records]
    paths += [spool.put("completion", key(try_number=n), completion_fields(T0 + n * HOUR)) for n in records]
    original = MetricsStore.record_decision

    def goes_down_after_one_write(self, *args, **kwargs):
        original(self, *args, **kwargs)
        sqlite.down()

    monkeypatch.setattr(MetricsStore, "record_decision", goes_down_after_one_write)
    assert spool.replay(sqlite.store) == (1, 5)
    assert spool.pending() == paths[1:]
    monkeypatch.setattr(MetricsStore, "record_decision", original)

    assert spool.replay(sqlite.store) == (0, 5)  # still down: nothing lost, nothing written
    sqlite.up()
    assert spool.replay(sqlite.store) == (5, 0)
    assert spool.replay(sqlite.store) == (0, 0) and not list(spool.directory.iterdir())
    rows = sqlite.store.rows()
    assert [row["try_number"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert_completed_as(row, records[row["try_number"]])
        assert row["planned_start"] == T0 + (row["try_number"] + 2) * HOUR  # the decision's own field is kept


def test_a_replayed_decision_never_downgrades_a_completed_row(spool, sqlite):
    record = job_record()
    sqlite.store.record_completion(key(), record, signal="csv", served_by="csv", failed_sources=["watttime"])
    spool.put("decision", key(), decision_fields())
    assert spool.replay(sqlite.store) == (1, 0)
    [row] = sqlite.store.rows()
    assert_completed_as(row, record)
    assert row["planned_start"] == T0 + 2 * HOUR  # it gains only what it lacked


def test_a_corrupt_or_refused_file_is_set_aside_and_named_at_error(spool, sqlite, caplog):
    good = spool.put("completion", key(), completion_fields())
    spool.directory.joinpath("00000000000000000001-1-000000-completion.json").write_text('{"kind": "compl')
    spool.directory.joinpath("00000000000000000002-1-000000-decision.json").write_text(
        json.dumps({"format": 1, "kind": "decision", "key": {"dag_id": "dag"}, "region": "DE"}))
    refused = spool.put("decision", key("tag"), {**decision_fields(), "ready_at": "the day before yesterday"})
    with caplog.at_level(logging.ERROR):
        assert spool.replay(sqlite.store) == (1, 0)
    assert not good.exists() and sqlite.store.rows()[0]["task_id"] == "summarize"
    bad = sorted(path.name for path in spool.directory.glob("*.bad"))
    assert bad == ["00000000000000000001-1-000000-completion.bad", "00000000000000000002-1-000000-decision.bad",
                   refused.with_suffix(".bad").name]
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 3
    assert "00000000000000000001-1-000000-completion.json" in errors[0] and "not JSON" in errors[0]
    assert "00000000000000000002-1-000000-decision.json" in errors[1] and "key" in errors[1]
    assert refused.name in errors[2] and "the day before yesterday" in errors[2]


def test_two_replays_at_once_write_each_record_once_and_neither_fails(spool, sqlite):
    records = {n: job_record(T0 + n * HOUR) for n in range(1, 21)}
    for n, record in records.items():
        spool.put("completion", key(try_number=n), {**completion_fields(), "record": record})
    results: list[tuple[int, int]] = []
    threads = [threading.Thread(target=lambda: results.append(Spool(spool.directory).replay(sqlite.store)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and all(remaining == 0 for _, remaining in results)
    assert sum(written for written, _ in results) >= 20 and spool.pending() == []
    rows = sqlite.store.rows()
    assert [row["try_number"] for row in rows] == list(records)
    for row in rows:
        assert_completed_as(row, records[row["try_number"]])


def test_earliest_ready_at_over_spooled_decisions_and_completions(spool):
    assert spool.earliest_ready_at("dag", "summarize", "manual__1", None) is None  # no directory yet
    spool.put("decision", key(map_index=2, try_number=2), decision_fields(T0 + 3 * HOUR))
    spool.put("completion", key(map_index=2), completion_fields(T0 + 2 * HOUR))
    spool.put("decision", key(map_index=5), decision_fields(T0 + HOUR))
    spool.put("decision", key("other"), decision_fields(T0))
    spool.directory.joinpath("00000000000000000001-1-000000-decision.json").write_text("not json")
    assert spool.earliest_ready_at("dag", "summarize", "manual__1", 2) == T0 + 2 * HOUR
    assert spool.earliest_ready_at("dag", "summarize", "manual__1", None) == T0 + HOUR
    assert spool.earliest_ready_at("dag", "summarize", "manual__1", -1) is None
    assert spool.earliest_ready_at("dag", "summarize", "manual__2", None) is None
    assert spool.earliest_ready_at("dag", "other", "manual__1", -1) == T0
    assert spool.earliest_ready_at("dag", "summarize", "manual__1", 2).tzinfo is not None
