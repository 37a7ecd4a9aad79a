"""What a task that declares nothing is planned on: the medians of its history, else the defaults; declared wins."""

from __future__ import annotations

from datetime import timedelta

from airflow_carbon.planning.expectation import NO_HISTORY, History, expect

THREE = History(durations_s=(60.0, 600.0, 90.0), energies_kwh=(0.002, 0.5, 0.003))


def test_a_task_that_declares_nothing_is_planned_on_the_medians_of_its_tries():
    expectation = expect(THREE, duration_declared=False, energy_declared=False)
    assert expectation.duration == timedelta(seconds=90)  # the median: the one try that hung does not move it
    assert expectation.energy_kwh == 0.003
    assert expectation.expected_from == "history (n=3)"


def test_a_declared_value_always_wins_and_the_other_is_learned():
    duration_only = expect(THREE, duration_declared=True, energy_declared=False)
    assert (duration_only.duration, duration_only.energy_kwh) == (None, 0.003)
    assert duration_only.expected_from == "duration: declared; energy: history (n=3)"
    both = expect(THREE, duration_declared=True, energy_declared=True)
    assert (both.duration, both.energy_kwh, both.expected_from) == (None, None, "declared")


def test_no_history_keeps_the_defaults_and_says_so():
    expectation = expect(NO_HISTORY, duration_declared=False, energy_declared=False)
    assert (expectation.duration, expectation.energy_kwh) == (None, None)
    assert expectation.expected_from == "defaults (no history)"


def test_a_history_with_no_metered_energy_teaches_the_duration_only():
    expectation = expect(History(durations_s=(30.0, 40.0)), duration_declared=False, energy_declared=False)
    assert (expectation.duration, expectation.energy_kwh) == (timedelta(seconds=35), None)
    assert expectation.expected_from == "duration: history (n=2); energy: defaults (no metered history)"


def test_a_history_of_instant_tries_still_plans_a_positive_duration():
    assert expect(History(durations_s=(0.0,)), duration_declared=False, energy_declared=True).duration == timedelta(
        seconds=1)
