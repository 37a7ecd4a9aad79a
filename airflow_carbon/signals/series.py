"""The one series type every source produces and every planner reads.

Instants are int64 seconds since the epoch (UTC), so planning is plain numpy arithmetic;
datetimes appear only at the edges (``times``, ``at``). A value at ``t`` holds for
``[t, t + period_s)`` and the instants are evenly spaced: readers refuse gaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from airflow_carbon.errors import CarbonError

INTENSITY_UNIT = "gCO2eq/kWh"
SOLAR_UNIT = "kW"

Kind = Literal["forecast", "measured"]


class SignalDataError(CarbonError, ValueError):
    """Input that cannot be a series; the message names the file, line and column."""

    def __init__(self, message: str, *, path: str = "", line: int | None = None, column: str | None = None):
        self.path, self.line, self.column = path, line, column
        parts = (path, f"line {line}" if line else "", f"column {column!r}" if column else "")
        where = [part for part in parts if part]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


def to_epoch_s(instant: datetime) -> int:
    """Seconds since the epoch for an aware datetime; naive ones are refused, not guessed."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()} has no timezone; pass an aware (UTC) datetime")
    return int(instant.timestamp())


def from_epoch_s(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(float(epoch_s), tz=UTC)


@dataclass(frozen=True, eq=False)
class Series:
    """Evenly spaced values: carbon intensity (gCO2eq/kWh) or on-site solar power (kW).

    :param start_epoch_s: the instant each value starts to hold, UTC seconds, strictly increasing.
    :param values: one float per instant, never negative or NaN.
    :param period_s: how long each value holds.
    :param region: grid region or zone (``DE``, ``CAISO_NORTH``) or the site for solar.
    :param unit: ``gCO2eq/kWh`` or ``kW``.
    :param kind: ``forecast`` or ``measured``.
    :param source: where the values came from (a file, a service), for the record.
    :param replayed: a historical series mapped onto the present (see ``replay``).
    :param estimated: any value was estimated rather than measured or forecast by the source.
    """

    start_epoch_s: np.ndarray
    values: np.ndarray
    period_s: int
    region: str
    unit: str = INTENSITY_UNIT
    kind: Kind = "measured"
    source: str = ""
    replayed: bool = False
    estimated: bool = False
    _bounds: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        starts = np.asarray(self.start_epoch_s, dtype=np.int64)
        values = np.asarray(self.values, dtype=np.float64)
        if starts.ndim != 1 or starts.shape != values.shape:
            raise ValueError(f"series for {self.region!r}: {starts.size} instants but {values.size} values")
        if self.period_s <= 0:
            raise ValueError(f"series for {self.region!r}: period must be positive, got {self.period_s} s")
        if starts.size and np.any(np.diff(starts) != self.period_s):
            raise ValueError(f"series for {self.region!r}: instants are not evenly spaced by {self.period_s} s")
        if np.any(~np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"series for {self.region!r}: values must be finite and not negative")
        object.__setattr__(self, "start_epoch_s", starts)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "_bounds", np.append(starts, starts[-1] + self.period_s) if starts.size else starts)

    def __len__(self) -> int:
        return int(self.values.size)

    @property
    def bounds_epoch_s(self) -> np.ndarray:
        """The ``len + 1`` edges of the periods: value ``i`` holds on ``[bounds[i], bounds[i + 1])``."""
        return self._bounds

    @property
    def first_epoch_s(self) -> int:
        return int(self._bounds[0])

    @property
    def end_epoch_s(self) -> int:
        """The instant the last value stops holding: the series knows nothing from here on."""
        return int(self._bounds[-1])

    @property
    def times(self) -> list[datetime]:
        return [from_epoch_s(t) for t in self.start_epoch_s]

    def at(self, instant: datetime) -> float | None:
        """The value holding at ``instant``, or None outside the series."""
        epoch_s = to_epoch_s(instant)
        if not len(self) or not self.first_epoch_s <= epoch_s < self.end_epoch_s:
            return None
        return float(self.values[(epoch_s - self.first_epoch_s) // self.period_s])

    def between(self, start: datetime, end: datetime) -> Series:
        """The periods that overlap ``[start, end)``."""
        first = np.searchsorted(self._bounds[1:], to_epoch_s(start), side="right")
        last = np.searchsorted(self.start_epoch_s, to_epoch_s(end), side="left")
        return replace(self, start_epoch_s=self.start_epoch_s[first:last], values=self.values[first:last])


    def to_json(self) -> dict[str, Any]:
        """Plain JSON, for a trigger event that hands a short series (a solar forecast) to its task."""
        return {"first_epoch_s": self.first_epoch_s if len(self) else None, "period_s": self.period_s,
                "values": [float(value) for value in self.values], "region": self.region, "unit": self.unit,
                "kind": self.kind, "source": self.source, "replayed": self.replayed, "estimated": self.estimated}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Series:
        """The inverse of ``to_json``; the values are checked as any series' are."""
        values = np.asarray(data["values"], dtype=np.float64)
        first = int(data["first_epoch_s"] or 0)
        period_s = int(data["period_s"])
        return cls(first + period_s * np.arange(values.size, dtype=np.int64), values, period_s, str(data["region"]),
                   str(data["unit"]), data["kind"], str(data["source"]), bool(data["replayed"]),
                   bool(data["estimated"]))


def combine(past: Series, ahead: Series) -> Series:
    """One series from what was measured and what is forecast: the forecast wins where both know a period.

    Both must share a period grid; if they leave a gap between them, the forecast alone is returned,
    since a series cannot have holes.
    """
    if not len(past) or not len(ahead):
        return ahead if len(ahead) else past
    if past.period_s != ahead.period_s or (ahead.first_epoch_s - past.first_epoch_s) % past.period_s:
        return ahead
    keep = past.start_epoch_s < ahead.first_epoch_s
    if keep.any() and past.start_epoch_s[keep][-1] + past.period_s != ahead.first_epoch_s:
        return ahead
    return replace(ahead, start_epoch_s=np.concatenate((past.start_epoch_s[keep], ahead.start_epoch_s)),
                   values=np.concatenate((past.values[keep], ahead.values)),
                   estimated=ahead.estimated or past.estimated)
