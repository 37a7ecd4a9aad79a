"""Intensity CSVs around the real now, for the tests that run triggers and tasks in real time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow_carbon.signals.bundled import bundled_intensity


def write_signal(path: Path, *, green_in_s: float, period_s: int = 1, dirty: float = 400, clean: float = 120) -> Path:
    """Dirty until ``green_in_s`` from now, clean after; an hour of history and a day ahead."""
    now_s = int(datetime.now(UTC).timestamp())
    green_s = now_s + green_in_s
    rows = ["timestamp,region,carbon_intensity"]
    for start_s in range(now_s - now_s % period_s - 3600, now_s + 86400, period_s):
        instant = datetime.fromtimestamp(start_s, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        rows.append(f"{instant},TEST,{clean if start_s >= green_s else dirty}")
    path.write_text("\n".join(rows) + "\n")
    return path


def write_measured_history(path: Path, now: datetime, days: int = 10) -> Path:
    """A CSV a logger appends to: hourly values of the bundled German series, its last hour holding ``now``."""
    last_hour = now.replace(minute=0, second=0, microsecond=0)
    hours = [last_hour - timedelta(hours=h) for h in range(days * 24 - 1, -1, -1)]
    values = bundled_intensity("DE").values[2000:]
    rows = [f"{hour.isoformat()},{value:.1f}" for hour, value in zip(hours, values, strict=False)]
    path.write_text("timestamp,carbon_intensity\n" + "\n".join(rows) + "\n")
    return path
