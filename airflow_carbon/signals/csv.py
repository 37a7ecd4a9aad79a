"""CSV files as series: the seed experiment, ENTSO-E derived files, Electricity Maps exports, solar.

Every cell is read as text and validated column by column with pandas, so a bad file is refused
with the file, line and column of the first fault instead of turning into NaN or a silent shift.
Line numbers are 1-based file lines (the header is line 1); a quoted field spanning several lines
would shift them, which none of the supported exports do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from airflow_carbon.signals.series import (
    INTENSITY_UNIT,
    SOLAR_UNIT,
    Kind,
    Series,
    SignalDataError,
    from_epoch_s,
)

PathLike = str | os.PathLike[str]

HEADER_LINE = 1
KINDS: tuple[Kind, ...] = ("forecast", "measured")

_TIME_HEADERS = ("timestamp", "Time", "Datetime (UTC)")
_REGION_HEADERS = ("region", "Zone Id")
_INTENSITY_HEADERS = {
    "lifecycle": (
        "carbon_intensity",
        "Carbon Intensity",
        "Carbon Intensity gCO₂eq/kWh (LCA)",
        "Carbon intensity gCO₂eq/kWh (Life cycle)",
    ),
    "direct": ("Carbon Intensity gCO₂eq/kWh (direct)",),
}
_ESTIMATED_HEADERS = ("Data estimated",)
_TRUE_TEXT = frozenset({"true", "1", "yes"})
_FALSE_TEXT = frozenset({"false", "0", "no", ""})
_FIELD_COUNT_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def normalise_header(name: str) -> str:
    """Exports of one service differ by case, spacing and ``₂`` vs ``2``: compare headers in one form."""
    return " ".join(name.replace("₂", "2").split()).casefold()


def find_column(headers: Iterable[str], accepted: Iterable[str]) -> str | None:
    """The first header that is one of the accepted names, as spelled in the file; None if none is."""
    by_form = {normalise_header(header): header for header in reversed(list(headers))}
    return next((by_form[form] for form in map(normalise_header, accepted) if form in by_form), None)


def header_of(frame: pd.DataFrame, column: str) -> str:
    """The file's own header for a logical column, so errors name what the user sees in the file."""
    return frame.attrs.get("headers", {}).get(column, column)


def read_csv_table(path: PathLike, required: Mapping[str, tuple[str, ...]]) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a CSV as text with each required logical column found among its accepted header names.

    Header names match case-insensitively, with ``₂`` read as ``2`` and runs of whitespace collapsed.
    A UTF-8 BOM (what Excel writes) is accepted; blank lines are skipped. Returns the data rows with the
    required columns renamed to their logical names (other columns keep their header) and the file line
    of each row. Refuses an empty file, a file with only a header, a missing column, a ``;`` or tab
    separated file and a row with the wrong number of fields.
    """
    name = str(path)
    try:
        raw = pd.read_csv(
            path,
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
            engine="python",
        )
    except pd.errors.EmptyDataError:
        raise SignalDataError("file is empty", path=name) from None
    except UnicodeDecodeError as error:
        raise SignalDataError(f"file is not UTF-8 text ({error.reason} at byte {error.start})", path=name) from None
    except pd.errors.ParserError as error:
        match = _FIELD_COUNT_ERROR.search(str(error))
        if match is None:
            raise SignalDataError(f"not a readable CSV file: {error}", path=name) from None
        expected, line, seen = (int(group) for group in match.groups())
        if expected == 0:
            raise SignalDataError("blank line where the header should be", path=name, line=HEADER_LINE) from None
        raise SignalDataError(f"row has {seen} fields, the header has {expected}", path=name, line=line) from None

    lines = np.arange(1, len(raw) + 1, dtype=np.int64)
    blank = raw.isna().all(axis=1).to_numpy()
    if blank.all():
        raise SignalDataError("file is empty", path=name)
    headers = [str(header).strip() for header in raw.iloc[0].fillna("")]
    for separator, label in ((";", "';'"), ("\t", "tab")):
        if len(headers) == 1 and separator in headers[0]:
            raise SignalDataError(
                f"the header holds {label} and one column: the file looks {label}-separated; "
                "a comma-separated file is expected",
                path=name,
                line=HEADER_LINE,
            )

    forms = pd.Series([normalise_header(header) for header in headers])
    repeated = forms[forms.duplicated() & (forms != "")]
    if not repeated.empty:
        header = headers[int(repeated.index[0])]
        raise SignalDataError(f"header {header!r} appears twice", path=name, line=HEADER_LINE, column=header)

    renames: dict[str, str] = {}
    for logical, accepted in required.items():
        header = find_column(headers, accepted)
        if header is None:
            looked_for = " or ".join(repr(option) for option in accepted)
            found = ", ".join(repr(header) for header in headers)
            raise SignalDataError(
                f"no {logical} column: looked for a header named {looked_for}; the headers are {found}",
                path=name,
                line=HEADER_LINE,
                column=logical,
            )
        renames[header] = logical

    data_rows = ~blank
    data_rows[0] = False
    frame = raw[data_rows].set_axis(headers, axis=1).reset_index(drop=True)
    lines = lines[data_rows]
    if frame.empty:
        raise SignalDataError("no data rows, only the header", path=name)
    short = frame.isna().any(axis=1).to_numpy()
    if short.any():
        row = int(np.argmax(short))
        fields = int(frame.iloc[row].notna().sum())
        raise SignalDataError(
            f"row has {fields} fields, the header has {len(headers)}", path=name, line=int(lines[row])
        )
    frame = frame.rename(columns=renames)
    frame.attrs["headers"] = {logical: header for header, logical in renames.items()}
    return frame, lines


def parse_utc_column(frame: pd.DataFrame, column: str, lines: np.ndarray, path: PathLike) -> np.ndarray:
    """Epoch seconds (int64) of ISO 8601 timestamps: naive ones are UTC, aware ones are converted to UTC."""
    text = frame[column]
    instants = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    bad = instants.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        value = text.iloc[row]
        reason = "empty timestamp" if not value.strip() else f"not an ISO 8601 timestamp: {value!r}"
        raise SignalDataError(reason, path=str(path), line=int(lines[row]), column=header_of(frame, column))
    return instants.dt.as_unit("s").astype("int64").to_numpy()


def parse_non_negative_column(frame: pd.DataFrame, column: str, lines: np.ndarray, path: PathLike) -> np.ndarray:
    """Floats that may be used as intensities or powers: finite and not negative."""
    text = frame[column]
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        row = int(np.argmax(bad))
        value = text.iloc[row]
        if not value.strip():
            reason = "empty value"
        elif values[row] < 0:
            reason = f"negative value {value!r}"
        else:
            reason = f"not a finite number: {value!r}"
        raise SignalDataError(reason, path=str(path), line=int(lines[row]), column=header_of(frame, column))
    return values


def check_time_axis(
    epoch_s: np.ndarray, lines: np.ndarray, path: PathLike, column: str, *, max_missing_periods: int = 0
) -> int:
    """The period in seconds of instants that must be sorted, unique and evenly spaced.

    The period is the most common step. Refuses, naming the line of the offending row, a duplicate
    instant, a row earlier than the one before, a gap (a step longer than the period) and an irregular
    step. ``max_missing_periods`` lets through gaps of at most that many whole missing periods, for a
    caller that fills them and says so; 0 refuses every gap.
    """
    name = str(path)
    if epoch_s.size < 2:
        raise SignalDataError(
            f"{epoch_s.size} data row: at least 2 are needed to know the period",
            path=name,
            line=int(lines[0]) if lines.size else None,
            column=column,
        )
    steps_s = np.diff(epoch_s)
    positive_s = steps_s[steps_s > 0]
    period_s = 0
    if positive_s.size:
        distinct_s, counts = np.unique(positive_s, return_counts=True)
        period_s = int(distinct_s[np.argmax(counts)])
    allowed = steps_s == period_s
    if period_s and max_missing_periods:
        allowed |= (steps_s % period_s == 0) & (steps_s > 0) & (steps_s <= (max_missing_periods + 1) * period_s)
    if allowed.all():
        return period_s

    row = int(np.argmax(~allowed))
    step_s = int(steps_s[row])
    previous_line, line = int(lines[row]), int(lines[row + 1])
    previous, instant = from_epoch_s(epoch_s[row]).isoformat(), from_epoch_s(epoch_s[row + 1]).isoformat()
    if step_s == 0:
        reason = f"duplicate instant {instant}: line {previous_line} has the same time"
    elif step_s < 0:
        reason = f"rows are not in time order: {instant} comes after {previous} on line {previous_line}"
    elif step_s > period_s:
        reason = f"gap: {step_s} s after {previous} on line {previous_line}, the period is {period_s} s"
    else:
        reason = f"irregular step: {step_s} s after {previous} on line {previous_line}, the period is {period_s} s"
    raise SignalDataError(reason, path=name, line=line, column=column)


def read_intensity_csv(
    path: PathLike,
    region: str | None = None,
    *,
    emission_factor: str = "lifecycle",
    kind: Kind = "measured",
    max_missing_periods: int = 0,
) -> Series:
    """Carbon intensity (gCO2eq/kWh) of one region from a seed, ENTSO-E derived or Electricity Maps CSV.

    The schema is recognised by its headers. ``region`` selects a region in a file that holds several
    (a ``region`` or ``Zone Id`` column) and may be omitted when it holds one; a file without a region
    column is of ``region``, or else of the file name before its first ``_`` (``de_ci.csv`` is ``DE``).
    ``emission_factor`` picks the lifecycle (LCA) or the direct column of an Electricity Maps export.
    ``max_missing_periods`` fills gaps of at most that many periods by linear interpolation and marks the
    series estimated, for a known-imperfect file; by default every gap is refused.
    """
    if emission_factor not in _INTENSITY_HEADERS:
        raise ValueError(f"unknown emission_factor {emission_factor!r}; use one of {', '.join(_INTENSITY_HEADERS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if max_missing_periods < 0:
        raise ValueError(f"max_missing_periods must not be negative, got {max_missing_periods}")
    name = str(path)
    frame, lines = read_csv_table(path, {"time": _TIME_HEADERS, "intensity": _INTENSITY_HEADERS[emission_factor]})
    epoch_s = parse_utc_column(frame, "time", lines, path)
    values = parse_non_negative_column(frame, "intensity", lines, path)

    region_header = find_column(frame.columns, _REGION_HEADERS)
    if region_header is None:
        selected = np.ones(len(frame), dtype=bool)
        region_name = region if region is not None else Path(path).stem.split("_")[0].upper()
    else:
        region_name, selected = _select_region(frame, region_header, lines, name, region)

    estimated = False
    estimated_header = find_column(frame.columns, _ESTIMATED_HEADERS)
    if estimated_header is not None:
        estimated = _any_true(frame, estimated_header, lines, name, selected)

    epoch_s, values, lines = epoch_s[selected], values[selected], lines[selected]
    period_s = check_time_axis(epoch_s, lines, path, header_of(frame, "time"), max_missing_periods=max_missing_periods)
    grid_s = np.arange(epoch_s[0], epoch_s[-1] + period_s, period_s, dtype=np.int64)
    if grid_s.size != epoch_s.size:
        values, estimated = np.interp(grid_s, epoch_s, values), True
    return Series(
        start_epoch_s=grid_s,
        values=values,
        period_s=period_s,
        region=region_name,
        unit=INTENSITY_UNIT,
        kind=kind,
        source=name,
        estimated=estimated,
    )


def _select_region(
    frame: pd.DataFrame, header: str, lines: np.ndarray, path: str, region: str | None
) -> tuple[str, np.ndarray]:
    """The region's name as the file spells it and the mask of its rows."""
    regions = frame[header].str.strip()
    empty = (regions == "").to_numpy()
    if empty.any():
        raise SignalDataError("empty region", path=path, line=int(lines[np.argmax(empty)]), column=header)
    available = list(pd.unique(regions))
    if region is None:
        if len(available) != 1:
            raise SignalDataError(
                f"the file holds regions {', '.join(available)}: pass region= to choose one", path=path, column=header
            )
        chosen = available[0]
    else:
        chosen = next((option for option in available if option.casefold() == region.strip().casefold()), None)
        if chosen is None:
            raise SignalDataError(
                f"no rows for region {region!r}; the file holds {', '.join(available)}", path=path, column=header
            )
    return chosen, (regions == chosen).to_numpy()


def _any_true(frame: pd.DataFrame, header: str, lines: np.ndarray, path: str, selected: np.ndarray) -> bool:
    """Whether any selected row of a true/false column is true; other text is refused."""
    flags = frame[header].str.strip().str.casefold()
    unknown = ~(flags.isin(_TRUE_TEXT) | flags.isin(_FALSE_TEXT)).to_numpy()
    if unknown.any():
        row = int(np.argmax(unknown))
        raise SignalDataError(
            f"expected true or false, got {frame[header].iloc[row]!r}", path=path, line=int(lines[row]), column=header
        )
    return bool(flags[selected].isin(_TRUE_TEXT).any())


def read_solar_csv(path: PathLike, site: str = "site") -> Series:
    """On-site solar power (kW) available at a site, from the seed's ``timestamp,solar_kw_available``."""
    frame, lines = read_csv_table(path, {"time": ("timestamp",), "power_kw": ("solar_kw_available",)})
    epoch_s = parse_utc_column(frame, "time", lines, path)
    power_kw = parse_non_negative_column(frame, "power_kw", lines, path)
    period_s = check_time_axis(epoch_s, lines, path, header_of(frame, "time"))
    return Series(
        start_epoch_s=epoch_s, values=power_kw, period_s=period_s, region=site, unit=SOLAR_UNIT, source=str(path)
    )

