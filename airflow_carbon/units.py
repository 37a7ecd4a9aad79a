"""Reading durations and instants that people type, the same way in DAGs, config and the CLI."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pandas as pd

#: The most energy one task or simulated job may declare, 1 TWh: beyond any task, and far below where its
#: emissions (energy x intensity, summed over a planning window) overflow a float to infinity.
MAX_ENERGY_KWH = 1e9

#: A number of days written ``1d``: pandas 3 deprecates the lower-case unit (pandas 4 refuses it), people write it.
_DAYS_LOWER = re.compile(r"(?<=\d)\s*d(?![a-z])", re.IGNORECASE)


def parse_duration(value: timedelta | str | float | int) -> timedelta:
    """``timedelta``, seconds, ``4h``, ``30min``, ``1h30m``, ``1d`` or ISO 8601 ``PT4H``; never negative.

    Every refusal is a ValueError quoting the value: NaN, NaT and infinities included, and a number of
    seconds too large for a ``timedelta``, which Python reports as an OverflowError of its own.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"not a duration: {value!r} (a finite number of seconds)")
        try:
            result = timedelta(seconds=value)
        except OverflowError:
            raise ValueError(f"duration {value!r} s is too long") from None
    elif isinstance(value, str):
        try:
            parsed = pd.Timedelta(_DAYS_LOWER.sub("D", value.strip()))
        except (ValueError, OverflowError):
            raise ValueError(f"not a duration: {value!r} (try 4h, 30min or PT4H)") from None
        if pd.isna(parsed):
            raise ValueError(f"not a duration: {value!r} (try 4h, 30min or PT4H)")
        result = parsed.to_pytimedelta()
    else:
        raise ValueError(f"not a duration: {value!r} (a timedelta, seconds, or text such as 4h)")
    if result < timedelta(0):
        raise ValueError(f"a duration must not be negative, got {value!r}")
    return result


def parse_instant(value: datetime | str, *, naive_is_utc: bool = False) -> datetime:
    """An aware UTC datetime from a datetime or ISO 8601 text (``Z`` included).

    What a person types without a timezone is refused, not guessed; data the package wrote itself, or
    a file and a database that hold naive UTC by convention, pass ``naive_is_utc=True``.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO 8601 instant: {value!r}") from None
    if not isinstance(value, datetime):
        raise ValueError(f"not an instant: {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        if not naive_is_utc:
            raise ValueError(f"instant {value.isoformat()} has no timezone; give one (e.g. +00:00)")
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 moved past the range of datetime by its offset
        raise ValueError(f"instant {value.isoformat()} is out of range in UTC") from None
