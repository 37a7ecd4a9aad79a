from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_carbon.signals.replay import DAY_S, WEEK_S, replay, replay_cycle_s
from airflow_carbon.signals.series import Series, from_epoch_s, to_epoch_s

MONDAY = datetime(2024, 6, 3, tzinfo=UTC)


def labelled_series(start: datetime, days: float, period_s: int = 3600) -> Series:
    """Each value encodes the weekday and time of day of its instant: weekday * 100_000 + seconds of day."""
    first_s = to_epoch_s(start)
    start_epoch_s = first_s + np.arange(int(days * DAY_S) // period_s, dtype=np.int64) * period_s
    weekday = ((start_epoch_s // DAY_S) + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
    return Series(
        start_epoch_s=start_epoch_s,
        values=weekday * 100_000 + start_epoch_s % DAY_S,
        period_s=period_s,
        region="DE",
        source="history.csv",
        estimated=True,
    )


def test_replay_keeps_time_of_day_and_weekday_when_the_source_spans_weeks():
    source = labelled_series(MONDAY + timedelta(hours=5), days=17, period_s=900)
    now = datetime(2026, 11, 26, 14, 7, tzinfo=UTC)
    replayed = replay(source, now)
    for instant, value in zip(replayed.times, replayed.values, strict=True):
        assert value == instant.weekday() * 100_000 + instant.hour * 3600 + instant.minute * 60


def test_replay_keeps_only_time_of_day_when_the_source_spans_days():
    source = labelled_series(MONDAY, days=3)
    assert replay_cycle_s(source) == 3 * DAY_S
    replayed = replay(source, datetime(2026, 11, 28, 9, 30, tzinfo=UTC))
    assert np.all(replayed.values % 100_000 == replayed.start_epoch_s % DAY_S)
    assert len(set((replayed.values // 100_000).tolist())) == 3


def test_cycle_is_the_most_whole_weeks_or_days():
    assert replay_cycle_s(labelled_series(MONDAY, days=20)) == 2 * WEEK_S
    assert replay_cycle_s(labelled_series(MONDAY, days=7)) == WEEK_S
    assert replay_cycle_s(labelled_series(MONDAY, days=6.5)) == 6 * DAY_S
    assert replay_cycle_s(labelled_series(MONDAY, days=1)) == DAY_S


def test_replay_covers_history_and_horizon_on_the_period_grid():
    source = labelled_series(MONDAY, days=8, period_s=1800)
    now = datetime(2026, 11, 26, 14, 7, 13, tzinfo=UTC)
    replayed = replay(source, now, horizon=timedelta(hours=48), history=timedelta(hours=6))
    from_s, until_s = to_epoch_s(now - timedelta(hours=6)), to_epoch_s(now + timedelta(hours=48))
    assert from_s - 1800 < replayed.first_epoch_s <= from_s
    assert until_s < replayed.end_epoch_s <= until_s + 1800
    assert np.all((replayed.start_epoch_s - source.first_epoch_s) % 1800 == 0)
    assert replayed.at(now) is not None


def test_replay_is_labelled_as_a_replayed_forecast():
    source = labelled_series(MONDAY, days=8)
    replayed = replay(source, datetime(2026, 1, 1, tzinfo=UTC))
    assert replayed.replayed is True
    assert replayed.kind == "forecast"
    assert replayed.source == "replay of history.csv"
    assert (replayed.region, replayed.unit, replayed.period_s) == (source.region, source.unit, source.period_s)
    assert replayed.estimated is True
    assert source.replayed is False


def test_replay_refuses_less_than_a_day_and_a_period_that_does_not_divide_a_day():
    with pytest.raises(ValueError, match="at least one day"):
        replay(labelled_series(MONDAY, days=0.5), datetime(2026, 1, 1, tzinfo=UTC))
    odd_period = Series(start_epoch_s=np.arange(0, 2 * DAY_S, 7 * 60), values=np.ones(412), period_s=7 * 60, region="X")
    with pytest.raises(ValueError, match="does not divide a day"):
        replay(odd_period, datetime(2026, 1, 1, tzinfo=UTC))


def test_replay_refuses_a_naive_now_and_a_negative_horizon():
    source = labelled_series(MONDAY, days=2)
    with pytest.raises(ValueError, match="naive"):
        replay(source, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="must not be negative"):
        replay(source, datetime(2026, 1, 1, tzinfo=UTC), horizon=timedelta(hours=-1))


@given(
    now=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    first_s=st.integers(min_value=0, max_value=2_000_000_000),
    period_s=st.sampled_from([300, 900, 1800, 3600]),
    days=st.integers(min_value=1, max_value=40),
    extra_periods=st.integers(min_value=0, max_value=47),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_value_at_now_is_the_source_value_at_the_mapped_instant(now, first_s, period_s, days, extra_periods, seed):
    first_s -= first_s % period_s
    length = days * DAY_S // period_s + extra_periods
    source = Series(
        start_epoch_s=first_s + np.arange(length, dtype=np.int64) * period_s,
        values=np.random.default_rng(seed).uniform(0, 1000, length),
        period_s=period_s,
        region="ANY",
    )
    cycle_s = replay_cycle_s(source)
    mapped = from_epoch_s(first_s + (to_epoch_s(now) - first_s) % cycle_s)

    assert replay(source, now).at(now) == source.at(mapped)
    assert (mapped.hour, mapped.minute, mapped.second) == (now.hour, now.minute, now.second)
    if days >= 7:
        assert mapped.weekday() == now.weekday()
