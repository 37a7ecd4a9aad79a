"""Where as well as when: a job stream replayed over several regions, waiting only, moving only, or both.

Four modes, each against the same baseline (every job in its home region, run when ready):

- ``time``: every job stays home and the ``forecast`` policy plans when, as ``simulate`` plans it;
- ``place``: every job runs when ready, in the region whose grid looks cleanest then (``choose_region`` with
  ``immediate``, on the forecaster's value at that instant, or the real one for ``perfect``);
- ``time+place``: ``choose_region`` with ``forecast`` over every region, re-planned at each refresh with fresh
  forecasts, as the trigger does;
- ``oracle``: the best (region, start) on the real series of every region.

A job's home is its pinned region (the jobs file's ``region`` column) or else the home of the stream; a pinned
job has its region as its only candidate in every mode. Each job is accounted on the real series of the region it
ran in, and its saving is split into what the time saved and what the place saved (``split_saving``).
Solar is left out: a site's panels feed one region's workers, not all. Pure: no Airflow.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from airflow_carbon.accounting import JobRecord, account
from airflow_carbon.planning import Job, PolicySettings
from airflow_carbon.planning.policies import DEFAULT_SETTINGS
from airflow_carbon.planning.regions import Candidate, RegionDecision, choose_region, split_saving
from airflow_carbon.signals import Series, SignalDataError
from airflow_carbon.signals.series import from_epoch_s
from airflow_carbon.simulate.engine import check_coverage
from airflow_carbon.simulate.foresight import PERFECT, Foresight, parse_forecast
from airflow_carbon.simulate.jobs import Jobs

TIME, PLACE, TIME_AND_PLACE, ORACLE = "time", "place", "time+place", "oracle"
MODES = (TIME, PLACE, TIME_AND_PLACE, ORACLE)
#: Each mode's policy, and whether it plans on what the forecast shows (else on the real series).
_POLICY = {TIME: ("forecast", True), PLACE: ("immediate", True), TIME_AND_PLACE: ("forecast", True),
           ORACLE: ("oracle", False)}


@dataclass(frozen=True)
class RegionRecord:
    """One job's account in the region it ran in, its baseline being its home region when it became ready.

    ``time_saved_g + place_saved_g`` is the whole saving; either part may be negative.
    """

    record: JobRecord
    home: str
    time_saved_g: float
    place_saved_g: float

    @property
    def region(self) -> str:
        return self.record.region

    @property
    def moved(self) -> bool:
        return self.record.region != self.home

    def to_dict(self) -> dict[str, Any]:
        return self.record.to_dict() | {"home": self.home, "time_saved_g": self.time_saved_g,
                                        "place_saved_g": self.place_saved_g}


@dataclass(frozen=True)
class ModeSummary:
    """One row of the regions table; ``oracle_saved_kg`` is None when the oracle was not run."""

    mode: str
    jobs: int
    moved: int
    delayed: int
    mean_delay_h: float
    deadline_misses: int
    energy_kwh: float
    baseline_kg: float
    scheduled_kg: float
    time_kg: float
    place_kg: float
    oracle_saved_kg: float | None

    @property
    def saved_kg(self) -> float:
        return self.baseline_kg - self.scheduled_kg

    @property
    def saving_pct(self) -> float:
        return 100.0 * self.saved_kg / self.baseline_kg if self.baseline_kg else 0.0

    @property
    def oracle_share(self) -> float | None:
        """The share of the oracle's saving this mode kept."""
        return self.saved_kg / self.oracle_saved_kg if self.oracle_saved_kg else None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"saving_pct": self.saving_pct, "oracle_share": self.oracle_share}


def summarize_regions(results: Mapping[str, Sequence[RegionRecord]]) -> list[ModeSummary]:
    """One row per mode, each with its share of the oracle's saving where the oracle was run."""
    rows = [_summary(mode, records) for mode, records in results.items()]
    oracle = next((row for row in rows if row.mode == ORACLE), None)
    return [replace(row, oracle_saved_kg=oracle.saved_kg if oracle else None) for row in rows]


def _summary(mode: str, records: Sequence[RegionRecord]) -> ModeSummary:
    delays_h = np.array([r.record.delay_s for r in records]) / 3600.0
    return ModeSummary(
        mode=mode,
        jobs=len(records),
        moved=sum(r.moved for r in records),
        delayed=int(np.sum(delays_h > 0)),
        mean_delay_h=float(delays_h.mean()) if len(records) else 0.0,
        deadline_misses=sum(r.record.started_at > r.record.deadline for r in records),
        energy_kwh=sum(r.record.energy_kwh for r in records),
        baseline_kg=sum(r.record.baseline_emissions_g or 0.0 for r in records) / 1000.0,
        scheduled_kg=sum(r.record.emissions_g or 0.0 for r in records) / 1000.0,
        time_kg=sum(r.time_saved_g for r in records) / 1000.0,
        place_kg=sum(r.place_saved_g for r in records) / 1000.0,
        oracle_saved_kg=None,
    )


def simulate_regions(
    jobs: Jobs,
    intensities: Mapping[str, Series],
    *,
    max_delay: timedelta,
    settings: PolicySettings = DEFAULT_SETTINGS,
    forecast: str = PERFECT,
    seed: int = 0,
    refresh: timedelta | None = None,
    home: str | None = None,
    modes: Sequence[str] = MODES,
) -> dict[str, list[RegionRecord]]:
    """Every job's record under each mode, over the regions of ``intensities`` (name: its real series).

    ``home``: where a job that is not pinned runs in its baseline and in ``time`` (default: the first region).
    ``forecast`` and ``refresh`` as in ``simulate``; each region gets its own forecast, made from its own past.
    A job's deadline is its ready time plus ``max_delay``, or earlier where a candidate region's series ends.

    :raises SignalDataError: a job is pinned to a region that is not simulated, or does not fit in a series.
    :raises ValueError: an option is out of range.
    """
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        raise ValueError(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    if not intensities:
        raise ValueError("simulate_regions needs at least one region")
    if max_delay < timedelta(0):
        raise ValueError(f"max_delay must not be negative, got {max_delay}")
    if refresh is not None and refresh <= timedelta(0):
        raise ValueError(f"refresh must be positive or None, got {refresh}")
    name, error = parse_forecast(forecast)
    regions = list(intensities)
    home = regions[0] if home is None else home
    if home not in intensities:
        raise ValueError(f"home region {home!r} is not among the regions {', '.join(regions)}")
    real = {region: series if series.region == region else replace(series, region=region)
            for region, series in intensities.items()}
    homes = _homes(jobs, regions, home)
    allowed = [(h,) if pinned else (h, *(r for r in regions if r != h))
               for h, pinned in zip(homes, _pinned(jobs), strict=True)]
    for region, series in real.items():
        mask = np.array([region in candidates for candidates in allowed], dtype=bool)
        if mask.any():
            check_coverage(_subset(jobs, mask), series)
    deadlines_s = np.array([min(float(jobs.ready_epoch_s[i]) + max_delay.total_seconds(),
                                *(real[r].end_epoch_s - float(jobs.duration_s[i]) for r in allowed[i]))
                            for i in range(len(jobs))])
    horizon = max_delay + timedelta(seconds=float(jobs.duration_s.max(initial=0.0))) + (refresh or timedelta(0))
    results = {}
    for mode in modes:
        policy, foreseeing = _POLICY[mode]
        sights = {region: Foresight(series, name if foreseeing else PERFECT, error, horizon,
                                    np.random.default_rng(seed + index))
                  for index, (region, series) in enumerate(real.items())}
        candidates = [c[:1] for c in allowed] if mode == TIME else allowed
        planner = _Planner(jobs, candidates, deadlines_s, policy, sights, settings)
        every = refresh if policy == "forecast" else None
        chosen = planner.replanned(int(every.total_seconds())) if every is not None else planner.once()
        results[mode] = [_account(jobs, i, mode, chosen[i], homes[i], float(deadlines_s[i]), real)
                         for i in range(len(jobs))]
    return results


def _pinned(jobs: Jobs) -> list[bool]:
    return [False] * len(jobs) if jobs.region is None else [bool(region) for region in jobs.region]


def _homes(jobs: Jobs, regions: Sequence[str], home: str) -> list[str]:
    """Each job's home: its pinned region as ``regions`` spell it (in any case), or ``home``."""
    if jobs.region is None:
        return [home] * len(jobs)
    spelled = {region.casefold(): region for region in regions}
    homes = []
    for index, pinned in enumerate(jobs.region):
        if pinned and pinned.casefold() not in spelled:
            raise SignalDataError(f"job {jobs.job_id[index]} is pinned to region {str(pinned)!r}, which is not among "
                                  f"the regions simulated ({', '.join(regions)})", path=jobs.path,
                                  line=int(jobs.line[index]), column="region")
        homes.append(spelled[pinned.casefold()] if pinned else home)
    return homes


def _subset(jobs: Jobs, mask: np.ndarray) -> Jobs:
    return Jobs(jobs.job_id[mask], jobs.ready_epoch_s[mask], jobs.duration_s[mask], jobs.energy_kwh[mask],
                jobs.line[mask], jobs.path, None if jobs.region is None else jobs.region[mask])


class _Planner:
    """Plans each job over its candidate regions, as one trigger over several regions would."""

    def __init__(self, jobs: Jobs, candidates: Sequence[tuple[str, ...]], deadlines_s: np.ndarray, policy: str,
                 sights: Mapping[str, Foresight], settings: PolicySettings) -> None:
        self.jobs, self.candidates, self.deadlines_s = jobs, candidates, deadlines_s
        self.policy, self.sights, self.settings = policy, sights, settings

    def plan(self, index: int, now_s: int, views: Mapping[str, tuple[Series | None, Series | None]],
             planned: tuple[str, datetime] | None = None) -> RegionDecision:
        """``views``: what each region's grid looks like at ``now_s``, and its upper band where the policy reads it."""
        candidates = [Candidate(region, *views[region]) for region in self.candidates[index]]
        job = Job(timedelta(seconds=float(self.jobs.duration_s[index])), float(self.jobs.energy_kwh[index]))
        return choose_region(self.policy, candidates, now=from_epoch_s(now_s),
                             deadline=from_epoch_s(float(self.deadlines_s[index])), job=job, settings=self.settings,
                             planned=planned)

    def _upper(self, sight: Foresight, now_s: int) -> Series | None:
        """The upper band only where the policy reads it: measuring the bands costs a fit per past day."""
        return sight.upper(now_s) if self.settings.risk_aversion > 0 and self.policy == "forecast" else None

    def once(self) -> list[RegionDecision]:
        """Each job planned once, when it becomes ready; a noisy view is drawn for each job, as ``simulate``'s."""
        chosen = []
        for index in range(len(self.jobs)):
            ready_s = int(self.jobs.ready_epoch_s[index])
            until_s = float(self.deadlines_s[index] + self.jobs.duration_s[index])
            views = {region: (self.sights[region].per_job(ready_s, until_s), self._upper(self.sights[region], ready_s))
                     for region in self.candidates[index]}
            chosen.append(self.plan(index, ready_s, views))
        return chosen

    def replanned(self, refresh_s: int) -> list[RegionDecision]:
        """Each job planned when ready and again at every refresh while it waits, in time order for all jobs.

        A job starts at a plan's start when that comes before the next refresh, in the region that plan chose.
        Every job planned at one instant sees the same forecasts.
        """
        jobs = self.jobs
        chosen: list[RegionDecision | None] = [None] * len(jobs)
        order = collections.deque(int(i) for i in np.argsort(jobs.ready_epoch_s, kind="stable"))
        waiting: list[int] = []
        tick_s = 0
        seen: dict[int, dict[str, tuple[Series | None, Series | None]]] = {}  # the views at the latest instant

        def plan(index: int, now_s: int) -> RegionDecision:
            if now_s not in seen:
                seen.clear()
                seen[now_s] = {region: (sight.shared(now_s), self._upper(sight, now_s))
                               for region, sight in self.sights.items()}
            previous = chosen[index]
            decision = self.plan(index, now_s, seen[now_s],
                                 None if previous is None else (previous.region, previous.decision.start))
            chosen[index] = decision
            return decision

        while order or waiting:
            if not waiting:
                tick_s = (int(jobs.ready_epoch_s[order[0]]) // refresh_s + 1) * refresh_s
            while order and jobs.ready_epoch_s[order[0]] < tick_s:
                index = order.popleft()
                if plan(index, int(jobs.ready_epoch_s[index])).decision.start.timestamp() >= tick_s:
                    waiting.append(index)
            waiting = [i for i in waiting if plan(i, tick_s).decision.start.timestamp() >= tick_s + refresh_s]
            tick_s += refresh_s
        return chosen


def _account(jobs: Jobs, index: int, mode: str, chosen: RegionDecision, home: str, deadline_s: float,
             real: Mapping[str, Series]) -> RegionRecord:
    """The job accounted where and when it ran, against its home region when it became ready."""
    started = chosen.decision.start
    fields = dict(job_id=str(jobs.job_id[index]), policy=mode, reason=str(chosen.decision.reason),
                  ready_at=from_epoch_s(int(jobs.ready_epoch_s[index])), deadline=from_epoch_s(deadline_s),
                  started_at=started, ended_at=started + timedelta(seconds=float(jobs.duration_s[index])),
                  energy_kwh=float(jobs.energy_kwh[index]))
    at_home = account(**fields, intensity=real[home])
    record = at_home if chosen.region == home else account(
        **fields, intensity=real[chosen.region],
        baseline=(at_home.baseline_intensity_g_per_kwh, at_home.baseline_emissions_g))
    if at_home.baseline_emissions_g is None or at_home.emissions_g is None or record.emissions_g is None:
        raise SignalDataError(f"job {jobs.job_id[index]}: a series does not cover its run", path=jobs.path,
                              line=int(jobs.line[index]))
    time_g, place_g = split_saving(at_home.baseline_emissions_g, at_home.emissions_g, record.emissions_g)
    return RegionRecord(record, home, time_g, place_g)



def mode_table(rows: Sequence[ModeSummary]) -> str:
    """One row per mode: where the saving came from (waiting, moving) and how much of the oracle's it kept."""
    frame = pd.DataFrame(
        {
            "mode": [r.mode for r in rows],
            "jobs": [r.jobs for r in rows],
            "moved": [r.moved for r in rows],
            "delayed": [r.delayed for r in rows],
            "mean delay h": [r.mean_delay_h for r in rows],
            "baseline kg": [r.baseline_kg for r in rows],
            "scheduled kg": [r.scheduled_kg for r in rows],
            "change %": [0.0 - r.saving_pct for r in rows],
            "saved by time kg": [r.time_kg for r in rows],
            "saved by place kg": [r.place_kg for r in rows],
            "of oracle %": [np.nan if r.oracle_share is None else 100.0 * r.oracle_share for r in rows],
            "deadline misses": [r.deadline_misses for r in rows],
        }
    )
    return frame.to_string(index=False, float_format=lambda value: f"{value:.3f}", na_rep="-")
