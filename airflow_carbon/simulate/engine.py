"""Replay a job stream against a carbon series with each policy, using the planners the trigger uses."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from airflow_carbon.accounting import JobRecord, SolarBudget, account
from airflow_carbon.planning import POLICIES, Decision, Job, PolicySettings, decide
from airflow_carbon.planning.policies import DEFAULT_SETTINGS
from airflow_carbon.signals import Series, SignalDataError
from airflow_carbon.signals.series import from_epoch_s
from airflow_carbon.simulate.foresight import NOISE, PERFECT, Foresight, parse_forecast
from airflow_carbon.simulate.jobs import Jobs

#: Policies that plan on what they see of the future; ``oracle`` always sees the truth, ``immediate`` nothing.
FORESEEING = ("threshold", "forecast")


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
    forecast: str = PERFECT,
    refresh: timedelta | None = None,
) -> dict[str, list[JobRecord]]:
    """Records of every job under each policy, each against the immediate run as its baseline.

    ``threshold`` and ``forecast`` plan on what ``forecast`` shows them: ``perfect`` (the real series),
    ``noise:5%`` (see ``noisy_forecast``; ``forecast_error`` is its synonym) or a forecaster's forecast issued
    from the periods measured by each planning instant. With ``refresh``, a waiting job is planned again at
    every multiple of it with a fresh forecast and starts when a plan's start comes before the next refresh,
    as the trigger does; with None it is planned once, when ready. ``oracle`` and the accounting always use
    the real series.
    """
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    if max_delay < timedelta(0):
        raise ValueError(f"max_delay must not be negative, got {max_delay}")
    if not 0 <= forecast_error < 1:
        raise ValueError(f"forecast_error is a fraction in [0, 1), got {forecast_error}")
    if refresh is not None and refresh <= timedelta(0):
        raise ValueError(f"refresh must be positive or None, got {refresh}")
    name, error = parse_forecast(forecast)
    if forecast_error > 0:
        if name not in (PERFECT, NOISE):
            raise ValueError(f"forecast_error blurs the real series; it cannot go with the forecaster {name!r}")
        name, error = NOISE, forecast_error
    check_coverage(jobs, intensity)
    baseline = _run(jobs, intensity, "immediate", max_delay, settings, solar, None, None)
    baselines = [(r.intensity_g_per_kwh, r.emissions_g) for r in baseline]
    horizon = max_delay + timedelta(seconds=float(jobs.duration_s.max(initial=0.0))) + (refresh or timedelta(0))
    results = {}
    for policy in policies:
        if policy == "immediate":
            results[policy] = baseline
            continue
        seen = Foresight(intensity, name if policy in FORESEEING else PERFECT, error, horizon,
                         np.random.default_rng(seed))
        run = _run if refresh is None or policy not in FORESEEING else _run_refreshing
        results[policy] = run(jobs, intensity, policy, max_delay, settings, solar, seen, baselines,
                              *(() if refresh is None or policy not in FORESEEING else (refresh,)))
    return results


def _deadline_s(jobs: Jobs, index: int, intensity: Series, max_delay_s: float) -> float:
    return min(float(jobs.ready_epoch_s[index]) + max_delay_s, intensity.end_epoch_s - float(jobs.duration_s[index]))


def _job(jobs: Jobs, index: int) -> Job:
    return Job(timedelta(seconds=float(jobs.duration_s[index])), float(jobs.energy_kwh[index]))


def _record(jobs: Jobs, index: int, policy: str, decision: Decision, ready_s: float, deadline_s: float,
            start_s: float, intensity: Series, used_solar: Series | None,
            baselines: list[tuple[float | None, float | None]] | None) -> JobRecord:
    job = _job(jobs, index)
    started = from_epoch_s(start_s)
    return account(
        job_id=str(jobs.job_id[index]), policy=policy, reason=str(decision.reason), ready_at=from_epoch_s(ready_s),
        deadline=from_epoch_s(deadline_s), started_at=started, ended_at=started + job.duration,
        energy_kwh=job.energy_kwh, intensity=intensity, solar=used_solar,
        baseline=baselines[index] if baselines else None)


def _upper(seen: Foresight | None, now_s: int, settings: PolicySettings) -> Series | None:
    """The upper band only where the policy reads it: measuring the bands costs a fit per past day."""
    return seen.upper(now_s) if seen is not None and settings.risk_aversion > 0 else None


def _run(jobs: Jobs, intensity: Series, policy: str, max_delay: timedelta, settings: PolicySettings,
         solar: Series | None, seen: Foresight | None,
         baselines: list[tuple[float | None, float | None]] | None) -> list[JobRecord]:
    """Each job planned once, when it becomes ready."""
    budget = SolarBudget(solar) if solar is not None else None
    max_delay_s = max_delay.total_seconds()
    records: list[JobRecord | None] = [None] * len(jobs)
    for index in np.argsort(jobs.ready_epoch_s, kind="stable"):
        ready_s, deadline_s, job = int(jobs.ready_epoch_s[index]), _deadline_s(jobs, index, intensity, max_delay_s), \
            _job(jobs, index)
        view = seen.per_job(ready_s, deadline_s + job.duration_s) if seen is not None else intensity
        decision = decide(policy, now=from_epoch_s(ready_s), deadline=from_epoch_s(deadline_s), job=job,
                          intensity=view, settings=settings, intensity_upper=_upper(seen, ready_s, settings),
                          solar=budget.remaining(ready_s, deadline_s + job.duration_s) if budget else None)
        start_s = decision.start.timestamp()
        used_solar = budget.take(start_s, start_s + job.duration_s, job.power_kw) if budget else None
        records[index] = _record(jobs, index, policy, decision, ready_s, deadline_s, start_s, intensity, used_solar,
                                 baselines)
    return records


def _run_refreshing(jobs: Jobs, intensity: Series, policy: str, max_delay: timedelta, settings: PolicySettings,
                    solar: Series | None, seen: Foresight,
                    baselines: list[tuple[float | None, float | None]] | None, refresh: timedelta) -> list[JobRecord]:
    """Each job planned when ready and again at every refresh while it waits, in time order for all jobs.

    A job starts at a plan's start when that comes before the next refresh. Every job planned at one instant
    sees the same forecast.
    """
    budget = SolarBudget(solar) if solar is not None else None
    max_delay_s, refresh_s = max_delay.total_seconds(), int(refresh.total_seconds())
    deadlines_s = np.array([_deadline_s(jobs, i, intensity, max_delay_s) for i in range(len(jobs))])
    records: list[JobRecord | None] = [None] * len(jobs)
    order = collections.deque(int(i) for i in np.argsort(jobs.ready_epoch_s, kind="stable"))
    waiting: list[int] = []
    planned: dict[int, datetime] = {}  # each waiting job's last planned start, as its trigger keeps it
    tick_s = 0

    def plan(index: int, now_s: int) -> Decision:
        job = _job(jobs, index)
        deadline_s = float(deadlines_s[index])
        decision = decide(policy, now=from_epoch_s(now_s), deadline=from_epoch_s(deadline_s), job=job,
                          intensity=seen.shared(now_s), settings=settings,
                          intensity_upper=_upper(seen, now_s, settings), planned_start=planned.get(index),
                          solar=budget.remaining(now_s, deadline_s + job.duration_s) if budget else None)
        planned[index] = decision.start
        return decision

    def start(index: int, decision: Decision) -> None:
        start_s = decision.start.timestamp()
        duration_s = float(jobs.duration_s[index])
        used = budget.take(start_s, start_s + duration_s, float(jobs.energy_kwh[index]) * 3600.0 / duration_s) \
            if budget else None
        records[index] = _record(jobs, index, policy, decision, float(jobs.ready_epoch_s[index]),
                                 float(deadlines_s[index]), start_s, intensity, used, baselines)

    while order or waiting:
        if not waiting:
            tick_s = (int(jobs.ready_epoch_s[order[0]]) // refresh_s + 1) * refresh_s
        while order and jobs.ready_epoch_s[order[0]] < tick_s:
            index = order.popleft()
            decision = plan(index, int(jobs.ready_epoch_s[index]))
            if decision.start.timestamp() < tick_s:
                start(index, decision)
            else:
                waiting.append(index)
        if waiting:
            # jobs that keep their own planned starts differ in more than their deadlines: planned one by one
            batched = policy == "forecast" and not budget and not settings.replan_margin_pct
            waiting = _replan(waiting, tick_s, refresh_s, plan, start, batched=batched, jobs=jobs,
                              deadlines_s=deadlines_s)
            tick_s += refresh_s
    return records


def _replan(waiting: list[int], now_s: int, refresh_s: int, plan, start, *, batched: bool, jobs: Jobs,
            deadlines_s: np.ndarray) -> list[int]:
    """Plan the waiting jobs again at ``now_s``; start those whose plan comes before the next refresh.

    For the ``forecast`` policy without solar, jobs of one duration and energy differ only in their deadline,
    and "starts before the next refresh" holds for every deadline up to some point (a later deadline only adds
    windows to choose from, and the best of them lies before the next refresh for all those jobs alike), so a
    bisection over the deadlines plans a few jobs, not all.
    """
    still: list[int] = []
    next_s = now_s + refresh_s
    ordered = sorted(waiting, key=lambda i: (jobs.duration_s[i], jobs.energy_kwh[i], deadlines_s[i]))
    if not batched:
        for index in ordered:
            decision = plan(index, now_s)
            (start(index, decision) if decision.start.timestamp() < next_s else still.append(index))
        return still
    groups: dict[tuple[float, float], list[int]] = {}
    for index in ordered:
        groups.setdefault((float(jobs.duration_s[index]), float(jobs.energy_kwh[index])), []).append(index)
    for group in groups.values():
        soon = [i for i in group if deadlines_s[i] < next_s]
        later = [i for i in group if deadlines_s[i] >= next_s]
        for index in soon:
            start(index, plan(index, now_s))
        low, high, found = 0, len(later), None  # later[:low] start before the next refresh; later[high:] do not
        if later:  # most refreshes start none or all of a group: settle those with one plan or two
            first = plan(later[0], now_s)
            if first.start.timestamp() >= next_s:
                high = 0
            else:
                low, found = 1, first
                last = plan(later[-1], now_s) if len(later) > 1 else first
                if last.start.timestamp() < next_s:
                    low, found = len(later), last
        while low < high:
            middle = (low + high) // 2
            decision = plan(later[middle], now_s)
            if decision.start.timestamp() < next_s:
                low, found = middle + 1, decision
            else:
                high = middle
        for index in later[:low]:
            start(index, found)
        still += later[low:]
    return still
