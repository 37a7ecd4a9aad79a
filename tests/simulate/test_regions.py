"""Time only, place only, time and place together, and the oracle over two small regions whose answer is known."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from airflow_carbon.signals import Series, SignalDataError
from airflow_carbon.simulate import Jobs, read_jobs_csv, simulate, simulate_regions, summarize_regions
from airflow_carbon.simulate.regions import MODES
from tests.helpers import T0, series

HOUR = timedelta(hours=1)
DAYS = 3


def hourly(region: str, day: list[float]) -> Series:
    """``day`` (24 hourly values) repeated over ``DAYS`` days."""
    return replace(series(day * DAYS), region=region)


def stream(hours: list[int], pinned: list[str] | None = None) -> Jobs:
    """One-hour jobs of 1 kWh, each ready at one of ``hours`` (hours after T0)."""
    count = len(hours)
    ready = int(T0.timestamp()) + 3600 * np.array(hours)
    return Jobs(np.array([f"j{i}" for i in range(count)]), ready, np.full(count, 3600.0), np.ones(count),
                np.arange(2, count + 2), "jobs.csv", None if pinned is None else np.array(pinned))


def run(jobs: Jobs, de: Series, fr: Series, max_delay: timedelta = 4 * HOUR, **options):
    results = simulate_regions(jobs, {"DE": de, "FR": fr}, max_delay=max_delay, **options)
    return results, {row.mode: row for row in summarize_regions(results)}


#: DE always dirty with a shallow dip at 03:00; FR always far cleaner.
DE_DIRTY = [400.0] * 3 + [350.0] + [400.0] * 20
FR_CLEAN = [60.0] * 24
#: The same daily dip at 04:00-06:00 in both, FR a little dirtier outside it.
DE_DIP = [400.0] * 4 + [100.0] * 2 + [400.0] * 18
FR_DIP = [420.0] * 4 + [100.0] * 2 + [420.0] * 18
HOURS = [0, 1, 2, 5, 20, 24, 25, 30]


def test_place_beats_time_when_one_region_is_always_cleaner():
    results, rows = run(stream(HOURS), hourly("DE", DE_DIRTY), hourly("FR", FR_CLEAN))
    assert rows["place"].saving_pct == pytest.approx(100 * (1 - 60 / 400), abs=2)
    assert 0 < rows["time"].saving_pct < rows["place"].saving_pct
    assert rows["place"].moved == len(HOURS) and rows["time"].moved == 0
    assert all(r.region == "FR" and r.record.delay_s == 0 for r in results["place"])
    assert rows["place"].time_kg == 0 and rows["time"].place_kg == 0


def test_time_beats_place_when_both_regions_share_the_same_daily_dip():
    results, rows = run(stream(HOURS), hourly("DE", DE_DIP), hourly("FR", FR_DIP))
    assert rows["place"].saving_pct == 0 and rows["place"].moved == 0  # FR is never cleaner when a job is ready
    assert {r.region for r in results["place"]} == {"DE"} and {r.record.delay_s for r in results["place"]} == {0}
    assert rows["time"].saving_pct > 30 and rows["time"].time_kg > 0
    assert rows["time+place"].saving_pct == pytest.approx(rows["time"].saving_pct)


@pytest.mark.parametrize("refresh", [None, timedelta(minutes=15)])
@pytest.mark.parametrize(("de", "fr"), [(DE_DIRTY, FR_CLEAN), (DE_DIP, FR_DIP),
                                        ([400.0] * 2 + [90.0] + [400.0] * 21, [200.0] * 6 + [50.0] + [200.0] * 17)])
def test_time_and_place_together_beat_each_alone_and_the_oracle_beats_all(de, fr, refresh):
    _, rows = run(stream(HOURS), hourly("DE", de), hourly("FR", fr), refresh=refresh)
    together, oracle = rows["time+place"].saving_pct, rows["oracle"].saving_pct
    assert together >= max(rows["time"].saving_pct, rows["place"].saving_pct) - 1e-9
    assert oracle >= together - 1e-9 and rows["oracle"].oracle_share == pytest.approx(1.0)
    assert all(row.deadline_misses == 0 for row in rows.values())
    assert [row.mode for row in rows.values()] == list(MODES)


def test_with_a_mixed_grid_the_best_uses_both_and_splits_the_saving():
    de = [400.0] * 2 + [90.0] + [400.0] * 21  # DE's dip is the cleanest hour of all, two hours after 00:00
    fr = [200.0] * 24
    results, _ = run(stream([0]), hourly("DE", de), hourly("FR", fr))
    assert results["place"][0].region == "FR" and results["time"][0].record.delay_s == 7200
    best = results["time+place"][0]
    assert best.region == "DE" and best.record.delay_s == 7200 and best.time_saved_g == pytest.approx(310)
    fr_late = [200.0] * 3 + [20.0] + [200.0] * 20  # now FR at 03:00 is cleaner still: time and place both save
    results, _ = run(stream([0]), hourly("DE", de), hourly("FR", fr_late))
    best = results["time+place"][0]
    assert best.region == "FR" and best.record.delay_s == 3 * 3600
    assert (best.time_saved_g, best.place_saved_g) == (pytest.approx(0.0), pytest.approx(380.0))


def test_the_split_parts_add_up_to_each_saving_and_no_deadline_is_missed():
    de = [400.0, 380.0, 90.0, 300.0, 250.0, 420.0] * 4
    fr = [200.0, 150.0, 210.0, 50.0, 260.0, 100.0] * 4
    results, rows = run(stream(HOURS), hourly("DE", de), hourly("FR", fr), max_delay=3 * HOUR,
                        refresh=timedelta(minutes=30))
    for mode, records in results.items():
        for r in records:
            assert r.time_saved_g + r.place_saved_g == pytest.approx(r.record.saved_g), mode
            assert r.record.started_at <= r.record.deadline and r.record.started_at >= r.record.ready_at
            assert r.place_saved_g == 0 or r.moved
        row = rows[mode]
        assert row.time_kg + row.place_kg == pytest.approx(row.baseline_kg - row.scheduled_kg)
        assert row.deadline_misses == 0


def test_a_pinned_job_stays_in_its_region_in_every_mode():
    jobs = stream([0, 0, 1], pinned=["", "de", "FR"])
    results, _ = run(jobs, hourly("DE", DE_DIRTY), hourly("FR", FR_CLEAN))
    for mode in MODES:
        free, pinned_de, pinned_fr = results[mode]
        assert free.region == "FR" or mode == "time"
        assert (pinned_de.region, pinned_de.home, pinned_de.place_saved_g) == ("DE", "DE", 0.0)
        assert (pinned_fr.region, pinned_fr.home) == ("FR", "FR")
        assert pinned_fr.record.baseline_emissions_g == pytest.approx(60.0)  # its baseline is its own region


def test_no_delay_leaves_place_only_and_time_saves_nothing():
    _, rows = run(stream(HOURS), hourly("DE", DE_DIRTY), hourly("FR", FR_CLEAN), max_delay=timedelta(0))
    assert rows["time"].saving_pct == 0 and rows["time"].delayed == 0
    assert rows["time+place"].saving_pct == pytest.approx(rows["place"].saving_pct) == rows["oracle"].saving_pct


@pytest.mark.parametrize(("forecast", "refresh"), [("perfect", timedelta(minutes=15)), ("noise:5%", None)])
def test_time_only_over_one_region_is_what_simulate_gives_the_forecast_policy(forecast, refresh):
    de = hourly("DE", [400.0, 380.0, 90.0, 300.0, 250.0, 420.0] * 4)
    jobs = stream(HOURS)
    expected = simulate(jobs, de, ["forecast"], max_delay=4 * HOUR, forecast=forecast, refresh=refresh, seed=3)
    got = simulate_regions(jobs, {"DE": de}, max_delay=4 * HOUR, forecast=forecast, refresh=refresh, seed=3,
                           modes=["time"])
    assert [r.record.started_at for r in got["time"]] == [r.started_at for r in expected["forecast"]]
    assert [r.record.emissions_g for r in got["time"]] == [r.emissions_g for r in expected["forecast"]]


def test_a_job_pinned_to_a_region_not_simulated_is_refused_naming_its_line():
    with pytest.raises(SignalDataError, match=r"jobs.csv, line 3, column 'region': job j1 is pinned to region 'ES'"):
        run(stream([0, 1], pinned=["", "ES"]), hourly("DE", DE_DIRTY), hourly("FR", FR_CLEAN))


def test_a_job_outside_a_candidate_regions_series_is_refused():
    short_fr = replace(series(FR_CLEAN), region="FR")  # one day only
    with pytest.raises(SignalDataError, match="j1 ready at"):
        run(stream([0, 30]), hourly("DE", DE_DIRTY), short_fr)


def test_a_region_column_in_a_jobs_file_pins_jobs(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("job_id,timestamp,energy_kwh,region\na,2024-06-01 00:00,1,\nb,2024-06-01 01:00,1, FR \n")
    assert read_jobs_csv(path).region.tolist() == ["", "FR"]
    path.write_text("job_id,timestamp,energy_kwh\na,2024-06-01 00:00,1\n")
    assert read_jobs_csv(path).region is None
