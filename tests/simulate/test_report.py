"""The side-by-side table of policies, as text and as JSON."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest

from airflow_carbon.simulate import Jobs, simulate
from airflow_carbon.simulate.engine import PolicySummary
from airflow_carbon.simulate.report import as_json, summaries, table
from tests.helpers import T0, series

GRID_ONLY = ["policy", "jobs", "delayed", "max delay h", "mean delay h", "baseline kg", "scheduled kg", "change %",
             "deadline misses"]
SOLAR = ["solar kWh", "net baseline kg", "net kg", "net change %"]


def row(policy: str, scheduled_kg: float, net_kg: float) -> PolicySummary:
    return PolicySummary(policy=policy, jobs=4, delayed=0 if policy == "immediate" else 3, max_delay_h=2.5,
                         mean_delay_h=1.25, deadline_misses=0, energy_kwh=2.0, baseline_kg=0.8,
                         scheduled_kg=scheduled_kg, solar_kwh=0.5, net_baseline_kg=0.6, net_kg=net_kg)


ROWS = [row("immediate", 0.8, 0.6), row("forecast", 0.6, 0.3)]


def cells(text: str) -> dict[str, dict[str, str]]:
    """The table's cells by policy and column, read from the fixed-width text."""
    header, *lines = text.splitlines()
    names = GRID_ONLY + (SOLAR if "net kg" in header else [])
    starts = [header.index(name) for name in names]  # headers are right-aligned over their column...
    ends = [start + len(name) for start, name in zip(starts, names, strict=True)]
    bounds = [0, *ends[:-1]]  # ...so each cell lies between the previous header's end and its own
    return {line.split()[0]: {name: line[lo:hi].strip() for name, lo, hi in zip(names, bounds, ends, strict=True)}
            for line in lines}


def test_the_grid_only_table_has_one_row_per_policy_and_change_is_minus_the_saving():
    text = table(ROWS, with_solar=False)
    assert all(name not in text for name in SOLAR)
    rows = cells(text)
    assert list(rows) == ["immediate", "forecast"]
    assert rows["forecast"] == {"policy": "forecast", "jobs": "4", "delayed": "3", "max delay h": "2.500",
                                "mean delay h": "1.250", "baseline kg": "0.800", "scheduled kg": "0.600",
                                "change %": "-25.000", "deadline misses": "0"}
    assert rows["immediate"]["change %"] == "0.000"


def test_the_solar_columns_appear_only_when_solar_was_given():
    rows = cells(table(ROWS, with_solar=True))
    assert rows["forecast"]["solar kWh"] == "0.500" and rows["forecast"]["net kg"] == "0.300"
    assert rows["forecast"]["net baseline kg"] == "0.600" and rows["forecast"]["net change %"] == "-50.000"
    assert rows["forecast"]["change %"] == "-25.000"


def test_as_json_carries_the_inputs_and_every_row_with_its_savings():
    inputs = {"jobs": "jobs.csv", "max_delay_h": 4.0}
    report = as_json(ROWS, inputs)
    assert json.loads(json.dumps(report)) == report  # plain JSON, as the CLI and the API print it
    assert report["inputs"] == inputs and report["inputs"] is not inputs
    assert [p["policy"] for p in report["policies"]] == ["immediate", "forecast"]
    forecast = report["policies"][1]
    assert forecast["saving_pct"] == pytest.approx(25.0) and forecast["net_saving_pct"] == pytest.approx(50.0)
    assert forecast["scheduled_kg"] == 0.6 and forecast["delayed"] == 3


def test_summaries_sum_each_policys_records_in_the_order_simulated():
    """Two jobs on a grid that is dirty for two hours, then clean: the oracle moves both into the clean hours."""
    jobs = Jobs(job_id=np.array(["a", "b"]), ready_epoch_s=np.array([0, 3600]) + int(T0.timestamp()),
                duration_s=np.array([600, 600]), energy_kwh=np.array([1.0, 2.0]), line=np.array([2, 3]))
    intensity = series([400, 400, 100, 100, 100, 100])
    results = simulate(jobs, intensity, ["immediate", "oracle"], max_delay=timedelta(hours=4))
    immediate, oracle = summaries(results)
    assert (immediate.policy, oracle.policy) == ("immediate", "oracle")
    assert (immediate.jobs, immediate.delayed, oracle.jobs, oracle.delayed) == (2, 0, 2, 2)
    assert immediate.baseline_kg == immediate.scheduled_kg == pytest.approx(3.0 * 400 / 1000)
    assert oracle.scheduled_kg == pytest.approx(3.0 * 100 / 1000) and oracle.saving_pct == pytest.approx(75.0)
    assert oracle.max_delay_h == pytest.approx(2.0) and oracle.deadline_misses == 0
