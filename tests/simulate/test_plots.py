import os
import struct
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from airflow_carbon.planning import PolicySettings
from airflow_carbon.signals.csv import read_intensity_csv, read_solar_csv
from airflow_carbon.simulate.engine import simulate, summarize
from airflow_carbon.simulate.jobs import read_jobs_csv
from airflow_carbon.simulate.plots import (
    best_policy,
    delays_h,
    intensities_at_execution,
    signal_note,
    solar_kwh_per_hour,
    starts_per_hour,
    time_span,
    totals_kg,
    write_plots,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "airflow_carbon" / "data"
POLICIES = ["immediate", "threshold", "forecast", "oracle"]
FIGURES = {
    "delay_distribution.png",
    "jobs_per_hour.png",
    "grid_intensity.png",
    "intensity_at_execution.png",
    "co2_baseline_vs_scheduled.png",
    "solar_profile.png",
    "solar_energy_used.png",
}
SOLAR_FIGURES = {"solar_profile.png", "solar_energy_used.png"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def inputs():
    jobs = read_jobs_csv(DATA / "inference_jobs.csv")
    intensity = read_intensity_csv(DATA / "carbon_intensity.csv")
    solar = read_solar_csv(DATA / "solar_generation.csv")
    return jobs, intensity, solar


def _run(inputs, *, with_solar: bool, policies=POLICIES):
    jobs, intensity, solar = inputs
    return simulate(jobs, intensity, policies, max_delay=timedelta(hours=4),
                    settings=PolicySettings(solar_threshold_kw=0.05), solar=solar if with_solar else None)


@pytest.fixture(scope="module")
def results(inputs):
    return _run(inputs, with_solar=True)


@pytest.fixture(scope="module")
def results_without_solar(inputs):
    return _run(inputs, with_solar=False)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the file is a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def assert_seven_images(paths: list[Path], out_dir: Path, figures: set[str] = FIGURES) -> None:
    assert len(paths) == len(figures)
    assert {p.name for p in paths} == figures
    assert {p.name for p in out_dir.iterdir()} == figures
    for path in paths:
        assert path.parent == out_dir
        width, height = png_size(path)
        assert width > 300 and height > 300, f"{path.name} is {width}x{height}"


def test_write_plots_writes_seven_pngs_into_a_new_directory(results, inputs, tmp_path):
    out_dir = tmp_path / "nested" / "plots"
    assert_seven_images(write_plots(results, inputs[1], inputs[2], out_dir), out_dir)


def test_write_plots_without_solar_writes_the_five_pngs_without_solar(results_without_solar, inputs, tmp_path):
    paths = write_plots(results_without_solar, inputs[1], None, tmp_path)
    assert_seven_images(paths, tmp_path, FIGURES - SOLAR_FIGURES)


def test_write_plots_with_only_the_baseline_still_writes_its_pngs(inputs, tmp_path):
    only_baseline = _run(inputs, with_solar=False, policies=["immediate"])
    assert_seven_images(write_plots(only_baseline, inputs[1], None, tmp_path), tmp_path, FIGURES - SOLAR_FIGURES)


def test_starts_per_hour_counts_every_job_once(results, inputs):
    jobs = inputs[0]
    for records in results.values():
        counts = starts_per_hour(records)
        assert counts.shape == (24,)
        assert counts.sum() == len(jobs) == 110
    ready_hours = (jobs.ready_epoch_s // 3600) % 24
    assert np.array_equal(starts_per_hour(results["immediate"]), np.bincount(ready_hours, minlength=24))
    assert not np.array_equal(starts_per_hour(results["forecast"]), starts_per_hour(results["immediate"]))


def test_delays_are_zero_for_the_baseline_and_within_the_budget_otherwise(results):
    assert np.all(delays_h(results["immediate"]) == 0.0)
    for policy in ("threshold", "forecast", "oracle"):
        delays = delays_h(results[policy])
        assert delays.size == 110
        assert np.all(delays >= 0.0) and delays.max() <= 4.0
        assert np.sum(delays > 0) > 0
    assert np.sum(delays_h(results["threshold"]) > 0) == 37


def test_totals_equal_the_sums_over_records(results):
    totals = totals_kg(results)
    assert list(totals) == POLICIES
    for policy, records in results.items():
        total = totals[policy]
        grid_g = sum(r.energy_kwh * r.intensity_g_per_kwh for r in records)
        baseline_g = sum(r.energy_kwh * r.baseline_intensity_g_per_kwh for r in records)
        assert total.scheduled_kg == pytest.approx(grid_g / 1000.0)
        assert total.baseline_kg == pytest.approx(baseline_g / 1000.0)
        assert total.net_kg == pytest.approx(sum(r.emissions_g for r in records) / 1000.0)
        assert total.net_baseline_kg == pytest.approx(sum(r.baseline_emissions_g for r in records) / 1000.0)
        summary = summarize(policy, records)
        assert (total.scheduled_kg, total.net_kg) == pytest.approx((summary.scheduled_kg, summary.net_kg))
    assert totals["immediate"].scheduled_kg == pytest.approx(totals["immediate"].baseline_kg)
    assert totals["forecast"].net_kg < totals["immediate"].net_kg
    assert totals["immediate"].net_kg < totals["immediate"].scheduled_kg


def test_without_solar_net_equals_grid_only_and_no_solar_is_used(results_without_solar):
    for policy, total in totals_kg(results_without_solar).items():
        assert total.net_kg == pytest.approx(total.scheduled_kg)
        assert np.all(solar_kwh_per_hour(results_without_solar[policy]) == 0.0)


def test_solar_per_hour_adds_up_to_the_solar_used_and_only_in_daylight(results):
    for records in results.values():
        per_hour = solar_kwh_per_hour(records)
        assert per_hour.sum() == pytest.approx(sum(r.solar_kwh for r in records))
        assert np.all(per_hour[:7] == 0.0) and np.all(per_hour[19:] == 0.0)
    assert solar_kwh_per_hour(results["forecast"]).sum() > solar_kwh_per_hour(results["immediate"]).sum()


def test_intensities_at_execution_are_values_of_the_series(results, inputs):
    values = set(inputs[1].values)
    for records in results.values():
        ran_at = intensities_at_execution(records)
        assert ran_at.size == 110
        assert all(any(abs(v - known) < 1e-9 for known in values) for v in ran_at)
    assert intensities_at_execution(results["oracle"]).mean() < intensities_at_execution(results["immediate"]).mean()


def test_best_policy_is_the_lowest_net_non_baseline(results):
    best = best_policy(results)
    totals = totals_kg(results)
    assert best != "immediate"
    assert totals[best].net_kg == min(t.net_kg for p, t in totals.items() if p != "immediate")
    assert best_policy({"immediate": results["immediate"]}) == "immediate"


def test_time_span_covers_every_job_under_every_policy(results, inputs):
    start, end = time_span(results, inputs[1])
    for records in results.values():
        assert all(start <= r.ready_at and r.ended_at <= end for r in records)
    assert start == min(r.ready_at for r in results["immediate"])


def test_signal_note_flags_replayed_and_estimated_series(inputs):
    intensity = inputs[1]
    assert signal_note(intensity) == ""
    assert "replayed" in signal_note(replace(intensity, replayed=True))
    assert signal_note(replace(intensity, replayed=True, estimated=True)) == " (replayed, estimated carbon data)"


# --- without the [plots] extra ---

WITHOUT_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None; "  # what an install without the extra sees
INSTALL_HINT = "pip install 'airflow-carbon[plots]'"


def _without_matplotlib(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB + code], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_without_matplotlib_the_figures_are_refused_with_how_to_install_them(tmp_path):
    result = _without_matplotlib(
        "from airflow_carbon.errors import CarbonError, MissingExtraError\n"
        "try:\n    import airflow_carbon.simulate.plots\n"
        "except MissingExtraError as error:\n    print(isinstance(error, CarbonError), error)\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"True the figures need matplotlib: {INSTALL_HINT}"


def test_the_cli_asked_for_plots_without_matplotlib_says_how_to_install_them(tmp_path):
    args = ["simulate", str(DATA / "inference_jobs.csv"), str(DATA / "carbon_intensity.csv"), "--policy", "forecast",
            "--plots", str(tmp_path / "plots")]
    result = _without_matplotlib(f"from airflow_carbon.cli import main; sys.exit(main({args!r}))", tmp_path)
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == f"airflow-carbon: error: the figures need matplotlib: {INSTALL_HINT}"
    assert not (tmp_path / "plots").exists()
