"""The best (region, start) among candidate regions, penalties counted, and the saving split into time and place."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from airflow_carbon.planning import Job, PolicySettings
from airflow_carbon.planning.regions import Candidate, choose_region, split_saving
from airflow_carbon.signals import Series
from tests.helpers import T0, series

HOUR = timedelta(hours=1)
JOB = Job(HOUR, 1.0)
EAGER = PolicySettings(min_saving_pct=0, risk_aversion=0, replan_margin_pct=0)


def hourly(region: str, values: list[float]) -> Series:
    return replace(series(values), region=region)


def plan(*candidates: Candidate, policy: str = "forecast", max_delay: timedelta = 4 * HOUR):
    return choose_region(policy, candidates, now=T0, deadline=T0 + max_delay, job=JOB, settings=EAGER)


def test_the_least_emitting_region_and_start_win_across_all_candidates():
    de = Candidate("DE", hourly("DE", [400, 300, 350, 380, 390, 400, 400, 400]))
    fr = Candidate("FR", hourly("FR", [90, 80, 40, 60, 70, 90, 90, 90]))
    chosen = plan(de, fr)
    assert (chosen.region, chosen.home) == ("FR", "DE")
    assert chosen.decision.start == T0 + 2 * HOUR and chosen.expected_g == {"DE": 300.0, "FR": 40.0}
    assert chosen.baseline_g == 400.0 and chosen.now_g == {"DE": 400.0, "FR": 90.0} and chosen.failed == ()


def test_a_penalty_keeps_the_work_home_unless_the_other_region_saves_enough():
    de = Candidate("DE", hourly("DE", [100, 100, 100, 100, 100, 100]))
    assert plan(de, Candidate("FR", hourly("FR", [85] * 6), penalty_pct=25)).region == "DE"  # saves 15% < 20%
    assert plan(de, Candidate("FR", hourly("FR", [75] * 6), penalty_pct=25)).region == "FR"  # saves 25%
    tie = plan(de, Candidate("FR", hourly("FR", [100] * 6)))
    assert tie.region == "DE"  # a tie stays home


def test_place_only_runs_now_in_the_cleanest_region():
    de = Candidate("DE", hourly("DE", [400, 100, 100, 100, 100, 100]))
    fr = Candidate("FR", hourly("FR", [200, 50, 50, 50, 50, 50]))
    chosen = plan(de, fr, policy="immediate")
    assert chosen.region == "FR" and chosen.decision.run_now and chosen.expected_g == {"DE": 400.0, "FR": 200.0}


def test_a_failed_region_is_skipped_and_recorded_and_all_failed_plans_home_alone():
    fr = Candidate("FR", hourly("FR", [90] * 6))
    chosen = plan(Candidate("DE", None), fr)
    assert chosen.region == "FR" and chosen.failed == ("DE",) and chosen.baseline_g is None
    alone = plan(Candidate("DE", None), Candidate("FR", None))
    assert alone.region == "DE" and alone.failed == ("DE", "FR")
    assert alone.decision.reason == "signal_unavailable" and alone.decision.start == T0 + 4 * HOUR  # its deadline


def test_bad_candidates_are_refused():
    with pytest.raises(ValueError, match="at least one candidate"):
        plan()
    with pytest.raises(ValueError, match="must differ"):
        plan(Candidate("DE", None), Candidate("DE", None))
    with pytest.raises(ValueError, match="penalty_pct must be >= 0"):
        Candidate("FR", None, penalty_pct=-5)


@pytest.mark.parametrize(("baseline", "home_at_start", "chosen"), [(400, 300, 40), (400, 450, 40), (100, 80, 120)])
def test_the_saving_splits_into_time_and_place_that_add_up(baseline, home_at_start, chosen):
    time_g, place_g = split_saving(baseline, home_at_start, chosen)
    assert time_g + place_g == pytest.approx(baseline - chosen)
    assert time_g == baseline - home_at_start and place_g == home_at_start - chosen
