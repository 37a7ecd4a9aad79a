from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from airflow_carbon.signals import SignalDataError
from airflow_carbon.signals.bundled import bundled_path
from airflow_carbon.simulate import read_jobs_csv


def test_the_seed_jobs_read_with_the_default_duration():
    jobs = read_jobs_csv(bundled_path("inference_jobs.csv"), default_duration=timedelta(minutes=2))
    assert len(jobs) == 110 and jobs.job_id[0] == "job_0001" and jobs.line[0] == 2
    assert np.all(jobs.duration_s == 120) and jobs.energy_kwh.sum() == pytest.approx(4.474)


def test_a_duration_column_is_used_and_zero_is_refused(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("job_id,ready_at,energy_kwh,duration_s\na,2024-06-01T00:00:00Z,1,600\nb,2024-06-01 01:00,1,0\n")
    with pytest.raises(SignalDataError, match=r"jobs.csv, line 3, column 'duration_s'"):
        read_jobs_csv(path)
    path.write_text("job_id,ready_at,energy_kwh,duration_s\na,2024-06-01T02:00:00+02:00,1,600\n")
    jobs = read_jobs_csv(path)
    assert jobs.duration_s[0] == 600 and jobs.ready_epoch_s[0] == 1717200000  # 00:00 UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("job_id,timestamp\na,2024-06-01 00:00\n", r"jobs.csv.*energy_kwh|jobs.csv.*expected_power_kwh"),
        ("job_id,timestamp,energy_kwh\na,2024-06-01 00:00,1\na,2024-06-01 01:00,1\n", r"line 3, column 'job_id'"),
        ("job_id,timestamp,energy_kwh\na,yesterday,1\n", r"line 2, column 'timestamp'"),
        ("job_id,timestamp,energy_kwh\na,2024-06-01 00:00,-1\n", r"line 2, column 'energy_kwh'"),
    ],
)
def test_bad_job_files_are_refused_by_line_and_column(tmp_path, text, expected):
    path = tmp_path / "jobs.csv"
    path.write_text(text)
    with pytest.raises(SignalDataError, match=expected):
        read_jobs_csv(path)


@pytest.mark.parametrize(("row", "says"), [
    ("a,2024-06-01 00:00,1e308,60", r"line 2, column 'energy_kwh': '1e308': more than 1e\+09 kWh"),
    ("a,2024-06-01 00:00,1,0.5", r"line 2, column 'duration_s': '0.5': a job must run for 1 s to 31622400 s"),
    ("a,2024-06-01 00:00,1,1e300", r"line 2, column 'duration_s': '1e300': a job must run for"),
])
def test_energies_and_durations_that_would_overflow_the_planner_are_refused(tmp_path, row, says):
    path = tmp_path / "jobs.csv"
    path.write_text(f"job_id,ready_at,energy_kwh,duration_s\n{row}\n")
    with pytest.raises(SignalDataError, match=rf"jobs.csv, {says}"):
        read_jobs_csv(path)


@pytest.mark.parametrize("duration", [timedelta(milliseconds=500), timedelta(days=367)])
def test_a_default_duration_out_of_range_is_refused(duration):
    with pytest.raises(ValueError, match=r"job duration .* is out of range: a job runs 1 s to 366 days"):
        read_jobs_csv(bundled_path("inference_jobs.csv"), default_duration=duration)
