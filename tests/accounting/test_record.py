from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_carbon.accounting import account, mean_intensity_g_per_kwh
from tests.helpers import T0, series, solar_series

HOUR = timedelta(hours=1)


def test_emissions_follow_the_interval_the_job_really_ran():
    intensity = series([100, 300, 200, 400])
    record = account(job_id="j", policy="forecast", reason="green_window", ready_at=T0, deadline=T0 + 3 * HOUR,
                     started_at=T0 + 1.5 * HOUR, ended_at=T0 + 2.5 * HOUR, energy_kwh=2.0, intensity=intensity)
    assert record.intensity_g_per_kwh == pytest.approx(250)  # half an hour at 300, half at 200
    assert record.emissions_g == pytest.approx(2.0 * 250)
    assert record.baseline_intensity_g_per_kwh == pytest.approx(100)  # the same hour-long job run when ready
    assert record.baseline_emissions_g == pytest.approx(200)
    assert record.saved_g == pytest.approx(-300)
    assert record.delay_s == 5400 and record.grid_kwh == 2.0 and not record.estimated


def test_only_the_grid_share_of_energy_emits():
    intensity = series([200, 200])
    solar = solar_series([0.0, 0.5, 1.5, 0.0], period_s=1800)
    record = account(job_id="j", policy="forecast", reason="solar", ready_at=T0, deadline=T0 + HOUR,
                     started_at=T0, ended_at=T0 + HOUR, energy_kwh=1.0, intensity=intensity, solar=solar)
    assert record.solar_kwh == pytest.approx(0.25)  # 0.5 kW for half an hour; the job draws 1 kW
    assert record.emissions_g == pytest.approx(200 * 0.75)
    assert record.grid_kwh == pytest.approx(0.75)


def test_a_record_says_when_its_figures_are_estimated_or_missing():
    replayed = series([100, 100], replayed=True, source="replay of de_ci.csv")
    record = account(job_id="j", policy="forecast", reason="deadline", ready_at=T0, deadline=T0,
                     started_at=T0, ended_at=T0 + HOUR, energy_kwh=1.0, intensity=replayed)
    assert record.estimated and record.emissions_g == pytest.approx(100)
    assert record.to_dict()["signal"] == "replay of de_ci.csv"
    beyond = account(job_id="j", policy="forecast", reason="signal_unavailable", ready_at=T0 + HOUR,
                     deadline=T0 + 2 * HOUR, started_at=T0 + 2 * HOUR, ended_at=T0 + 3 * HOUR, energy_kwh=1.0,
                     intensity=series([100, 100]))
    assert beyond.estimated and beyond.emissions_g is None and beyond.saved_g is None
    assert beyond.to_dict()["saved_g"] is None


def test_the_record_is_plain_json():
    record = account(job_id="j", policy="immediate", reason="immediate", ready_at=T0, deadline=T0,
                     started_at=T0, ended_at=T0 + HOUR, energy_kwh=1.0, intensity=series([100, 100]))
    as_dict = record.to_dict()
    assert as_dict["started_at"] == T0.isoformat() and as_dict["saved_g"] == 0.0 and as_dict["delay_s"] == 0.0


def test_mean_intensity_is_time_weighted_and_none_outside():
    intensity = series([100, 400])
    assert mean_intensity_g_per_kwh(intensity, T0 + 0.75 * HOUR, T0 + 1.25 * HOUR) == pytest.approx(250)
    assert mean_intensity_g_per_kwh(intensity, T0 + HOUR, T0 + 3 * HOUR) is None


def test_an_end_before_the_start_is_refused():
    with pytest.raises(ValueError, match="job j: ended_at"):
        account(job_id="j", policy="forecast", reason="x", ready_at=T0, deadline=T0, started_at=T0 + HOUR,
                ended_at=T0, energy_kwh=1.0, intensity=series([1, 1]))
