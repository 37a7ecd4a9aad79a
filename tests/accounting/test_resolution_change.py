"""Accounting over a measured history that changes from 30-minute to 15-minute periods partway."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_carbon.accounting.record import account, mean_intensity_g_per_kwh
from airflow_carbon.signals.csv import read_intensity_csv

MIXED = Path(__file__).parents[1] / "signals" / "corpus" / "resolution_change.csv"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_a_run_across_the_change_is_accounted_with_the_values_as_written():
    intensity = read_intensity_csv(MIXED)
    # 23:30 holds 362.1 for half an hour (the file's 30-minute period), then 363.5 and 356.5 for 15 minutes each
    expected_g_per_kwh = (362.1 * 30 + 363.5 * 15 + 356.5 * 15) / 60
    assert mean_intensity_g_per_kwh(intensity, utc(2025, 9, 30, 23, 30), utc(2025, 10, 1, 0, 30)) == pytest.approx(
        expected_g_per_kwh
    )
    record = account(job_id="j", policy="forecast", reason="test", ready_at=utc(2025, 9, 30, 23, 30),
                     deadline=utc(2025, 10, 1, 3), started_at=utc(2025, 9, 30, 23, 40),
                     ended_at=utc(2025, 10, 1, 0, 10), energy_kwh=2.0, intensity=intensity)
    assert record.emissions_g == pytest.approx(2.0 * (362.1 * 20 + 363.5 * 10) / 30)
    assert record.baseline_emissions_g == pytest.approx(2.0 * 362.1)
    assert record.estimated is False
    assert record.signal == intensity.source
