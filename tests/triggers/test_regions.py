"""The trigger of a choice between regions: each candidate read on its own sources, one event for the best pair."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from airflow.sdk._shared.module_loading import import_string

from airflow_carbon.settings import resolve
from airflow_carbon.signals.source import SourceRef
from airflow_carbon.triggers.event import Candidacy, CarbonEvent
from airflow_carbon.triggers.regions import CarbonRegionsTrigger
from tests.signal_files import write_signal


def candidacy(region: str, path, penalty_pct: float = 0.0) -> Candidacy:
    return Candidacy(region, f"run_{region.lower()}", (SourceRef.file(str(path), "TEST", replay=False),), penalty_pct)


def trigger_for(*candidacies: Candidacy, deadline_in_s: float = 60, refresh_s: float = 0.5) -> CarbonRegionsTrigger:
    now = datetime.now(UTC)
    return CarbonRegionsTrigger(
        ready_at=now, deadline=now + timedelta(seconds=deadline_in_s), policy="forecast", duration_s=1,
        energy_kwh=0.01, signals=[ref.to_dict() for ref in candidacies[0].sources], refresh_s=refresh_s,
        task_settings=resolve("choose", {"region": "TEST"}).to_json(),
        candidates=[c.to_dict() for c in candidacies])


def fire(trigger: CarbonRegionsTrigger, timeout_s: float = 30) -> CarbonEvent:
    return CarbonEvent.from_json("choose", asyncio.run(asyncio.wait_for(anext(trigger.run()), timeout_s)).payload)


def test_serialization_round_trip_keeps_the_candidates_and_no_secret(tmp_path):
    trigger = trigger_for(candidacy("DE", tmp_path / "de.csv"), candidacy("FR", tmp_path / "fr.csv", 25.0))
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_carbon.triggers.regions.CarbonRegionsTrigger"
    again = import_string(classpath)(**kwargs)
    assert again.serialize() == (classpath, kwargs) and again.candidates == trigger.candidates
    assert [c["region"] for c in kwargs["candidates"]] == ["DE", "FR"] and kwargs["candidates"][1]["penalty_pct"] == 25


def test_it_waits_for_the_region_that_turns_green_and_fires_for_it(tmp_path):
    started = datetime.now(UTC)  # before the files: FR's green window begins at int(now) + 2 s
    home = write_signal(tmp_path / "de.csv", green_in_s=3600)
    away = write_signal(tmp_path / "fr.csv", green_in_s=2)
    event = fire(trigger_for(candidacy("DE", home), candidacy("FR", away), candidacy("PL", tmp_path / "pl.csv")))
    assert event.reason == "green_window" and event.decision.now >= started + timedelta(seconds=1)
    choice = event.choice
    assert (choice.region, choice.task_id, choice.home, choice.failed) == ("FR", "run_fr", "DE", ("PL",))
    assert choice.expected_g["FR"] < choice.expected_g["DE"] and choice.expected_g["PL"] is None
    assert event.sources == (SourceRef.file(str(away), "TEST", replay=False),) and event.served_by == f"csv:{away}"
    assert [failure.split(": ")[0] for failure in event.failed_sources] == ["PL"]


def test_a_penalty_keeps_the_work_at_home_when_moving_saves_too_little(tmp_path):
    home = write_signal(tmp_path / "de.csv", green_in_s=-10, clean=120)
    away = write_signal(tmp_path / "fr.csv", green_in_s=-10, clean=100)  # 17% cleaner; moving must save 20%
    event = fire(trigger_for(candidacy("DE", home), candidacy("FR", away, penalty_pct=25.0)))
    assert event.decision.run_now and (event.choice.region, event.choice.task_id) == ("DE", "run_de")
    assert event.choice.expected_g["FR"] < event.choice.expected_g["DE"]


def test_with_every_signal_failed_the_home_region_runs_at_the_deadline(tmp_path):
    event = fire(trigger_for(candidacy("DE", tmp_path / "de.csv"), candidacy("FR", tmp_path / "fr.csv"),
                             deadline_in_s=2))
    assert event.reason == "deadline" and (event.choice.region, event.choice.failed) == ("DE", ("DE", "FR"))
    assert event.served_by is None and {failure[:4] for failure in event.failed_sources} == {"DE: ", "FR: "}
