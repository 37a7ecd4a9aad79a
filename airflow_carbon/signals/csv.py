"""CSV files as series: the seed experiment, ENTSO-E derived files, Electricity Maps exports, solar.

Every cell is read as text and validated column by column with pandas, so a bad file is refused
with the file, line and column of the first fault instead of turning into NaN or a silent shift.
Line numbers are 1-based file lines (the header is line 1); a quoted field spanning several lines
would shift them, which none of the supported exports do.

A measured history may change resolution partway (European markets moved from hourly or half-hourly
periods to 15 minutes, most in 2025). Such a file is read as one series on its finest period, each
value held until the next timestamp, as long as no step is longer than the file's largest period.
"""

from __future__ import annotations

import itertools
import logging
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
#: The column that names a row's region, in a carbon file that holds several regions.
REGION_HEADERS = ("region", "Zone Id")
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
_COMMA_DECIMAL = re.compile(r"\s*[-+]?\d+(?:\.\d{3})*,\d+\s*")
_UTC_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:z|utc|[-+]\d{2}(?::?\d{2})?)\s*$", re.IGNORECASE)
_SEPARATORS = ((";", "';'"), ("\t", "tab"))
#: Lines read to tell a file's separator and decimal mark before parsing it.
_SNIFF_LINES = 20
#: A step is one of a file's periods if it repeats this many times in a row (four evenly spaced rows), so a
#: change of resolution is told from a stray short step or a missing row.
_MIN_PERIOD_RUN = 3
_ONE_HOUR_S = 3600
_DST_MONTHS = frozenset({3, 4, 9, 10, 11})

log = logging.getLogger(__name__)


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
    separated file (saying so, and whether its decimals are commas) and a row with the wrong number of fields.
    """
    name = str(path)
    _refuse_other_separator(path)
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


def _refuse_other_separator(path: PathLike) -> None:
    """Tell a ``;``- or tab-separated file (a spreadsheet's export in many locales) before pandas miscounts it.

    Such a file's comma decimals would otherwise read as extra fields; the message says which separator and
    which decimal mark the file uses, so the user knows what to change in the export.
    """
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as file:
            head = list(itertools.islice(file, _SNIFF_LINES))
    except OSError:
        return
    if not head or "," in head[0]:
        return
    for separator, label in _SEPARATORS:
        if separator not in head[0]:
            continue
        decimal = next(
            ((line, field.strip()) for line, text in enumerate(head[1:], HEADER_LINE + 1)
             for field in text.split(separator) if _COMMA_DECIMAL.fullmatch(field)),
            None,
        )
        marks = (
            f"with ',' as decimal mark ({decimal[1]!r} on line {decimal[0]}), as spreadsheets in most European "
            "locales export it" if decimal else "with '.' as decimal mark"
        )
        raise SignalDataError(
            f"the header holds {label} and no comma: the file looks {label}-separated, {marks}; a comma-separated "
            "file with '.' as decimal mark is expected: export it as CSV with ',' between fields and '.' in numbers",
            path=str(path),
            line=HEADER_LINE,
        )


def naive_timestamps(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Which timestamps carry no UTC offset (read as UTC), to hint at local clock times when they jump."""
    return ~frame[column].str.contains(_UTC_OFFSET).to_numpy(dtype=bool)


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
        elif _COMMA_DECIMAL.fullmatch(value):
            dotted = value.strip().replace(".", "").replace(",", ".")
            reason = (f"not a number: {value!r} has ',' as decimal mark; write it with '.' ({dotted!r}), "
                      "e.g. export the CSV with '.' as decimal separator")
        else:
            reason = f"not a finite number: {value!r}"
        raise SignalDataError(reason, path=str(path), line=int(lines[row]), column=header_of(frame, column))
    return values


def check_time_axis(
    epoch_s: np.ndarray,
    lines: np.ndarray,
    path: PathLike,
    column: str,
    *,
    max_missing_periods: int = 0,
    naive: np.ndarray | None = None,
) -> int:
    """The period in seconds of instants that must be sorted, unique and evenly spaced.

    The period is the most common step. Refuses, naming the line of the offending row, a duplicate
    instant, a row earlier than the one before, a gap (a step longer than the period) and an irregular
    step. ``max_missing_periods`` lets through gaps of at most that many whole missing periods, for a
    caller that fills them and says so; 0 refuses every gap. ``naive`` marks timestamps written without
    a UTC offset: a one-hour jump among them gets a hint about daylight-saving time.
    """
    return time_periods(epoch_s, lines, path, column, max_missing_periods=max_missing_periods, naive=naive)[0]


def time_periods(
    epoch_s: np.ndarray,
    lines: np.ndarray,
    path: PathLike,
    column: str,
    *,
    max_missing_periods: int = 0,
    resolution_changes: bool = False,
    naive: np.ndarray | None = None,
) -> tuple[int, int]:
    """The finest and the largest period in seconds of instants that must be sorted and unique.

    Without ``resolution_changes`` the file has one period, its most common step (both figures are it).
    With it, a step that repeats ``_MIN_PERIOD_RUN`` times in a row is a period as well, and any step that
    is a whole number of finest periods and at most the largest period is let through: its value holds
    until the next row. Refused as in ``check_time_axis``: duplicates, disorder, gaps (longer than the
    largest period, beyond ``max_missing_periods`` of them) and steps off the finest period's grid.
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
    periods_s = _periods(steps_s, resolution_changes)
    finest_s, largest_s = (min(periods_s), max(periods_s)) if periods_s else (0, 0)
    on_grid = (steps_s > 0) & (steps_s % finest_s == 0) if finest_s else np.zeros(steps_s.size, dtype=bool)
    allowed = on_grid & (steps_s <= (max_missing_periods + 1) * largest_s)
    if allowed.all():
        return finest_s, largest_s

    row = int(np.argmax(~allowed))
    step_s = int(steps_s[row])
    previous_line, line = int(lines[row]), int(lines[row + 1])
    previous, instant = from_epoch_s(epoch_s[row]).isoformat(), from_epoch_s(epoch_s[row + 1]).isoformat()
    period = f"the period is {finest_s} s" if finest_s == largest_s else f"the periods are {finest_s} to {largest_s} s"
    if step_s == 0:
        reason = f"duplicate instant {instant}: line {previous_line} has the same time"
    elif step_s < 0:
        reason = f"rows are not in time order: {instant} comes after {previous} on line {previous_line}"
    elif step_s > largest_s:
        reason = f"gap: {step_s} s after {previous} on line {previous_line}, {period}"
    else:
        reason = f"irregular step: {step_s} s after {previous} on line {previous_line}, {period}"
    local_times = naive is not None and naive[row] and naive[row + 1]
    if local_times and _clock_change(epoch_s[row + 1], step_s, (finest_s, largest_s)):
        reason += (
            "; the timestamps have no UTC offset, so they are read as UTC: if they are local clock times, this "
            "one-hour jump on a Sunday is a daylight-saving change. Give each timestamp its UTC offset "
            f"(as in {from_epoch_s(epoch_s[row + 1]).replace(tzinfo=None).isoformat()}+HH:MM) or write them in UTC"
        )
    raise SignalDataError(reason, path=name, line=line, column=column)


def _clock_change(epoch_s: int, step_s: int, periods_s: tuple[int, int]) -> bool:
    """Whether a step looks like local clocks going back or forward an hour: on a Sunday of the months
    daylight-saving time starts or ends in (Europe, North America, Oceania, South America)."""
    day = from_epoch_s(epoch_s)
    jumps_s = {step_s - period_s for period_s in periods_s}
    return bool(jumps_s & {-_ONE_HOUR_S, _ONE_HOUR_S}) and day.weekday() == 6 and day.month in _DST_MONTHS


def _periods(steps_s: np.ndarray, resolution_changes: bool) -> set[int]:
    """The steps that are a file's periods: the most common one and, if it may change, every long run's."""
    positive_s = steps_s[steps_s > 0]
    if not positive_s.size:
        return set()
    distinct_s, counts = np.unique(positive_s, return_counts=True)
    periods_s = {int(distinct_s[np.argmax(counts)])}
    if resolution_changes:
        # runs of the positive steps: a duplicate or a row out of order is refused as such, not as a short run
        run_starts = np.flatnonzero(np.diff(positive_s, prepend=positive_s[0] - 1) != 0)
        run_lengths = np.diff(np.append(run_starts, positive_s.size))
        periods_s |= {int(step_s) for step_s in positive_s[run_starts[run_lengths >= _MIN_PERIOD_RUN]]}
    return periods_s


def hold_onto_grid(
    epoch_s: np.ndarray, values: np.ndarray, period_s: int, hold_s: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Instants and values on an even grid of ``period_s`` from rows whose steps are whole periods.

    A value holds until the next row when that row comes within ``hold_s``; a longer step is a gap,
    filled by linear interpolation. Returns the grid, its values and whether any value was interpolated.
    """
    grid_s = np.arange(epoch_s[0], epoch_s[-1] + period_s, period_s, dtype=np.int64)
    if grid_s.size == epoch_s.size:
        return epoch_s, values, False
    row = np.searchsorted(epoch_s, grid_s, side="right") - 1
    in_gap = np.append(np.diff(epoch_s) > hold_s, False)[row]
    filled = np.where(in_gap, np.interp(grid_s, epoch_s, values), values[row])
    return grid_s, filled, bool(in_gap.any())


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
    column is of ``region``, or else of the file name before its first ``_`` (``de_ci.csv`` is ``DE``),
    which is logged as a warning and said in the series' ``source``.
    ``emission_factor`` picks the lifecycle (LCA) or the direct column of an Electricity Maps export.

    A file that changes resolution (30-minute, then 15-minute periods) is one series on its finest period:
    each value is held (repeated) until the next timestamp, as long as that comes within the file's largest
    period; the values stay measured (``estimated`` is not set by holding) and ``source`` says they were
    held. ``max_missing_periods`` fills gaps of at most that many (largest) periods by linear interpolation
    and marks the series estimated, for a known-imperfect file; by default every gap is refused.
    """
    if emission_factor not in _INTENSITY_HEADERS:
        raise ValueError(f"unknown emission_factor {emission_factor!r}; use one of {', '.join(_INTENSITY_HEADERS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if max_missing_periods < 0:
        raise ValueError(f"max_missing_periods must not be negative, got {max_missing_periods}")
    name = str(path)
    source = name
    frame, lines = read_csv_table(path, {"time": _TIME_HEADERS, "intensity": _INTENSITY_HEADERS[emission_factor]})
    epoch_s = parse_utc_column(frame, "time", lines, path)
    values = parse_non_negative_column(frame, "intensity", lines, path)
    naive = naive_timestamps(frame, "time")

    region_header = find_column(frame.columns, REGION_HEADERS)
    if region_header is None:
        selected = np.ones(len(frame), dtype=bool)
        region_name = region if region is not None else _region_from_file_name(path)
        if region is None:
            source = f"{name} (region {region_name} taken from the file name)"
    else:
        region_name, selected = _select_region(frame, region_header, lines, name, region)

    estimated = False
    estimated_header = find_column(frame.columns, _ESTIMATED_HEADERS)
    if estimated_header is not None:
        estimated = _any_true(frame, estimated_header, lines, name, selected)

    epoch_s, values, lines, naive = epoch_s[selected], values[selected], lines[selected], naive[selected]
    period_s, largest_s = time_periods(
        epoch_s, lines, path, header_of(frame, "time"), max_missing_periods=max_missing_periods,
        resolution_changes=True, naive=naive,
    )
    epoch_s, values, interpolated = hold_onto_grid(epoch_s, values, period_s, largest_s)
    estimated = estimated or interpolated
    if largest_s != period_s:
        note = f"rows {period_s} to {largest_s} s apart: each value held until the next row, on {period_s} s periods"
        source = f"{source[:-1]}; {note})" if source.endswith(")") else f"{source} ({note})"
        log.info("carbon: %s changes resolution: %s", name, note)
    return Series(
        start_epoch_s=epoch_s,
        values=values,
        period_s=period_s,
        region=region_name,
        unit=INTENSITY_UNIT,
        kind=kind,
        source=source,
        estimated=estimated,
    )


def _region_from_file_name(path: PathLike) -> str:
    """The region a file without a region column is of, guessed from its name, with a warning: it is a guess."""
    region = Path(path).stem.split("_")[0].upper()
    log.warning(
        "carbon: %s has no region column and no region was given: taking %r from the file name; "
        "pass the region (a connection's 'region' extra, or --region) to be sure",
        path,
        region,
    )
    return region


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
    period_s = check_time_axis(epoch_s, lines, path, header_of(frame, "time"), naive=naive_timestamps(frame, "time"))
    return Series(
        start_epoch_s=epoch_s, values=power_kw, period_s=period_s, region=site, unit=SOLAR_UNIT, source=str(path)
    )

