"""Intensity CSVs around the real now, for the tests that run triggers and tasks in real time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path


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
