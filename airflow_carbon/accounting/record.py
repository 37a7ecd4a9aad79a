"""Emissions over the interval a job really ran, against the same job run when it became ready."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np

from airflow_carbon.planning.window import steps
from airflow_carbon.signals import Series
from airflow_carbon.signals.series import to_epoch_s


@dataclass(frozen=True)
class JobRecord:
    """One job's account; emissions are None where the signal did not cover the interval.

    ``signal`` names where the intensity came from (``replay of ...`` for replayed data), as the task
    try's record does, and
    ``estimated`` is true where any input was estimated, replayed or missing.
    """

    job_id: str
    policy: str
    region: str
    signal: str
    reason: str
    ready_at: datetime
    deadline: datetime
    started_at: datetime
    ended_at: datetime
    energy_kwh: float
    solar_kwh: float
    intensity_g_per_kwh: float | None
    baseline_intensity_g_per_kwh: float | None
    emissions_g: float | None
    baseline_emissions_g: float | None
    estimated: bool

    @property
    def delay_s(self) -> float:
        return (self.started_at - self.ready_at).total_seconds()

    @property
    def grid_kwh(self) -> float:
        return self.energy_kwh - self.solar_kwh

    @property
    def saved_g(self) -> float | None:
        if self.emissions_g is None or self.baseline_emissions_g is None:
            return None
        return self.baseline_emissions_g - self.emissions_g

    def to_dict(self) -> dict[str, Any]:
        """JSON types only: instants as ISO strings, derived figures included."""
        fields = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}
        return fields | {"delay_s": self.delay_s, "grid_kwh": self.grid_kwh, "saved_g": self.saved_g}


def mean_intensity_g_per_kwh(intensity: Series, start: datetime, end: datetime) -> float | None:
    """Time-weighted mean intensity over ``[start, end)``; None unless the series covers all of it."""
    return _interval(intensity, 0.0, None, to_epoch_s(start), to_epoch_s(end))[0]


def solar_used_kwh(solar: Series | None, energy_kwh: float, start: datetime, end: datetime) -> float:
    """The on-site energy (kWh) a job drawing ``energy_kwh`` evenly over ``[start, end)`` took from ``solar`` (kW).

    Needs no grid signal: a record counts its solar even when no intensity covers the run.
    """
    if solar is None or not len(solar):
        return 0.0
    start_s = to_epoch_s(start)
    duration_s = max(to_epoch_s(end) - start_s, 1)
    edges, _, used_kw = steps(solar, energy_kwh * 3600.0 / duration_s, solar, start_s, start_s + duration_s)
    return float(used_kw @ np.diff(edges)) / 3600.0


def _interval(intensity: Series, energy_kwh: float, solar: Series | None, start_s: int, end_s: int
              ) -> tuple[float | None, float | None, float]:
    """Mean intensity, grid emissions (g) and solar energy used (kWh) of ``energy_kwh`` drawn evenly over the interval.

    The figures that need the grid signal are None unless it covers the whole interval.
    """
    duration_s = max(end_s - start_s, 1)
    power_kw = energy_kwh * 3600.0 / duration_s
    edges, intensity_g_per_kwh, solar_used_kw = steps(intensity, power_kw, solar, start_s, start_s + duration_s)
    seconds = np.diff(edges)
    solar_kwh = float(solar_used_kw @ seconds) / 3600.0
    if not (len(intensity) and intensity.first_epoch_s <= start_s and start_s + duration_s <= intensity.end_epoch_s):
        return None, None, solar_kwh
    emissions_g = float((intensity_g_per_kwh * (power_kw - solar_used_kw)) @ seconds) / 3600.0
    return float(intensity_g_per_kwh @ seconds) / duration_s, emissions_g, solar_kwh


def account(
    *,
    job_id: str,
    policy: str,
    reason: str,
    ready_at: datetime,
    deadline: datetime,
    started_at: datetime,
    ended_at: datetime,
    energy_kwh: float,
    intensity: Series,
    solar: Series | None = None,
    baseline: tuple[float | None, float | None] | None = None,
    estimated: bool = False,
) -> JobRecord:
    """Account one job that ran over ``[started_at, ended_at)``.

    ``solar`` is the on-site power that was free for this job (kW); only the grid share
    emits. ``baseline`` (intensity, emissions) overrides the default baseline, the same
    job started at ``ready_at`` with the same solar: a simulator passes the figures of
    the immediate run, where solar was shared with the other jobs.
    """
    start_s, end_s, ready_s = to_epoch_s(started_at), to_epoch_s(ended_at), to_epoch_s(ready_at)
    if end_s < start_s:
        raise ValueError(f"job {job_id}: ended_at {ended_at.isoformat()} is before started_at {started_at.isoformat()}")
    intensity_g_per_kwh, emissions_g, solar_kwh = _interval(intensity, energy_kwh, solar, start_s, end_s)
    if baseline is None:
        baseline = _interval(intensity, energy_kwh, solar, ready_s, ready_s + end_s - start_s)[:2]
    return JobRecord(
        job_id=job_id,
        policy=policy,
        region=intensity.region,
        signal=intensity.source,
        reason=reason,
        ready_at=ready_at,
        deadline=deadline,
        started_at=started_at,
        ended_at=ended_at,
        energy_kwh=energy_kwh,
        solar_kwh=solar_kwh,
        intensity_g_per_kwh=intensity_g_per_kwh,
        baseline_intensity_g_per_kwh=baseline[0],
        emissions_g=emissions_g,
        baseline_emissions_g=baseline[1],
        estimated=estimated or intensity.replayed or intensity.estimated or emissions_g is None,
    )
