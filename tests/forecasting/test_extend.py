"""A source's series carried past its end by a forecaster, fed only with what was measured before now."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from airflow_carbon.forecasting.extend import NO_FORECASTER, check_forecaster, covers, extend, horizon_for
from airflow_carbon.signals import Series
from airflow_carbon.signals.bundled import bundled_intensity
from airflow_carbon.signals.series import from_epoch_s

DAY_S = 86_400


@pytest.fixture(scope="module")
def de() -> Series:
    return bundled_intensity("DE")


def _until(series: Series, end_s: int) -> Series:
    keep = series.start_epoch_s < end_s
    return replace(series, start_epoch_s=series.start_epoch_s[keep], values=series.values[keep])


def test_a_measured_history_that_ends_now_is_carried_to_the_horizon_and_names_its_forecaster(de):
    now_s = de.first_epoch_s + 100 * DAY_S + 9 * 3600
    history = _until(de, now_s + de.period_s)  # a live CSV: the period holding now is its last
    extended = extend(history, from_epoch_s(now_s), timedelta(hours=30), "seasonal")
    assert extended.forecaster == "seasonal"
    assert covers(extended.series, from_epoch_s(now_s + 30 * 3600))
    np.testing.assert_array_equal(extended.series.values[:len(history)], history.values)
    assert extended.series.source == f"{history.source}, then seasonal forecast from its history"
    assert extended.series.kind == "forecast" and extended.series.estimated
    assert extended.upper is not None and len(extended.upper) == len(extended.series)
    ahead = slice(len(history), None)
    assert np.all(extended.upper.values[ahead] >= extended.series.values[ahead])
    assert np.any(extended.upper.values[ahead] > extended.series.values[ahead])  # an interval, not a copy


def test_the_part_a_forecaster_adds_never_reads_the_sources_own_values_after_now(de):
    now_s = de.first_epoch_s + 60 * DAY_S + 15 * 3600
    with_forecast = _until(de, now_s + 2 * 3600)  # a service whose own forecast reaches two hours ahead
    issued = extend(with_forecast, from_epoch_s(now_s), timedelta(hours=24), "model")
    later = with_forecast.start_epoch_s > now_s
    changed = replace(with_forecast, values=np.where(later, 9999.0, with_forecast.values))
    again = extend(changed, from_epoch_s(now_s), timedelta(hours=24), "model")
    added = slice(len(with_forecast), None)
    np.testing.assert_array_equal(again.series.values[added], issued.series.values[added])
    assert np.all(again.series.values[later.nonzero()[0]] == 9999.0)  # the source's own forecast stands


def test_a_history_too_short_for_the_chosen_forecaster_falls_back_to_a_simpler_one(de):
    now_s = de.first_epoch_s + 40 * DAY_S + 3600
    three_days = _until(de, now_s + de.period_s)
    three_days = replace(three_days, start_epoch_s=three_days.start_epoch_s[-(3 * DAY_S // de.period_s):],
                         values=three_days.values[-(3 * DAY_S // de.period_s):])
    extended = extend(three_days, from_epoch_s(now_s), timedelta(hours=12), "model")
    assert extended.forecaster == "seasonal"  # model fits on two weeks at least


def test_too_little_history_none_or_a_series_that_already_reaches_the_horizon_are_left_alone(de):
    now_s = de.first_epoch_s + 40 * DAY_S
    hours = _until(de, now_s + de.period_s)
    hours = replace(hours, start_epoch_s=hours.start_epoch_s[-8:], values=hours.values[-8:])
    assert extend(hours, from_epoch_s(now_s), timedelta(hours=6), "seasonal").series is hours
    assert extend(de, from_epoch_s(now_s), timedelta(hours=6), "seasonal").forecaster is None
    assert extend(_until(de, now_s + 600), from_epoch_s(now_s), timedelta(hours=6), NO_FORECASTER).forecaster is None


def test_forecaster_names_are_checked_and_horizons_rounded_up_to_whole_days():
    assert check_forecaster(" Seasonal ") == "seasonal"
    with pytest.raises(ValueError, match="unknown forecaster 'prophet'; choose from persistence, seasonal, model"):
        check_forecaster("prophet")
    now = from_epoch_s(0)
    assert horizon_for(now, now + timedelta(hours=4)) == timedelta(days=1)
    assert horizon_for(now, now + timedelta(hours=25)) == timedelta(days=2)
