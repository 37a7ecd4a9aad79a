"""Data shipped inside the package, so examples and tests run without network or API keys.

Origins: ``carbon_intensity.csv``, ``solar_generation.csv`` and ``inference_jobs.csv`` come from the
green-ai-infra experiment (rajkumar160798/green-ai-infra, synthetic); ``de_ci.csv`` and ``fr_ci.csv``
from Wiesner et al., "Let's Wait Awhile", Middleware 2021 (dos-group/lets-wait-awhile), computed from
ENTSO-E generation data with IPCC lifecycle factors; ``solar_5min_normalised.csv`` from the
dos-group/vessim example data (Solcast-derived).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from airflow_carbon.signals.csv import read_intensity_csv
from airflow_carbon.signals.series import Series

_INTENSITY_FILES = {"DE": "de_ci.csv", "FR": "fr_ci.csv", "US-TX": "carbon_intensity.csv"}
BUNDLED_REGIONS: tuple[str, ...] = tuple(_INTENSITY_FILES)

# de_ci.csv lacks 2020-12-19 23:15 and 23:45 (UTC): two single missing quarter hours, filled by
# interpolation (the series says estimated=True) rather than refusing the whole year.
_MAX_MISSING_PERIODS = {"DE": 1}


@lru_cache(maxsize=1)
def bundled_names() -> tuple[str, ...]:
    """The files shipped in ``airflow_carbon/data``."""
    data = files("airflow_carbon") / "data"
    return tuple(sorted(entry.name for entry in data.iterdir() if entry.is_file()))


def bundled_path(name: str) -> Path:
    """The path of a shipped data file; an unknown name is refused with the names there are."""
    if name not in bundled_names():
        raise ValueError(f"no bundled data file {name!r}; the bundled files are {', '.join(bundled_names())}")
    return Path(str(files("airflow_carbon") / "data" / name))


def bundled_intensity(region: str) -> Series:
    """Measured carbon intensity of a bundled region (``DE``, ``FR``, ``US-TX``; any case).

    The series is read once and shared, so its arrays are read-only.
    """
    key = region.strip().upper()
    if key not in _INTENSITY_FILES:
        known = ", ".join(BUNDLED_REGIONS)
        raise ValueError(f"no bundled intensity for region {region!r}; the bundled regions are {known}")
    return _read_intensity(key)


@lru_cache(maxsize=len(_INTENSITY_FILES))
def _read_intensity(region: str) -> Series:
    series = read_intensity_csv(
        bundled_path(_INTENSITY_FILES[region]), region, max_missing_periods=_MAX_MISSING_PERIODS.get(region, 0)
    )
    series.start_epoch_s.setflags(write=False)
    series.values.setflags(write=False)
    series.bounds_epoch_s.setflags(write=False)
    return series
