"""The simulator run on files: what ``airflow-carbon simulate`` and the Carbon view's simulation both call.

The option texts a person types (a policy list, a forecast error) are read here once, with plain
``ValueError``; the CLI turns them into argparse types and the API into form fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_carbon.accounting import JobRecord
from airflow_carbon.planning import DEFAULT_MAX_DELAY, POLICIES, PolicySettings
from airflow_carbon.signals import Series
from airflow_carbon.signals.csv import (
    REGION_HEADERS,
    find_column,
    read_csv_table,
    read_intensity_csv,
    read_solar_csv,
)
from airflow_carbon.simulate.engine import PolicySummary, simulate
from airflow_carbon.simulate.foresight import NOISE, PERFECT, parse_forecast
from airflow_carbon.simulate.jobs import Jobs, read_jobs_csv
from airflow_carbon.simulate.regions import (
    MODES,
    ModeSummary,
    RegionRecord,
    mode_table,
    simulate_regions,
    summarize_regions,
)
from airflow_carbon.simulate.report import summaries, table

#: The run time of a job whose file has no ``duration_s`` column.
DEFAULT_JOB_DURATION = timedelta(minutes=1)


def parse_policies(text: str) -> list[str]:
    """``forecast,oracle`` or ``all``; ``immediate`` always comes first, as every policy's baseline."""
    names = list(POLICIES) if text == "all" else [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in POLICIES]
    if unknown or not names:
        raise ValueError(f"unknown policy {unknown[0] if unknown else text!r}; "
                         f"choose from {', '.join(POLICIES)} or all")
    return ["immediate", *[name for name in names if name != "immediate"]]


def parse_forecast_error(text: str) -> float:
    """``0.05`` or ``5%``."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"not a fraction: {text!r} (try 0.05 or 5%)") from None
    if not 0 <= value < 1:
        raise ValueError(f"a forecast error must lie in [0, 1): {text!r}")
    return value


#: How often a waiting job is planned again in the CLI, as the trigger does.
DEFAULT_REFRESH = timedelta(minutes=15)


def forecast_label(forecast: str, forecast_error: float) -> str:
    """The one name of what the planners saw: ``--forecast-error 5%`` is ``noise:5%``."""
    name, error = parse_forecast(forecast)
    if forecast_error > 0 and name == PERFECT:
        name, error = NOISE, forecast_error
    return f"{NOISE}:{error:.4g}" if name == NOISE else name


@dataclass(frozen=True)
class Simulation:
    """What ``simulate_files`` read and computed: the inputs, every job's record per policy, the summaries."""

    jobs: Jobs
    intensity: Series
    solar: Series | None
    results: dict[str, list[JobRecord]]
    rows: list[PolicySummary]

    def inputs(self, jobs: Path | str, carbon: Path | str, solar: Path | str | None, max_delay: timedelta,
               forecast_error: float, forecast: str = PERFECT, refresh: timedelta | None = None) -> dict[str, Any]:
        """The ``inputs`` block of the JSON report; ``refresh_s`` is None when jobs are planned once."""
        return {"jobs": str(jobs), "carbon": str(carbon), "solar": str(solar) if solar else None,
                "region": self.intensity.region, "max_delay_s": max_delay.total_seconds(),
                "forecast_error": forecast_error, "estimated": self.intensity.estimated,
                "forecaster": forecast_label(forecast, forecast_error),
                "refresh_s": refresh.total_seconds() if refresh else None}

    def headline(self, carbon: Path | str, max_delay: timedelta, forecast_error: float, forecast: str = PERFECT,
                 refresh: timedelta | None = None) -> str:
        """The line the table is printed under."""
        return (f"{len(self.jobs)} jobs, {self.intensity.region} carbon from {carbon}, max delay {max_delay}, "
                f"forecast {forecast_label(forecast, forecast_error)}, "
                f"{f're-planned every {refresh}' if refresh else 'planned once'}"
                + (" (carbon series has estimated values)" if self.intensity.estimated else ""))

    def table(self) -> str:
        return table(self.rows, with_solar=self.solar is not None)


def simulate_files(jobs: Path | str, carbon: Path | str, solar: Path | str | None = None, *,
                   region: str | None = None, policies: Sequence[str] = tuple(POLICIES),
                   max_delay: timedelta = DEFAULT_MAX_DELAY, settings: PolicySettings | None = None,
                   forecast_error: float = 0.0, seed: int = 0,
                   job_duration: timedelta = DEFAULT_JOB_DURATION, forecast: str = PERFECT,
                   refresh: timedelta | None = None, max_missing_periods: int = 0) -> Simulation:
    """Read the files and replay the jobs with each policy; ``forecast`` and ``refresh`` as in ``simulate``.

    ``max_missing_periods`` is passed to ``read_intensity_csv``: it fills carbon gaps of at most that many
    periods by linear interpolation and marks the series estimated; 0 refuses every gap. The solar reader
    takes no such option, so a gap in the solar file is always refused.

    :raises SignalDataError: a file is not what it should be (the message names file, line and column).
    :raises ValueError: an option is out of range.
    """
    if job_duration <= timedelta(0):
        raise ValueError("--job-duration must be positive")
    job_stream = read_jobs_csv(jobs, default_duration=job_duration)
    intensity = read_intensity_csv(carbon, region, max_missing_periods=max_missing_periods)
    solar_series = read_solar_csv(solar) if solar else None
    results = simulate(job_stream, intensity, list(policies), max_delay=max_delay,
                       settings=settings or PolicySettings(), solar=solar_series, forecast_error=forecast_error,
                       seed=seed, forecast=forecast, refresh=refresh)
    return Simulation(job_stream, intensity, solar_series, results, summaries(results))


def parse_regions(text: str) -> list[str]:
    """``DE,FR``: the regions in the order of the carbon files, the first the home region; each once."""
    regions = [name.strip() for name in text.split(",") if name.strip()]
    if not regions:
        raise ValueError(f"no region in {text!r}: give names such as DE,FR")
    seen: set[str] = set()
    for region in regions:
        if region.casefold() in seen:
            raise ValueError(f"region {region} is listed twice in {text!r}")
        seen.add(region.casefold())
    return regions


def read_region_intensities(carbon: Sequence[Path | str], regions: Sequence[str], *,
                            max_missing_periods: int = 0) -> dict[str, Series]:
    """One carbon file per region, in order, or one file with a region column read once per region."""
    if len(carbon) == 1 and len(regions) > 1:
        frame, _ = read_csv_table(carbon[0], {})
        if find_column(frame.columns, REGION_HEADERS) is None:
            raise ValueError(f"carbon file {str(carbon[0])!r} has no region column: give one carbon file per "
                             f"region ({', '.join(regions)})")
        carbon = list(carbon) * len(regions)
    if len(carbon) != len(regions):
        raise ValueError(f"{len(carbon)} carbon files for {len(regions)} regions ({', '.join(regions)}): give one "
                         "file per region, in the same order, or one file with a region column")
    return {region: read_intensity_csv(path, region, max_missing_periods=max_missing_periods)
            for path, region in zip(carbon, regions, strict=True)}


@dataclass(frozen=True)
class RegionSimulation:
    """What ``simulate_region_files`` read and computed: every job's record per mode and one summary per mode."""

    jobs: Jobs
    intensities: dict[str, Series]
    results: dict[str, list[RegionRecord]]
    rows: list[ModeSummary]

    @property
    def pinned(self) -> int:
        """How many jobs the jobs file pins to a region."""
        return 0 if self.jobs.region is None else int(sum(bool(region) for region in self.jobs.region))

    def inputs(self, jobs: Path | str, carbon: Sequence[Path | str], max_delay: timedelta, forecast_error: float,
               forecast: str = PERFECT, refresh: timedelta | None = None) -> dict[str, Any]:
        """The ``inputs`` block of the JSON report; the first region is the home of every job not pinned."""
        return {"jobs": str(jobs), "carbon": [str(path) for path in carbon], "regions": list(self.intensities),
                "home": next(iter(self.intensities)), "max_delay_s": max_delay.total_seconds(),
                "forecast_error": forecast_error,
                "estimated": any(series.estimated for series in self.intensities.values()),
                "forecaster": forecast_label(forecast, forecast_error),
                "refresh_s": refresh.total_seconds() if refresh else None,
                "pinned": self.pinned}

    def headline(self, max_delay: timedelta, forecast_error: float, forecast: str = PERFECT,
                 refresh: timedelta | None = None) -> str:
        """The line the table is printed under."""
        regions = list(self.intensities)
        estimated = [region for region, series in self.intensities.items() if series.estimated]
        return (f"{len(self.jobs)} jobs ({self.pinned} pinned to a region), regions {', '.join(regions)} (home "
                f"{regions[0]}), max delay {max_delay}, forecast {forecast_label(forecast, forecast_error)}, "
                f"{f're-planned every {refresh}' if refresh else 'planned once'}"
                + (f" (carbon series of {', '.join(estimated)} has estimated values)" if estimated else ""))

    def table(self) -> str:
        return mode_table(self.rows)


def simulate_region_files(jobs: Path | str, carbon: Sequence[Path | str], regions: Sequence[str], *,
                          max_delay: timedelta = DEFAULT_MAX_DELAY, settings: PolicySettings | None = None,
                          forecast_error: float = 0.0, seed: int = 0, job_duration: timedelta = DEFAULT_JOB_DURATION,
                          forecast: str = PERFECT, refresh: timedelta | None = None,
                          max_missing_periods: int = 0) -> RegionSimulation:
    """Read the files and replay the jobs waiting only, moving only, both, and with hindsight (``simulate_regions``).

    :raises SignalDataError: a file is not what it should be, or a job is pinned to a region not given.
    :raises ValueError: an option is out of range, or the carbon files do not match the regions.
    """
    if job_duration <= timedelta(0):
        raise ValueError("--job-duration must be positive")
    job_stream = read_jobs_csv(jobs, default_duration=job_duration)
    intensities = read_region_intensities(carbon, regions, max_missing_periods=max_missing_periods)
    name = forecast_label(forecast, forecast_error)
    results = simulate_regions(job_stream, intensities, max_delay=max_delay, settings=settings or PolicySettings(),
                               forecast=name, seed=seed, refresh=refresh, modes=MODES)
    return RegionSimulation(job_stream, intensities, results, summarize_regions(results))
