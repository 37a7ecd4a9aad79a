"""A choice between regions as Airflow runs it (``dag.test()`` on a migrated metadata database), and its parse-time
checks.

Home is DE on its bundled replay (a few hundred g/kWh); the other candidate is CAISO_NORTH on the loopback WattTime
fake, 2,000 lbs/MWh (907 g/kWh) until a few seconds after the choice's first read of it and 10 lbs/MWh (4.5 g/kWh)
after: dirtier than DE now, far cleaner soon, whatever hour the replay is at. So the choice defers, then follows the
CAISO task, and the DE one is skipped. The chosen task's energy is metered in its own process by the Carbon plugin's
listener and added to the choice's record with the saving split into time and place.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics import COMPLETED
from airflow_carbon.operators.regions import RegionOption, narrow, parse_regions
from airflow_carbon.settings import CarbonSettingsError
from tests.fakes.signal_server import FakeSignalServer
from tests.helpers import dag_file_module, watttime_fake_connection

DAGS = '''
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from airflow_carbon.operators.regions import CarbonAwareBranchOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
REGIONS = {"DE": "run_de", "CAISO_NORTH": {"task_id": "run_caiso", "source": "wt"}}
COMMON = {"max_delay": timedelta(hours=1), "energy_kwh": 1.0, "expected_duration": timedelta(minutes=30),
          "refresh_interval": timedelta(seconds=5)}


@task
def run_de():
    return "de"


@task
def run_caiso():
    return sum(i * i for i in range(200_000))


with DAG("regions_operator", schedule=None, start_date=START) as operator_dag:
    CarbonAwareBranchOperator(task_id="choose_region", regions=REGIONS, **COMMON) >> [run_de(), run_caiso()]


with DAG("regions_immediate", schedule=None, start_date=START) as immediate_dag:
    CarbonAwareBranchOperator(task_id="choose_region", regions=REGIONS, **COMMON | {"policy": "immediate"}) >> [
        run_de(), run_caiso()]


with DAG("regions_decorator", schedule=None, start_date=START) as decorator_dag:
    @task.carbon_aware_branch(regions=REGIONS, policy="immediate", **COMMON)
    def choose_region(only):
        return only

    choose_region(["DE"]) >> [run_de(), run_caiso()]
'''


@pytest.fixture(scope="module")
def dags(tmp_path_factory) -> Iterator[dict[str, Any]]:
    with dag_file_module(tmp_path_factory.mktemp("airflow_home"), "carbon_region_dags", DAGS) as module:
        yield {dag.dag_id: dag for dag in (module.operator_dag, module.immediate_dag, module.decorator_dag)}


@pytest.fixture
def server(monkeypatch, tmp_path) -> Iterator[FakeSignalServer]:
    with watttime_fake_connection(monkeypatch, tmp_path) as fake:
        yield fake


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_the_choice_defers_then_follows_the_region_that_turned_clean_and_splits_its_saving(dags, server):
    server.green_window(after_first_request_s=4, dirty=2000.0, clean=10.0)
    run = dags["regions_operator"].test()
    assert run.state == "success"
    assert states(run) == {"choose_region": "success", "run_caiso": "success", "run_de": "skipped"}
    [record] = CarbonMetricsHook().get_store().records(task_id="choose_region")
    assert record.state == COMPLETED and record.reason == "green_window"
    assert (record.region, record.home_region, record.chosen_task_id) == ("CAISO_NORTH", "DE", "run_caiso")
    assert record.source == record.served_by == "conn:wt"
    assert set(record.region_expected_g) == {"DE", "CAISO_NORTH"}
    assert record.region_expected_g["CAISO_NORTH"] < record.region_expected_g["DE"]
    # It waited for the window: the choice's start is after its ready time by at least the fake's few seconds.
    assert record.started_at >= record.ready_at and record.delay_s > 1.0
    # The chosen task's energy, metered in its own process, was added with the split of the saving.
    assert record.energy_method.startswith("gated: ") and record.energy_kwh > 0
    assert record.energy_notes == ["the choice between regions draws nothing itself; the energy of the tasks it let "
                                   "run is added to this record as each finishes"]
    assert list(record.energy_breakdown_kwh) == ["run_caiso"]
    assert record.saved_time_g is not None and record.saved_place_g is not None
    assert record.saved_time_g + record.saved_place_g == pytest.approx(record.saved_g, abs=1e-9)
    assert record.saved_place_g > 0  # CAISO at 4.5 g/kWh against DE's replay at the same time
    assert record.emissions_g < record.baseline_emissions_g


def test_the_decorated_choice_keeps_only_the_regions_its_function_returns(dags, server):
    run = dags["regions_decorator"].test()
    assert run.state == "success"
    assert states(run) == {"choose_region": "success", "run_de": "success", "run_caiso": "skipped"}
    [record] = CarbonMetricsHook().get_store().records(task_id="choose_region")
    assert (record.region, record.home_region, record.chosen_task_id) == ("DE", "DE", "run_de")
    assert record.region_expected_g.keys() == {"DE"} and server.count("/v3/forecast") == 0
    assert record.saved_place_g == pytest.approx(0.0, abs=1e-9)  # it ran at home


def test_a_candidate_whose_source_fails_is_skipped_and_recorded(dags, server):
    server.fail("/v3", 500, times=None)
    run = dags["regions_immediate"].test()
    assert states(run)["run_de"] == "success" and states(run)["run_caiso"] == "skipped"
    [record] = CarbonMetricsHook().get_store().records(task_id="choose_region")
    assert record.region == "DE" and record.region_expected_g["CAISO_NORTH"] is None
    assert any(failure.startswith("CAISO_NORTH: conn:wt: ") for failure in record.failed_sources)


# ------------------------------------------------------------------------------------------ at parse time


@pytest.mark.parametrize(("regions", "message"), [
    ({}, "regions must map each candidate region"),
    (["FR"], "regions must map each candidate region"),
    ({"FR": 3}, r"regions\['FR'\]: give the task id, or a dict"),
    ({"FR": {"task": "x"}}, r"regions\['FR'\]: unknown key 'task'"),
    ({"FR": {"task_id": ""}}, r"regions\['FR'\]: task_id must name the task"),
    ({"FR": {"task_id": "x", "penalty_pct": -5}}, r"regions\['FR'\]: penalty_pct must be a number from 0"),
    ({"FR": {"task_id": "x", "penalty_pct": float("nan")}}, r"regions\['FR'\]: penalty_pct must be a number"),
    ({"FR": {"task_id": "x", "forecaster": "crystal"}}, r"regions\['FR'\]: .*forecaster='crystal'"),
    ({"FR": "a", "fr": "b"}, "regions name a region twice"),
])
def test_bad_regions_are_refused_naming_the_task_and_region(regions, message):
    with pytest.raises(CarbonSettingsError, match=f"task 'choose': {message}"):
        parse_regions("choose", regions)


def test_regions_parse_in_order_with_their_own_settings_and_narrow_keeps_the_order():
    options = parse_regions("choose", {"DE": "run_de", "FR": {"task_id": "run_fr", "source": "em_fr",
                                                             "fallback": ["wt"], "penalty_pct": 25}})
    assert options == (RegionOption("DE", "run_de"),
                       RegionOption("FR", "run_fr", "em_fr", ("wt",), None, 25.0))
    assert narrow("choose", options, None) == options
    assert narrow("choose", options, ["FR", "DE"]) == options
    assert narrow("choose", options, "FR") == options[1:]
    with pytest.raises(CarbonSettingsError, match=r"returned 'PL'; return None .* DE, FR"):
        narrow("choose", options, "PL")
    with pytest.raises(CarbonSettingsError, match="kept none of its regions"):
        narrow("choose", options, [])


def test_a_dag_whose_choice_takes_a_region_setting_fails_when_parsed(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "bad.py").write_text(textwrap.dedent("""
        import pendulum
        from airflow.sdk import DAG
        from airflow_carbon.operators.regions import CarbonAwareBranchOperator

        with DAG("bad", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
            CarbonAwareBranchOperator(task_id="choose", regions={"FR": "x"}, region="DE")
    """))
    bag = DagBag(dag_folder=str(tmp_path))
    [error] = bag.import_errors.values()
    assert "CarbonSettingsError" in error and re.search("task 'choose': .* takes no carbon setting 'region'", error)
