"""Where as well as when: the best (region, start) pair among the regions a job may run in.

Each candidate region is planned as a single-region job is (``decide``, on its own signal), and the one whose
expected emissions at its best start are least, after its penalty, is chosen. Moving work has a cost, so a
candidate's ``penalty_pct`` counts its emissions that much higher when they are compared: "prefer DE unless FR saves
at least 20%" is FR with ``penalty_pct=25`` (0.8 * 1.25 = 1). The first candidate is the home region: it wins ties,
its run when ready is the baseline, and it is planned alone when every candidate's signal failed.

The saving of a moved and delayed job splits in two parts that add up to it: what the time saved (the home region
when ready, against the home region at the chosen start) and what the place saved (the home region at the chosen
start, against the chosen region then). Pure: no Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from airflow_carbon.planning.decision import Decision
from airflow_carbon.planning.policies import DEFAULT_SETTINGS, Job, PolicySettings, decide
from airflow_carbon.signals import Series


@dataclass(frozen=True)
class Candidate:
    """A region the job may run in, with what is known of its grid (None: its signal failed).

    :param penalty_pct: how much higher its expected emissions count when regions are compared (>= 0).
    """

    region: str
    intensity: Series | None
    intensity_upper: Series | None = None
    penalty_pct: float = 0.0

    def __post_init__(self) -> None:
        if not self.penalty_pct >= 0:
            raise ValueError(f"region {self.region}: penalty_pct must be >= 0, got {self.penalty_pct}")


@dataclass(frozen=True)
class RegionDecision:
    """The chosen region and its plan, every candidate's expected emissions at its own best start (None where its
    signal failed), and the baseline: the home region run now."""

    region: str
    decision: Decision
    home: str
    expected_g: dict[str, float | None] = field(default_factory=dict)
    failed: tuple[str, ...] = ()
    #: Each candidate's expected emissions had it run now, where its signal answered.
    now_g: dict[str, float | None] = field(default_factory=dict)

    @property
    def baseline_g(self) -> float | None:
        return self.now_g.get(self.home)


def choose_region(policy: str, candidates: Sequence[Candidate], *, now: datetime, deadline: datetime, job: Job,
                  settings: PolicySettings = DEFAULT_SETTINGS,
                  planned: tuple[str, datetime] | None = None) -> RegionDecision:
    """Plan the job in every candidate region and keep the least emitting (region, start), penalties counted.

    ``planned``: the region and start a previous plan chose; each region is re-planned with its own previous start
    only where it is that region. With every signal failed, the home region is planned alone, as a single-region
    job is: it waits for a signal until its deadline (or runs at once, per ``on_unavailable``).
    """
    if not candidates:
        raise ValueError("choose_region needs at least one candidate region")
    regions = [candidate.region for candidate in candidates]
    if len(set(regions)) != len(regions):
        raise ValueError(f"candidate regions must differ, got {', '.join(regions)}")
    home = candidates[0]
    plans: dict[str, Decision] = {}
    for candidate in candidates:
        if candidate.intensity is None:
            continue
        previous = planned[1] if planned is not None and planned[0] == candidate.region else None
        plans[candidate.region] = decide(policy, now=now, deadline=deadline, job=job, intensity=candidate.intensity,
                                         settings=settings, intensity_upper=candidate.intensity_upper,
                                         planned_start=previous)
    failed = tuple(region for region in regions if region not in plans)
    expected_g = {region: plans[region].expected_emissions_at_start_g if region in plans else None
                  for region in regions}
    now_g = {region: plans[region].expected_emissions_now_g if region in plans else None for region in regions}
    scored = [(expected_g[c.region] * (1 + c.penalty_pct / 100.0), index, c.region)
              for index, c in enumerate(candidates) if expected_g[c.region] is not None]
    if not scored:
        alone = plans.get(home.region) or decide(policy, now=now, deadline=deadline, job=job, intensity=None,
                                                  settings=settings)
        return RegionDecision(home.region, alone, home.region, expected_g, failed, now_g)
    _, _, region = min(scored)
    return RegionDecision(region, plans[region], home.region, expected_g, failed, now_g)


def split_saving(baseline_g: float, home_at_start_g: float, chosen_g: float) -> tuple[float, float]:
    """The saving ``baseline_g - chosen_g`` as (what the time saved, what the place saved).

    ``baseline_g``: the home region when ready; ``home_at_start_g``: the home region at the chosen start;
    ``chosen_g``: the chosen region at the chosen start. Either part may be negative (waiting in a region whose
    grid got dirtier, moving to one that is dirtier then), and they always add up to the whole.
    """
    return baseline_g - home_at_start_g, home_at_start_g - chosen_g
