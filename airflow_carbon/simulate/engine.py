"""Replay a job stream against a carbon series with each policy, using the planners the trigger uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from airflow_carbon.accounting import JobRecord, SolarBudget, account
from airflow_carbon.planning import POLICIES, Job, PolicySettings, decide
from airflow_carbon.planning.policies import DEFAULT_SETTINGS
from airflow_carbon.signals import Series, SignalDataError
from airflow_carbon.signals.series import from_epoch_s
from airflow_carbon.simulate.jobs import Jobs
from airflow_carbon.simulate.noise import noisy_forecast


@dataclass(frozen=True)
class PolicySummary:
    """One row of the side-by-side table. ``*_kg`` count grid energy only; ``net_*`` subtract solar."""

    policy: str
    jobs: int
    delayed: int
    max_delay_h: float
    mean_delay_h: float
    deadline_misses: int
    energy_kwh: float
    baseline_kg: float
    scheduled_kg: float
    solar_kwh: float
    net_baseline_kg: float
    net_kg: float

    @property
    def saving_pct(self) -> float:
        return _pct(self.baseline_kg - self.scheduled_kg, self.baseline_kg)

    @property
    def net_saving_pct(self) -> float:
        return _pct(self.net_baseline_kg - self.net_kg, self.net_baseline_kg)

    def to_dict(self) -> dict[str, float | int | str]:
        return self.__dict__ | {"saving_pct": self.saving_pct, "net_saving_pct": self.net_saving_pct}


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else 0.0


def summarize(policy: str, records: Sequence[JobRecord]) -> PolicySummary:
    delays_h = np.array([r.delay_s for r in records]) / 3600.0
    energy_kwh = np.array([r.energy_kwh for r in records])
    return PolicySummary(
        policy=policy,
        jobs=len(records),
        delayed=int(np.sum(delays_h > 0)),
        max_delay_h=float(delays_h.max(initial=0.0)),
        mean_delay_h=float(delays_h.mean()) if len(records) else 0.0,
        deadline_misses=sum(r.started_at > r.deadline for r in records),
        energy_kwh=float(energy_kwh.sum()),
        baseline_kg=float(energy_kwh @ np.array([r.baseline_intensity_g_per_kwh for r in records])) / 1000.0,
        scheduled_kg=float(energy_kwh @ np.array([r.intensity_g_per_kwh for r in records])) / 1000.0,
        solar_kwh=sum(r.solar_kwh for r in records),
        net_baseline_kg=sum(r.baseline_emissions_g for r in records) / 1000.0,
        net_kg=sum(r.emissions_g for r in records) / 1000.0,
    )


def check_coverage(jobs: Jobs, intensity: Series) -> None:
    """Every job must be able to run when ready: refuse, naming the line, a job the series does not cover."""
    outside = (jobs.ready_epoch_s < intensity.first_epoch_s) | (
        jobs.ready_epoch_s + jobs.duration_s > intensity.end_epoch_s)
    if np.any(outside):
        index = int(np.flatnonzero(outside)[0])
        raise SignalDataError(
            f"job {jobs.job_id[index]} ready at {from_epoch_s(jobs.ready_epoch_s[index]).isoformat()} does not fit in "
            f"the carbon series {intensity.source or intensity.region} ({from_epoch_s(intensity.first_epoch_s)} "
            f"to {from_epoch_s(intensity.end_epoch_s)})",
            path=jobs.path, line=int(jobs.line[index]), column="ready_at")


def simulate(
    jobs: Jobs,
    intensity: Series,
    policies: Sequence[str],
    *,
    max_delay: timedelta,
    settings: PolicySettings = DEFAULT_SETTINGS,
    solar: Series | None = None,
    forecast_error: float = 0.0,
    seed: int = 0,
) -> dict[str, list[JobRecord]]:
    """Records of every job under each policy, each against the immediate run as its baseline.

    Jobs are planned in the order they became ready; each sees the solar that earlier
    jobs left. ``forecast_error`` blurs what ``threshold`` and ``forecast`` see (see
    ``noisy_forecast``); ``oracle`` and the accounting always use the real series.
    """
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    if max_delay < timedelta(0):
        raise ValueError(f"max_delay must not be negative, got {max_delay}")
    if not 0 <= forecast_error < 1:
        raise ValueError(f"forecast_error is a fraction in [0, 1), got {forecast_error}")
    check_coverage(jobs, intensity)
    baseline = _run(jobs, intensity, "immediate", max_delay, settings, solar, 0.0, seed, None)
    baselines = [(r.intensity_g_per_kwh, r.emissions_g) for r in baseline]
    return {p: baseline if p == "immediate" else
            _run(jobs, intensity, p, max_delay, settings, solar, forecast_error, seed, baselines) for p in policies}


def _run(jobs: Jobs, intensity: Series, policy: str, max_delay: timedelta, settings: PolicySettings,
         solar: Series | None, forecast_error: float, seed: int,
         baselines: list[tuple[float | None, float | None]] | None) -> list[JobRecord]:
    rng = np.random.default_rng(seed)
    budget = SolarBudget(solar) if solar is not None else None
    blurred = forecast_error > 0 and policy in ("threshold", "forecast")
    max_delay_s = max_delay.total_seconds()
    records: list[JobRecord | None] = [None] * len(jobs)
    for index in np.argsort(jobs.ready_epoch_s, kind="stable"):
        ready_s, duration_s = int(jobs.ready_epoch_s[index]), float(jobs.duration_s[index])
        deadline_s = min(ready_s + max_delay_s, intensity.end_epoch_s - duration_s)
        seen = (noisy_forecast(intensity, ready_s, deadline_s + duration_s, forecast_error, rng)
                if blurred else intensity)
        job = Job(timedelta(seconds=duration_s), float(jobs.energy_kwh[index]))
        decision = decide(policy, now=from_epoch_s(ready_s), deadline=from_epoch_s(deadline_s), job=job,
                          intensity=seen, settings=settings,
                          solar=budget.remaining(ready_s, deadline_s + duration_s) if budget else None)
        start_s = decision.start.timestamp()
        used_solar = budget.take(start_s, start_s + duration_s, job.power_kw) if budget else None
        records[index] = account(
            job_id=str(jobs.job_id[index]), policy=policy, reason=str(decision.reason), ready_at=decision.now,
            deadline=decision.deadline, started_at=decision.start, ended_at=decision.start + job.duration,
            energy_kwh=job.energy_kwh, intensity=intensity, solar=used_solar,
            baseline=baselines[index] if baselines else None)
    return records
