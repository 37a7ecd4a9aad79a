"""Historical series mapped onto the present, so bundled data can drive live DAGs today."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np

from airflow_carbon.signals.series import Series, to_epoch_s

DAY_S = 86_400
WEEK_S = 7 * DAY_S


def replay_cycle_s(series: Series) -> int:
    """The length of the cycle replay repeats: the most whole weeks the series spans, else whole days."""
    span_s = series.end_epoch_s - series.first_epoch_s if len(series) else 0
    if span_s < DAY_S:
        raise ValueError(
            f"series for {series.region!r} spans {span_s} s: replay needs at least one day to keep the time of day"
        )
    if DAY_S % series.period_s:
        raise ValueError(
            f"series for {series.region!r} has a period of {series.period_s} s, which does not divide a day; "
            "replay could not keep the time of day"
        )
    unit_s = WEEK_S if span_s >= WEEK_S else DAY_S
    return span_s // unit_s * unit_s


def replay(
    series: Series,
    now: datetime,
    horizon: timedelta = timedelta(hours=72),
    history: timedelta = timedelta(hours=24),
) -> Series:
    """The series repeated onto ``[now - history, now + horizon]`` as a forecast labelled ``replayed``.

    The instants stay on the series' period grid. Each takes the value the source had at the same
    time of day and, when the source spans at least a week, the same day of the week: the source is
    cut to the most whole weeks it spans (or, under a week, whole days, keeping only the time of day)
    and repeated. A source spanning less than a day, or whose period does not divide a day, is refused.
    """
    if horizon < timedelta(0) or history < timedelta(0):
        raise ValueError(f"horizon and history must not be negative, got {horizon} and {history}")
    cycle_s = replay_cycle_s(series)
    period_s, first_s = series.period_s, series.first_epoch_s
    from_s = to_epoch_s(now) - history // timedelta(seconds=1)
    until_s = to_epoch_s(now) + horizon // timedelta(seconds=1)
    first_index = (from_s - first_s) // period_s
    last_index = (until_s - first_s) // period_s
    start_epoch_s = first_s + np.arange(first_index, last_index + 1, dtype=np.int64) * period_s
    source_index = (start_epoch_s - first_s) % cycle_s // period_s
    return replace(
        series,
        start_epoch_s=start_epoch_s,
        values=series.values[source_index],
        kind="forecast",
        source=f"replay of {series.source}",
        replayed=True,
    )
