"""On-site solar (PV) as a second signal beside the grid's: the CSV kind of solar source (the protocol is in source.py).

A solar source says what a site's panels will give (a forecast in kW, night being 0 kW, not a gap) and,
when something logs them, what they gave (measured kW). Sources register with ``quantity = "solar"``
(see ``airflow_carbon.signals.source``) and are opened with ``aopen(ref, ..., quantity="solar")``.

Files read here (all times UTC; naive timestamps are UTC):

- a forecast in the seed's shape, ``timestamp,solar_kw_available`` (kW);
- a normalised profile, ``time,<column>,...``: ``time`` in seconds from the profile's start, values
  0..1 of the peak (the dos-group/vessim example data); the connection names the ``column`` and the
  ``peak_kw``, and the profile's start is the extra's ``start`` or else 1970-01-01T00:00Z;
- a logger's file of measured output, ``timestamp,solar_kw`` (or ``solar_kw_available``), appended to
  while it is read: one row per logging period, and a last line without its newline is still being
  written and is ignored. Only the rows around the interval asked for are parsed (found by bisection),
  so a file that grows for years stays cheap to read.
"""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from airflow_carbon.signals.csv import (
    HEADER_LINE,
    PathLike,
    check_time_axis,
    find_column,
    header_of,
    normalise_header,
    parse_non_negative_column,
    parse_utc_column,
    read_csv_table,
    read_solar_csv,
)
from airflow_carbon.signals.replay import replay
from airflow_carbon.signals.series import SOLAR_UNIT, Series, SignalDataError, from_epoch_s, to_epoch_s
from airflow_carbon.signals.source import SourceConfig, register
from airflow_carbon.units import parse_instant

#: Where a profile's ``time`` 0 is when the connection gives no ``start``.
PROFILE_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FORECAST_TIME = ("timestamp",)
_PROFILE_TIME = ("time",)
_LOG_POWER = ("solar_kw", "solar_kw_available")


def describe_forecast(series: Series) -> str:
    """One line for a connection test: the forecast's peak and its span."""
    if not len(series):
        return f"{series.region}: no forecast values from {series.source}"
    peak = int(np.argmax(series.values))
    return (f"{series.region}: peak {series.values[peak]:.2f} kW at "
            f"{from_epoch_s(series.start_epoch_s[peak]).isoformat()}, {len(series)} values every {series.period_s} s "
            f"from {from_epoch_s(series.first_epoch_s).isoformat()} to {from_epoch_s(series.end_epoch_s).isoformat()} "
            f"({series.source})")


# ------------------------------------------------------------------------------------------ forecast files


def read_solar_profile(path: PathLike, column: str, peak_kw: float, start: datetime = PROFILE_EPOCH,
                       site: str = "site") -> Series:
    """A normalised profile (``time,<columns>``, values 0..1 of peak) as kW: ``column`` times ``peak_kw``.

    ``time`` is whole seconds from ``start``; the rows must be evenly spaced.
    """
    frame, lines = read_csv_table(path, {"time": _PROFILE_TIME, "fraction": (column,)})
    offsets_s = parse_non_negative_column(frame, "time", lines, path)
    _refuse_first(offsets_s != np.floor(offsets_s), frame, "time", lines, path, "not a whole number of seconds")
    fractions = parse_non_negative_column(frame, "fraction", lines, path)
    _refuse_first(fractions > 1.0, frame, "fraction", lines, path,
                  "above 1: a normalised profile holds fractions of the peak, 0 to 1")
    epoch_s = to_epoch_s(start) + offsets_s.astype(np.int64)
    period_s = check_time_axis(epoch_s, lines, path, header_of(frame, "time"))
    return Series(epoch_s, fractions * peak_kw, period_s, site, SOLAR_UNIT, "forecast", str(path))


def _refuse_first(bad: np.ndarray, frame: pd.DataFrame, column: str, lines: np.ndarray, path: PathLike,
                  reason: str) -> None:
    if bad.any():
        row = int(np.argmax(bad))
        raise SignalDataError(f"{frame[column].iloc[row]!r} is {reason}", path=str(path), line=int(lines[row]),
                              column=header_of(frame, column))


def _headers(path: PathLike) -> list[str]:
    """The file's header, to tell a forecast from a profile before reading it."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as file:
            return [header.strip() for header in file.readline().split(",")]
    except OSError as error:
        raise SignalDataError(f"cannot read the file: {error.strerror or error}", path=str(path)) from None


def read_solar_forecast(path: PathLike, site: str = "site", *, column: str | None = None,
                        peak_kw: float | None = None, start: datetime | None = None) -> Series:
    """A forecast file in kW: the seed's ``timestamp,solar_kw_available``, or a profile (``time,<columns>``)
    scaled by ``peak_kw`` and anchored at ``start``; the shape is told by the header."""
    headers = _headers(path)
    if find_column(headers, _FORECAST_TIME) is not None or find_column(headers, _PROFILE_TIME) is None:
        return replace(read_solar_csv(path, site), kind="forecast")
    missing = [key for key, value in (("column", column), ("peak_kw", peak_kw)) if value is None]
    if missing:
        raise SignalDataError(f"a normalised profile (time,<columns>) needs {' and '.join(map(repr, missing))} in "
                              f"the connection's extra: the column to read (one of {', '.join(headers[1:])}) and "
                              "the peak power in kW", path=str(path), line=HEADER_LINE)
    return read_solar_profile(path, column, peak_kw, start or PROFILE_EPOCH, site)


# ------------------------------------------------------------------------------------------ a logger's file


class _Log:
    """A logger's CSV, read once as bytes: its complete lines, by index, without parsing them all."""

    def __init__(self, path: PathLike):
        self.path = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise SignalDataError(f"cannot read the file: {error.strerror or error}", path=self.path) from None
        self.data = data[: data.rfind(b"\n") + 1]  # a last line without its newline is still being written
        raw = np.frombuffer(self.data, dtype=np.uint8)
        self.ends = np.flatnonzero(raw == ord("\n"))
        self.starts = np.concatenate(([0], self.ends[:-1] + 1)).astype(np.int64)
        carriage = (self.ends > self.starts) & (raw[self.ends - 1] == ord("\r"))  # CRLF: the \r is not data
        self.ends = self.ends - carriage
        blank = (self.ends - self.starts) == 0
        if len(self.ends) and blank[0]:
            raise SignalDataError("blank line where the header should be", path=self.path, line=HEADER_LINE)
        self.rows = np.flatnonzero(~blank)[1:]  # line indices (0-based) of the data rows
        self.headers = [header.strip() for header in self.text(0, "utf-8-sig").split(",")] if len(self.ends) else []

    def text(self, index: int, encoding: str = "utf-8") -> str:
        try:
            return self.data[self.starts[index]:self.ends[index]].decode(encoding)
        except UnicodeDecodeError as error:
            raise SignalDataError(f"not UTF-8 text ({error.reason} at byte {error.start})", path=self.path,
                                  line=index + 1) from None

    def fields(self, index: int) -> list[str]:
        fields = self.text(index).split(",")
        if len(fields) != len(self.headers):
            raise SignalDataError(f"row has {len(fields)} fields, the header has {len(self.headers)}",
                                  path=self.path, line=index + 1)
        return fields


def read_solar_log(path: PathLike, start: datetime, end: datetime, site: str = "site") -> Series | None:
    """Measured output (kW) that a logger appended to ``path``, over the periods that overlap ``[start, end)``.

    The rows must be in time order, one per logging period (a gap or a step out of rhythm in the rows read is
    refused with its line). None when no logged period overlaps the interval, or the file has fewer than two
    complete rows (the logging period is not known yet).
    """
    log = _Log(path)
    if not log.headers:
        return None  # a logger that has not finished its header yet
    forms = [normalise_header(header) for header in log.headers]
    twice = next((header for header, form in zip(log.headers, forms, strict=True) if form and forms.count(form) > 1),
                 None)
    if twice is not None:
        raise SignalDataError(f"header {twice!r} appears twice", path=log.path, line=HEADER_LINE, column=twice)
    time_header = find_column(log.headers, _FORECAST_TIME)
    power_header = find_column(log.headers, _LOG_POWER)
    for logical, header, accepted in (("time", time_header, _FORECAST_TIME), ("power", power_header, _LOG_POWER)):
        if header is None:
            raise SignalDataError(f"no {logical} column: looked for a header named "
                                  f"{' or '.join(map(repr, accepted))}; the headers are "
                                  f"{', '.join(map(repr, log.headers))}", path=log.path, line=HEADER_LINE,
                                  column=logical)
    time_at = log.headers.index(time_header)

    def instant_s(row: int) -> int:
        index = int(log.rows[row])
        text = log.fields(index)[time_at]
        try:
            return int(parse_instant(text, naive_is_utc=True).timestamp())
        except ValueError:
            raise SignalDataError(f"not an ISO 8601 timestamp: {text!r}", path=log.path, line=index + 1,
                                  column=time_header) from None

    count = len(log.rows)
    if count < 2:
        return None
    start_s, end_s = to_epoch_s(start), to_epoch_s(end)
    first = bisect.bisect_left(range(count), start_s, key=instant_s)
    last = bisect.bisect_left(range(first, count), end_s, key=instant_s) + first
    # one row either side: the row before ``start`` may still hold at it, and two rows give the period
    low, high = max(first - 1, 0), min(last + 1, count)
    low, high = max(min(low, high - 2), 0), min(max(high, low + 2), count)
    indices = log.rows[low:high]
    frame = pd.DataFrame([log.fields(int(index)) for index in indices], columns=log.headers, dtype=str)
    frame = frame[[time_header, power_header]].set_axis(["time", "power"], axis=1)
    frame.attrs["headers"] = {"time": time_header, "power": power_header}
    lines = indices.astype(np.int64) + 1
    epoch_s = parse_utc_column(frame, "time", lines, path)
    power_kw = parse_non_negative_column(frame, "power", lines, path)
    period_s = check_time_axis(epoch_s, lines, path, time_header)
    keep = (epoch_s < end_s) & (epoch_s + period_s > start_s)
    if not keep.any():
        return None
    return Series(epoch_s[keep], power_kw[keep], period_s, site, SOLAR_UNIT, "measured", log.path)


# ------------------------------------------------------------------------------------------ the CSV kind


@register("csv", "carbon_solar_csv")
@dataclass(frozen=True)
class CsvSolarSource:
    """A site's solar from files: a forecast or a normalised profile, and optionally a logger's measured output.

    Named as ``csv:<path>`` (the ref's region is the site), or by a ``carbon_solar_csv`` connection whose extra
    holds ``path`` and optionally ``column``, ``peak_kw``, ``start`` (a profile's time 0), ``replay``
    (true: map the file onto the present; absent: only when it does not cover now), ``measured_path`` and
    ``site`` (else the connection id).
    """

    name: str
    site: str
    path: str
    column: str | None = None
    peak_kw: float | None = None
    start: datetime | None = None
    replay: bool | None = None
    measured_path: str | None = None

    quantity: ClassVar[str] = "solar"
    min_refresh_s: ClassVar[float] = 0.0

    @classmethod
    def from_config(cls, config: SourceConfig) -> CsvSolarSource:
        if config.conn_id is None:
            path = config.path or ""
            return cls(config.name, config.region or Path(path).stem, path, replay=config.replay)
        return cls(config.name, config.extra_text("site") or config.conn_id, config.extra_text("path", required=True),
                   column=config.extra_text("column"), peak_kw=config.extra_number("peak_kw", positive=True),
                   start=config.extra_instant("start"), replay=config.extra_flag("replay"),
                   measured_path=config.extra_text("measured_path"))

    @property
    def measures(self) -> bool:
        return self.measured_path is not None

    async def aforecast(self, now: datetime, horizon: timedelta) -> Series:
        return await asyncio.to_thread(self._forecast, now, horizon)

    def _forecast(self, now: datetime, horizon: timedelta) -> Series:
        series = read_solar_forecast(self.path, self.site, column=self.column, peak_kw=self.peak_kw,
                                     start=self.start)
        covers_now = series.first_epoch_s <= to_epoch_s(now) < series.end_epoch_s
        if self.replay or (self.replay is None and not covers_now):
            try:
                return replay(series, now, horizon, timedelta(0))
            except ValueError as error:
                raise SignalDataError(f"cannot be replayed: {error}", path=self.path) from None
        return series.between(now, now + horizon)

    async def ameasured(self, start: datetime, end: datetime) -> Series | None:
        if self.measured_path is None:
            return None
        return await asyncio.to_thread(read_solar_log, self.measured_path, start, end, self.site)


__all__ = ["PROFILE_EPOCH", "CsvSolarSource", "describe_forecast", "read_solar_forecast",
           "read_solar_log", "read_solar_profile"]
