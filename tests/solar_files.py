"""Grid and solar CSVs around the real now, for the tests that plan and account tasks of a site in real time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

HOUR_S = 3600


def write_grid(path: Path, intensity: float = 400.0) -> Path:
    now_s = int(datetime.now(UTC).timestamp()) // 300 * 300
    rows = ["timestamp,region,carbon_intensity"] + [
        f"{datetime.fromtimestamp(s, UTC):%Y-%m-%dT%H:%M:%S},TEST,{intensity}"
        for s in range(now_s - 6 * HOUR_S, now_s + 24 * HOUR_S, 300)]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_forecast(path: Path, *, sun_from_s: float, kw: float, period_s: int = 60) -> Path:
    """The seed's shape: 0 kW until ``sun_from_s`` from now (on a grid of ``period_s``), ``kw`` after."""
    now_s = int(datetime.now(UTC).timestamp()) // period_s * period_s
    rows = ["timestamp,solar_kw_available"] + [
        f"{datetime.fromtimestamp(s, UTC):%Y-%m-%d %H:%M:%S},{kw if s >= now_s + sun_from_s else 0.0}"
        for s in range(now_s - 6 * HOUR_S, now_s + 24 * HOUR_S, period_s)]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_measured(path: Path, kw: float, *, ahead_s: int = 2 * HOUR_S) -> Path:
    """A logger's file that already holds the next hours: what the panels give while the tests run."""
    now_s = int(datetime.now(UTC).timestamp()) // 60 * 60
    rows = ["timestamp,solar_kw"] + [f"{datetime.fromtimestamp(s, UTC):%Y-%m-%dT%H:%M:%S},{kw}"
                                     for s in range(now_s - 3 * HOUR_S, now_s + ahead_s, 60)]
    path.write_text("\n".join(rows) + "\n")
    return path
