"""The job stream a simulation replays: when each job became ready, how long it runs, what it uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from airflow_carbon.signals import SignalDataError
from airflow_carbon.signals.csv import (
    find_column,
    header_of,
    parse_non_negative_column,
    parse_utc_column,
    read_csv_table,
)
from airflow_carbon.units import MAX_ENERGY_KWH

REQUIRED_COLUMNS = {
    "ready_at": ("timestamp", "ready_at", "submitted_at"),
    "energy_kwh": ("energy_kwh", "expected_energy_kwh", "expected_power_kwh"),
}
#: The shortest and longest run of a job: a shorter one draws a power (energy / duration) that overflows the
#: emissions arithmetic, and no delay of hours moves a job of more than a year.
MIN_JOB_DURATION_S = 1.0
MAX_JOB_DURATION_S = 366 * 86400.0


@dataclass(frozen=True)
class Jobs:
    """Columns of a job stream, in the order of the file; ``line`` is each job's line in it.

    ``region``: the region each job is pinned to ("" where it may run in any), or None when the file has no
    ``region`` column; only the simulation over several regions reads it.
    """

    job_id: np.ndarray
    ready_epoch_s: np.ndarray
    duration_s: np.ndarray
    energy_kwh: np.ndarray
    line: np.ndarray
    path: str = ""
    region: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.job_id.size)


def read_jobs_csv(path: str | Path, default_duration: timedelta = timedelta(minutes=1)) -> Jobs:
    """Read a jobs CSV such as the seed's ``job_id,timestamp,tokens,expected_power_kwh``.

    The seed names its energy column ``expected_power_kwh``; it holds kWh per job. A
    ``duration_s`` column is optional: without it every job runs ``default_duration``. So is a ``region``
    column: a job with a region there is pinned to it when several regions are simulated.
    """
    path = str(path)
    default_s = default_duration.total_seconds()
    if not MIN_JOB_DURATION_S <= default_s <= MAX_JOB_DURATION_S:
        raise ValueError(f"job duration {default_duration} is out of range: a job runs {MIN_JOB_DURATION_S:g} s to "
                         f"{MAX_JOB_DURATION_S / 86400:g} days")
    frame, lines = read_csv_table(path, REQUIRED_COLUMNS)
    ready_epoch_s = parse_utc_column(frame, "ready_at", lines, path)
    energy_kwh = parse_non_negative_column(frame, "energy_kwh", lines, path)
    _refuse_beyond(energy_kwh > MAX_ENERGY_KWH, frame, "energy_kwh", lines, path,
                   f"more than {MAX_ENERGY_KWH:g} kWh, the most one job may use")
    duration_header = find_column(frame.columns, ("duration_s",))
    if duration_header is None:
        duration_s = np.full(len(frame), default_s)
    else:
        duration_s = parse_non_negative_column(frame, duration_header, lines, path)
        _refuse_beyond((duration_s < MIN_JOB_DURATION_S) | (duration_s > MAX_JOB_DURATION_S), frame, duration_header,
                       lines, path, f"a job must run for {MIN_JOB_DURATION_S:g} s to {MAX_JOB_DURATION_S:.0f} s")
    id_header = find_column(frame.columns, ("job_id", "id"))
    job_id = frame[id_header].str.strip().to_numpy(dtype=str) if id_header else np.array([f"line-{n}" for n in lines])
    unique, counts = np.unique(job_id, return_counts=True)
    if np.any(counts > 1):
        repeated = unique[counts > 1][0]
        line = int(lines[np.flatnonzero(job_id == repeated)[1]])
        raise SignalDataError(f"job_id {repeated!r} appears more than once", path=path, line=line, column=id_header)
    region_header = find_column(frame.columns, ("region",))
    region = frame[region_header].str.strip().to_numpy(dtype=str) if region_header else None
    return Jobs(job_id, ready_epoch_s, duration_s, energy_kwh, np.asarray(lines), path, region)


def _refuse_beyond(bad: np.ndarray, frame: pd.DataFrame, column: str, lines: np.ndarray, path: str, why: str) -> None:
    """Refuse the first row where ``bad`` holds, quoting its value as the file has it."""
    if bad.any():
        row = int(np.argmax(bad))
        raise SignalDataError(f"{frame[column].iloc[row].strip()!r}: {why}", path=path, line=int(lines[row]),
                              column=header_of(frame, column))
