"""The simulator on a measured history that changes from 30-minute to 15-minute periods partway."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from airflow_carbon.signals.csv import read_intensity_csv
from airflow_carbon.simulate.files import simulate_files

CORPUS = Path(__file__).parents[1] / "signals" / "corpus"
MIXED = CORPUS / "resolution_change.csv"


@pytest.fixture
def jobs(tmp_path):
    """Jobs every 40 minutes on both sides of the change (2025-10-01 00:00 UTC)."""
    path = tmp_path / "jobs.csv"
    ready = [f"2025-09-30 {hour:02d}:{minute:02d}:00" for hour in range(12, 24) for minute in (0, 40)]
    ready += [f"2025-10-01 {hour:02d}:{minute:02d}:00" for hour in range(0, 12) for minute in (20,)]
    path.write_text("job_id,timestamp,energy_kwh\n" + "".join(f"j{i},{t},0.5\n" for i, t in enumerate(ready)))
    return path


@pytest.fixture
def quarter_hour_file(tmp_path):
    """The same history written at 15 minutes throughout, each half-hour value repeated."""
    series = read_intensity_csv(MIXED)
    path = tmp_path / "de_quarter.csv"
    rows = [f"{t.isoformat()},DE,{v!r}" for t, v in zip(series.times, series.values.tolist(), strict=True)]
    path.write_text("timestamp,region,carbon_intensity\n" + "\n".join(rows) + "\n")
    return path


def test_the_simulator_reads_a_file_that_changes_resolution(jobs, quarter_hour_file):
    policies = ["immediate", "forecast", "oracle"]
    mixed = simulate_files(jobs, MIXED, policies=policies, max_delay=timedelta(hours=4))
    even = simulate_files(jobs, quarter_hour_file, policies=policies, max_delay=timedelta(hours=4))
    assert mixed.intensity.period_s == 900
    assert mixed.intensity.estimated is False
    assert "each value held until the next row" in mixed.intensity.source
    for policy in policies:
        got, expected = mixed.results[policy], even.results[policy]
        assert [r.started_at for r in got] == [r.started_at for r in expected]
        assert [r.emissions_g for r in got] == pytest.approx([r.emissions_g for r in expected])
        assert [r.baseline_emissions_g for r in got] == pytest.approx([r.baseline_emissions_g for r in expected])
    rows = {row.policy: row for row in mixed.rows}
    assert rows["immediate"].jobs == 36
    assert all(row.deadline_misses == 0 for row in rows.values())
    assert rows["forecast"].scheduled_kg < rows["immediate"].scheduled_kg
    assert all(record.signal == mixed.intensity.source for record in mixed.results["forecast"])
