"""The series every source produces: evenly spaced values, each holding for its period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from airflow_carbon.signals.series import INTENSITY_UNIT, Series, combine, from_epoch_s, to_epoch_s
from tests.helpers import T0, series

HOUR = timedelta(hours=1)
T0_S = int(T0.timestamp())


# --- construction ---


def test_a_series_holds_int64_instants_float_values_and_the_edges_of_its_periods():
    s = Series([T0_S, T0_S + 1800, T0_S + 3600], [300, 250, 0], 1800, "DE")
    assert s.start_epoch_s.dtype == np.int64 and s.values.dtype == np.float64
    assert len(s) == 3 and s.unit == INTENSITY_UNIT and s.kind == "measured"
    assert list(s.bounds_epoch_s) == [T0_S, T0_S + 1800, T0_S + 3600, T0_S + 5400]
    assert (s.first_epoch_s, s.end_epoch_s) == (T0_S, T0_S + 5400)
    assert s.times == [T0, T0 + timedelta(minutes=30), T0 + HOUR]
    assert all(t.tzinfo is UTC for t in s.times)


def test_an_empty_series_is_allowed_and_knows_nothing():
    empty = Series([], [], 3600, "DE")
    assert len(empty) == 0 and len(empty.bounds_epoch_s) == 0
    assert empty.at(T0) is None
    assert len(empty.between(T0, T0 + HOUR)) == 0


@pytest.mark.parametrize(("starts", "values", "period_s", "message"), [
    ([0, 3600], [1.0], 3600, "2 instants but 1 values"),
    ([0, 3600], [1.0, 2.0], 0, "period must be positive"),
    ([0, 3600, 9000], [1.0, 2.0, 3.0], 3600, "not evenly spaced by 3600 s"),
    ([3600, 0], [1.0, 2.0], 3600, "not evenly spaced"),
    ([0, 3600], [1.0, -0.5], 3600, "finite and not negative"),
    ([0, 3600], [1.0, float("nan")], 3600, "finite and not negative"),
    ([0, 3600], [float("inf"), 1.0], 3600, "finite and not negative"),
])
def test_a_series_that_breaks_its_invariants_is_refused_naming_its_region(starts, values, period_s, message):
    with pytest.raises(ValueError, match=message) as caught:
        Series(starts, values, period_s, "FR")
    assert "'FR'" in str(caught.value)


# --- reading values ---


def test_a_value_holds_from_its_instant_to_the_next():
    s = series([300, 200, 100])
    assert s.at(T0) == 300
    assert s.at(T0 + HOUR - timedelta(seconds=1)) == 300
    assert s.at(T0 + HOUR) == 200
    assert s.at(T0 + 3 * HOUR - timedelta(seconds=1)) == 100


def test_outside_the_series_there_is_no_value():
    s = series([300, 200, 100])
    assert s.at(T0 - timedelta(seconds=1)) is None
    assert s.at(T0 + 3 * HOUR) is None


def test_at_takes_any_timezone_and_refuses_naive_instants():
    s = series([300, 200])
    assert s.at(datetime(2024, 6, 1, 3, 0, tzinfo=timezone(timedelta(hours=2)))) == 200  # 01:00 UTC
    with pytest.raises(ValueError, match="naive datetime"):
        s.at(datetime(2024, 6, 1, 1))


def test_between_keeps_every_period_that_overlaps_the_interval():
    s = series([10, 20, 30, 40, 50], source="file.csv", kind="forecast", estimated=True)
    part = s.between(T0 + HOUR + timedelta(minutes=30), T0 + 3 * HOUR + timedelta(minutes=1))
    assert list(part.values) == [20, 30, 40]
    assert part.first_epoch_s == T0_S + 3600 and part.end_epoch_s == T0_S + 4 * 3600
    assert (part.region, part.source, part.kind, part.estimated) == ("TEST", "file.csv", "forecast", True)


def test_between_excludes_the_period_starting_at_its_end_and_the_one_ending_at_its_start():
    s = series([10, 20, 30, 40])
    assert list(s.between(T0 + HOUR, T0 + 3 * HOUR).values) == [20, 30]
    assert len(s.between(T0 + 4 * HOUR, T0 + 5 * HOUR)) == 0
    assert len(s.between(T0 - 2 * HOUR, T0)) == 0
    assert list(s.between(T0 - HOUR, T0 + 10 * HOUR).values) == [10, 20, 30, 40]


# --- combining what was measured with what is forecast ---


def test_combine_keeps_the_past_before_the_forecast_and_the_forecast_where_both_know():
    past = series([1, 2, 3, 4], kind="measured")
    ahead = series([30, 40, 50], start=T0 + 2 * HOUR, kind="forecast", source="service")
    both = combine(past, ahead)
    assert list(both.values) == [1, 2, 30, 40, 50]
    assert both.first_epoch_s == T0_S and both.end_epoch_s == T0_S + 5 * 3600
    assert (both.kind, both.source) == ("forecast", "service")


def test_combine_is_estimated_when_either_part_is():
    ahead = series([30], start=T0 + HOUR)
    assert combine(series([1], estimated=True), ahead).estimated
    assert not combine(series([1]), ahead).estimated


def test_combine_returns_the_forecast_alone_rather_than_a_series_with_a_hole():
    ahead = series([30, 40], start=T0 + 3 * HOUR)
    assert combine(series([1, 2]), ahead) is ahead  # a gap of an hour between them
    assert combine(series([1, 2], period_s=1800), ahead) is ahead  # another period
    assert combine(series([1, 2], start=T0 + timedelta(minutes=10)), ahead) is ahead  # another grid


def test_combine_with_an_empty_side_is_the_other_side():
    full, empty = series([1, 2]), Series([], [], 3600, "TEST")
    assert combine(empty, full) is full
    assert combine(full, empty) is full


# --- epoch helpers ---


def test_epoch_seconds_round_trip_through_aware_utc_datetimes():
    paris = datetime(2024, 6, 1, 2, 30, tzinfo=timezone(timedelta(hours=2)))
    assert to_epoch_s(paris) == T0_S + 1800
    assert from_epoch_s(T0_S + 1800) == T0 + timedelta(minutes=30)
    assert from_epoch_s(T0_S).tzinfo is UTC
    assert to_epoch_s(from_epoch_s(T0_S + 59)) == T0_S + 59


def test_to_epoch_s_refuses_a_naive_datetime_instead_of_guessing_its_zone():
    with pytest.raises(ValueError, match="naive datetime 2024-06-01T00:00:00 has no timezone"):
        to_epoch_s(datetime(2024, 6, 1))
