"""Checking a service's answer against its documented shape, and turning its points into a ``Series``.

Every refusal is a ``BadResponse`` naming the field (``data[3].point_time``), so a wrong answer says where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from airflow_carbon.signals.series import INTENSITY_UNIT, Kind, Series
from airflow_carbon.signals.services.errors import BadResponse
from airflow_carbon.units import parse_instant


class Shape:
    """Checks an answer's shape; every failure is a ``BadResponse`` naming the field."""

    def __init__(self, service: str, path: str):
        self.service, self.path = service, path

    def fail(self, field: str, reason: str) -> BadResponse:
        return BadResponse(f"{self.service}: GET {self.path}: {field} {reason}", service=self.service,
                           path=self.path, field=field)

    def obj(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, f"should be an object, got {type(value).__name__}")
        return value

    def items(self, value: Any, field: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(field, f"should be a list, got {type(value).__name__}")
        return value

    def key(self, mapping: dict[str, Any], key: str, field: str) -> Any:
        if key not in mapping:
            raise self.fail(f"{field}.{key}" if field else key, "is missing")
        return mapping[key]

    def text(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(field, f"should be a non-empty string, got {value!r:.40}")
        return value

    def instant(self, value: Any, field: str) -> int:
        """Epoch seconds of an ISO 8601 time (``Z``, ``+00:00``, ``.000Z``); every service states the timezone,
        so a time without one is refused rather than guessed."""
        if not isinstance(value, str):
            raise self.fail(field, f"should be an ISO 8601 time, got {value!r:.40}")
        try:
            return int(parse_instant(value).timestamp())
        except ValueError as error:
            raise self.fail(field, f"is refused: {error}") from None

    def number(self, value: Any, field: str) -> float:
        """A finite, non-negative number."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(field, f"should be a number, got {value!r:.40}")
        if not math.isfinite(value) or value < 0:
            raise self.fail(field, f"should be finite and not negative, got {value!r}")
        return float(value)

    def flag(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(field, f"should be true or false, got {value!r:.40}")
        return value


@dataclass
class Points:
    """Instants (epoch s) and values read from an answer, with the field name of each instant for errors."""

    starts: list[int]
    values: list[float]
    fields: list[str]

    @classmethod
    def empty(cls) -> Points:
        return cls([], [], [])

    def add(self, start: int, value: float, field: str) -> None:
        self.starts.append(start)
        self.values.append(value)
        self.fields.append(field)

    def extend_unique(self, other: Points) -> None:
        """Append ``other``'s points at instants not already held (chunks may share a boundary)."""
        seen = set(self.starts)
        for start, value, field in zip(other.starts, other.values, other.fields, strict=True):
            if start not in seen:
                seen.add(start)
                self.add(start, value, field)


def chunks(start: datetime, end: datetime, most: timedelta) -> list[tuple[datetime, datetime]]:
    """``[start, end]`` (aware) cut into pieces of at most ``most``, one request each; a piece ends where the next
    starts, so their answers share a boundary point that ``Points.extend_unique`` keeps once."""
    start, end = parse_instant(start), parse_instant(end)
    if end <= start:
        raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    pieces = []
    while start < end:
        stop = min(start + most, end)
        pieces.append((start, stop))
        start = stop
    return pieces


def build_series(points: Points, shape: Shape, *, period_s: int, region: str, kind: Kind, source: str,
                 estimated: bool = False) -> Series:
    """A series of values each holding ``period_s`` from ``points``, or a ``BadResponse`` naming the first point
    out of step (a gap, a repeat)."""
    if not points.starts:
        raise shape.fail("data", "is empty: no points in the answer")
    order = sorted(range(len(points.starts)), key=points.starts.__getitem__)
    starts = [points.starts[i] for i in order]
    for i in range(1, len(order)):
        step = starts[i] - starts[i - 1]
        if step != period_s:
            what = "repeats an instant" if step == 0 else (
                f"is {step} s after the previous point, expected {period_s} s"
                + (" (a gap)" if step > period_s else ""))
            raise shape.fail(points.fields[order[i]], what)
    return Series(np.asarray(starts, dtype=np.int64), np.asarray([points.values[i] for i in order], dtype=np.float64),
                  period_s, region, INTENSITY_UNIT, kind, source, False, estimated)
