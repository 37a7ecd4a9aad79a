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
from airflow_carbon.signals.csv import read_intensity_csv, read_solar_csv
from airflow_carbon.simulate.engine import PolicySummary, simulate
from airflow_carbon.simulate.foresight import NOISE, PERFECT, parse_forecast
from airflow_carbon.simulate.jobs import Jobs, read_jobs_csv
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
