"""The policies: pure functions from (now, deadline, job, forecast, solar) to a ``Decision``.

``immediate`` runs at once; ``threshold`` is the seed experiment's rule; ``forecast``
picks the start in [now, deadline] with the least emissions integrated over the job;
``oracle`` is ``forecast`` handed the real series (simulation only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from airflow_carbon.planning.decision import Decision, Reason
from airflow_carbon.planning.window import candidate_starts, rate_steps, values_at, window_integrals
from airflow_carbon.signals import Series
from airflow_carbon.signals.series import from_epoch_s, to_epoch_s

#: The share of a job's energy that solar must cover for a start to be called a solar start.
SOLAR_REASON_SHARE = 0.5
#: Emissions within this fraction of the minimum count as equal; the earliest such start wins.
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Job:
    """What the planner needs to know of a task: how long it runs and what it uses."""

    duration: timedelta
    energy_kwh: float

    def __post_init__(self) -> None:
        if self.duration <= timedelta(0):
            raise ValueError(f"job duration must be positive, got {self.duration}")
        if not np.isfinite(self.energy_kwh) or self.energy_kwh < 0:
            raise ValueError(f"job energy_kwh must be a finite number >= 0, got {self.energy_kwh}")

    @property
    def duration_s(self) -> float:
        return self.duration.total_seconds()

    @property
    def power_kw(self) -> float:
        return self.energy_kwh / (self.duration_s / 3600.0)


#: The defaults of a task, a simulation and the Carbon view alike, written once.
DEFAULT_THRESHOLD_G_PER_KWH = 250.0
DEFAULT_MAX_DELAY = timedelta(hours=4)
#: Chosen on the measurements of bench/RESULTS.md §5c (see the README's "Savings on real grids").
DEFAULT_MIN_SAVING_PCT = 0.0
DEFAULT_RISK_AVERSION = 0.25
DEFAULT_REPLAN_MARGIN_PCT = 10.0


@dataclass(frozen=True)
class PolicySettings:
    """Knobs of the policies; each policy reads only its own.

    :param threshold_g_per_kwh: ``threshold``: a period at or below this intensity is green.
    :param solar_threshold_kw: ``threshold``: on-site solar at or above this is enough;
        None means the job's own power.
    :param min_saving_pct: ``forecast``: wait only when it saves at least this share of
        running now.
    :param risk_aversion: ``forecast``: how far toward its upper quantile a forecaster's forecast is
        taken when windows are compared (0: its point forecast; 1: the upper quantile), so an uncertain
        later window must beat a near one by more than the forecaster's usual error.
    :param replan_margin_pct: ``forecast``, re-planning a waiting job: keep the start planned before over
        a later best start that does not beat it by at least this share, so that a forecast that errs does
        not chase the start later and later as its minimum moves; an earlier best is always taken.
    :param on_unavailable: with no signal covering now, ``wait`` (plan on the deadline and
        re-plan when data comes) or ``run`` at once.
    """

    threshold_g_per_kwh: float = DEFAULT_THRESHOLD_G_PER_KWH
    solar_threshold_kw: float | None = None
    min_saving_pct: float = DEFAULT_MIN_SAVING_PCT
    on_unavailable: Literal["wait", "run"] = "wait"
    risk_aversion: float = DEFAULT_RISK_AVERSION
    replan_margin_pct: float = DEFAULT_REPLAN_MARGIN_PCT

    def __post_init__(self) -> None:
        if not self.threshold_g_per_kwh >= 0:
            raise ValueError(f"threshold_g_per_kwh must be >= 0, got {self.threshold_g_per_kwh}")
        if self.solar_threshold_kw is not None and not self.solar_threshold_kw >= 0:
            raise ValueError(f"solar_threshold_kw must be >= 0, got {self.solar_threshold_kw}")
        if not 0 <= self.min_saving_pct < 100:
            raise ValueError(f"min_saving_pct must be in [0, 100), got {self.min_saving_pct}")
        if not 0 <= self.replan_margin_pct < 100:
            raise ValueError(f"replan_margin_pct must be in [0, 100), got {self.replan_margin_pct}")
        if not 0 <= self.risk_aversion <= 1:
            raise ValueError(f"risk_aversion must be in [0, 1], got {self.risk_aversion}")
        if self.on_unavailable not in ("wait", "run"):
            raise ValueError(f"on_unavailable must be 'wait' or 'run', got {self.on_unavailable!r}")


@dataclass(frozen=True)
class _Request:
    """One planning call in epoch seconds, so the policies are plain arithmetic."""

    policy: str
    now_s: int
    deadline_s: int
    job: Job
    intensity: Series | None
    solar: Series | None
    settings: PolicySettings
    cautious: Series | None = None
    planned_s: float | None = None

    def decision(self, start_s: float, reason: Reason, now_g: float | None = None, start_g: float | None = None,
                 *, extrapolated: bool = False) -> Decision:
        start_s = min(max(start_s, self.now_s), self.deadline_s)
        return Decision(
            policy=self.policy,
            now=from_epoch_s(self.now_s),
            start=from_epoch_s(start_s),
            deadline=from_epoch_s(self.deadline_s),
            reason=reason,
            expected_emissions_now_g=now_g,
            expected_emissions_at_start_g=start_g,
            extrapolated=extrapolated,
        )


def _immediate(request: _Request) -> Decision:
    emitted_g = _expected_g(request, float(request.now_s))
    return request.decision(request.now_s, Reason.IMMEDIATE, emitted_g, emitted_g)


def _threshold(request: _Request) -> Decision:
    """The seed's rule: the first moment in the budget that is green or sunny enough, else at once."""
    intensity, settings = request.intensity, request.settings
    first = (request.now_s - intensity.first_epoch_s) // intensity.period_s
    last = min((request.deadline_s - intensity.first_epoch_s) // intensity.period_s + 1, len(intensity))
    moments = np.maximum(intensity.start_epoch_s[first:last], request.now_s)
    green = intensity.values[first:last] <= settings.threshold_g_per_kwh
    solar_threshold_kw = request.job.power_kw if settings.solar_threshold_kw is None else settings.solar_threshold_kw
    sunny = values_at(request.solar, moments) >= solar_threshold_kw if request.solar is not None else green & False
    hits = np.flatnonzero(green | sunny)
    now_g = _expected_g(request, float(request.now_s))
    if not hits.size:
        return request.decision(request.now_s, Reason.NO_GREEN_WINDOW, now_g, now_g)
    start_s = float(moments[hits[0]])
    return request.decision(start_s, Reason.GREEN_WINDOW if green[hits[0]] else Reason.SOLAR, now_g,
                            _expected_g(request, start_s))


def _expected_g(request: _Request, start_s: float) -> float | None:
    """Emissions of the job started at ``start_s``; None where the signal does not cover it."""
    intensity = request.intensity
    if intensity is None or not len(intensity):
        return None
    if start_s < intensity.first_epoch_s or start_s + request.job.duration_s > intensity.end_epoch_s:
        return None
    end_s = start_s + request.job.duration_s
    edges, rates, _ = rate_steps(intensity, request.job.power_kw, request.solar, start_s, end_s)
    return float(rates @ np.diff(edges))


def _forecast(request: _Request) -> Decision:
    """The start in [now, deadline] with the least emissions over the job, within what the forecast knows."""
    intensity, duration_s, now_s = request.intensity, request.job.duration_s, float(request.now_s)
    latest_s = min(float(request.deadline_s), intensity.end_epoch_s - duration_s)
    extrapolated = latest_s < now_s
    if extrapolated:
        intensity = _hold_last_value(intensity, request.deadline_s + duration_s)
        latest_s = float(request.deadline_s)
    cautious = request.cautious
    if extrapolated and cautious is not None:
        cautious = _hold_last_value(cautious, request.deadline_s + duration_s)
    end_s = latest_s + duration_s
    edges, rates, solar_kw = rate_steps(intensity, request.job.power_kw, request.solar, now_s, end_s)
    starts = candidate_starts(edges, now_s, latest_s, duration_s)
    if request.planned_s is not None and now_s <= request.planned_s <= latest_s:
        starts = np.union1d(starts, [request.planned_s])
    emissions_g = window_integrals(edges, rates, starts, duration_s)
    compared_g = emissions_g
    if cautious is not None:
        cautious_edges, cautious_rates, _ = rate_steps(cautious, request.job.power_kw, request.solar, now_s, end_s)
        compared_g = window_integrals(cautious_edges, cautious_rates, starts, duration_s)
    best = _keep_plan(request, starts, compared_g,
                      int(np.flatnonzero(compared_g <= compared_g.min() * (1 + TIE_TOLERANCE) + TIE_TOLERANCE)[0]))
    now_g, best_g = float(emissions_g[0]), float(emissions_g[best])
    saving_pct = 100.0 * (compared_g[0] - compared_g[best]) / compared_g[0] if compared_g[0] > 0 else 0.0
    if best and saving_pct < request.settings.min_saving_pct:
        return request.decision(now_s, Reason.BELOW_MIN_SAVING, now_g, now_g, extrapolated=extrapolated)
    solar_kwh = float(window_integrals(edges, solar_kw / 3600.0, starts[best:best + 1], duration_s)[0])
    reason = Reason.SOLAR if solar_kwh >= SOLAR_REASON_SHARE * request.job.energy_kwh > 0 else Reason.GREEN_WINDOW
    return request.decision(float(starts[best]), reason, now_g, best_g, extrapolated=extrapolated)


def _keep_plan(request: _Request, starts: np.ndarray, compared_g: np.ndarray, best: int) -> int:
    """The start planned before, when the new best lies later and does not beat it by ``replan_margin_pct``: a
    forecast that errs must not chase a start later and later. At the planned start itself (now), running now
    unless waiting on beats it by as much."""
    margin = request.settings.replan_margin_pct / 100.0
    if request.planned_s is None or not margin:
        return best
    at = np.flatnonzero(starts == max(request.planned_s, float(request.now_s)))
    if not at.size:
        return best
    kept = int(at[0])
    if best < kept or compared_g[kept] > compared_g[0]:  # never resist an earlier start, nor keep one worse than now
        return best
    return kept if compared_g[best] > compared_g[kept] * (1.0 - margin) else best


def _cautious(intensity: Series | None, upper: Series | None, weight: float) -> Series | None:
    """The forecast moved ``weight`` of the way to its upper quantile; None when there is nothing to move."""
    if (intensity is None or upper is None or weight == 0 or len(upper) != len(intensity)
            or upper.first_epoch_s != intensity.first_epoch_s or upper.period_s != intensity.period_s):
        return None
    return replace(intensity, values=intensity.values + weight * np.maximum(upper.values - intensity.values, 0.0))


def _hold_last_value(series: Series, until_s: float) -> Series:
    """Persistence beyond the horizon: the last known value holds until ``until_s``."""
    extra = int(np.ceil((until_s - series.end_epoch_s) / series.period_s))
    starts = np.concatenate((series.start_epoch_s, series.end_epoch_s + series.period_s * np.arange(extra)))
    return Series(starts, np.concatenate((series.values, np.full(extra, series.values[-1]))), series.period_s,
                  series.region, series.unit, "forecast", series.source, series.replayed, estimated=True)


DEFAULT_SETTINGS = PolicySettings()

POLICIES: dict[str, Callable[[_Request], Decision]] = {
    "immediate": _immediate,
    "threshold": _threshold,
    "forecast": _forecast,
    "oracle": _forecast,
}


def stricter(policy: str, settings: PolicySettings) -> tuple[str, PolicySettings]:
    """How a DAG over its carbon budget plans when it asked to: the forecast policy over its whole delay, waiting
    for any saving at all and taking forecasts at their word, so each task uses its delay to the full."""
    if policy == "oracle":
        return policy, settings
    return "forecast", replace(settings, min_saving_pct=0.0, risk_aversion=0.0)


def decide(
    policy: str,
    *,
    now: datetime,
    deadline: datetime,
    job: Job,
    intensity: Series | None,
    solar: Series | None = None,
    settings: PolicySettings = DEFAULT_SETTINGS,
    intensity_upper: Series | None = None,
    planned_start: datetime | None = None,
) -> Decision:
    """Plan one job: run now, or wait until a start no later than ``deadline``.

    ``intensity`` is what is known of the grid from ``now`` on (a forecast, or for
    ``oracle`` the real series); ``solar`` is the on-site power free for this job;
    ``intensity_upper`` the same periods at a forecaster's upper quantile, where one made them;
    ``planned_start`` the start a previous plan of this job chose, when it is re-planned.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    now_s, deadline_s = to_epoch_s(now), to_epoch_s(deadline)
    request = _Request(policy, now_s, max(deadline_s, now_s), job, intensity, solar, settings,
                       _cautious(intensity, intensity_upper, settings.risk_aversion),
                       None if planned_start is None else float(to_epoch_s(planned_start)))
    if now_s >= deadline_s:
        emitted_g = _expected_g(request, float(now_s))
        return request.decision(now_s, Reason.DEADLINE, emitted_g, emitted_g)
    if policy == "immediate":
        return _immediate(request)
    if intensity is None or intensity.at(now) is None:
        wait_s = request.deadline_s if settings.on_unavailable == "wait" else now_s
        return request.decision(wait_s, Reason.SIGNAL_UNAVAILABLE)
    return POLICIES[policy](request)

