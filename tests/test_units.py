"""Durations and instants as people type them: in DAGs, in ``[carbon]``, on the command line."""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime, timedelta, timezone

import pytest

from airflow_carbon.units import parse_duration, parse_instant


@pytest.mark.parametrize(("value", "expected"), [
    (timedelta(hours=2), timedelta(hours=2)),
    (90, timedelta(seconds=90)),
    (1.5, timedelta(seconds=1.5)),
    ("4h", timedelta(hours=4)),
    ("30min", timedelta(minutes=30)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    (" 45s ", timedelta(seconds=45)),
    ("PT4H", timedelta(hours=4)),
    ("P1DT2H", timedelta(days=1, hours=2)),
    ("1d", timedelta(days=1)),
    ("1d12h", timedelta(days=1, hours=12)),
    ("2 d", timedelta(days=2)),
    ("3 days", timedelta(days=3)),
    (0, timedelta(0)),
])
def test_durations_in_every_accepted_spelling(value, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a spelling pandas deprecates (``1d``) would break with pandas 4
        assert parse_duration(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("four hours", "not a duration: 'four hours'"),
    ("", "not a duration: ''"),
    (True, "not a duration: True"),
    (None, "not a duration: None"),
    ([4], r"not a duration: \[4\]"),
    (-1, "must not be negative"),
    ("-2h", "must not be negative"),
    (timedelta(minutes=-5), "must not be negative"),
    ("nan", "not a duration: 'nan'"),
    ("NaT", "not a duration: 'NaT'"),
    (float("nan"), "not a duration: nan"),
    (float("inf"), "not a duration: inf"),
    ("inf", "not a duration: 'inf'"),
    (1e308, r"duration 1e\+308 s is too long"),
    (10**30, "duration 1000000000000000000000000000000 s is too long"),
    ("106752d", "not a duration: '106752d'"),
])
def test_what_is_not_a_duration_is_refused_quoting_the_value(value, message):
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


@pytest.mark.parametrize("text", ["2024-06-01T12:00:00Z", "2024-06-01T12:00:00+00:00", "2024-06-01T14:00:00+02:00",
                                  " 2024-06-01T07:00:00-05:00 "])
def test_instants_in_iso_8601_with_a_zone_become_utc(text):
    instant = parse_instant(text)
    assert instant == datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert instant.tzinfo is UTC


def test_an_aware_datetime_is_converted_to_utc():
    instant = parse_instant(datetime(2024, 6, 1, 14, tzinfo=timezone(timedelta(hours=2))))
    assert instant == datetime(2024, 6, 1, 12, tzinfo=UTC) and instant.tzinfo is UTC


@pytest.mark.parametrize("value", ["2024-06-01T12:00:00", "2024-06-01", datetime(2024, 6, 1, 12)])
def test_a_naive_instant_is_refused_unless_the_caller_says_naive_means_utc(value):
    with pytest.raises(ValueError, match="has no timezone"):
        parse_instant(value)
    instant = parse_instant(value, naive_is_utc=True)
    assert instant.tzinfo is UTC
    assert instant.replace(tzinfo=None) == (value if isinstance(value, datetime) else datetime.fromisoformat(value))


def test_naive_is_utc_leaves_an_instant_with_a_zone_alone():
    assert parse_instant("2024-06-01T14:00:00+02:00", naive_is_utc=True) == datetime(2024, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(("value", "message"), [
    ("yesterday", "not an ISO 8601 instant: 'yesterday'"),
    ("2024-13-01T00:00:00Z", "not an ISO 8601 instant"),
    (1717243200, "not an instant: 1717243200"),
    (None, "not an instant: None"),
])
def test_what_is_not_an_instant_is_refused_quoting_the_value(value, message):
    with pytest.raises(ValueError, match=message):
        parse_instant(value)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_an_instant_that_leaves_the_range_of_datetime_in_utc_is_a_value_error(text):
    with pytest.raises(ValueError, match=re.escape(f"instant {text} is out of range in UTC")):
        parse_instant(text)
