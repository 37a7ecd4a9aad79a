"""Where as well as when: a branch that waits for the best (region, start) among the regions its work may run in,
then follows the task of the chosen region only.

In Airflow a place is a path: a task pinned to each region's workers (``queue="fr"``), and a choice among them.
``CarbonAwareBranchOperator`` plans every candidate region on its own signal (``planning.regions.choose_region``),
defers to ``CarbonRegionsTrigger`` (no worker slot) until the best pair comes or the deadline, then branches to the
chosen region's task; the other candidates are skipped. Like ``CarbonAwareSensor``, its record claims no energy of
its own: the chosen task's energy is added to it when that task finishes (``plugins/gated.py``), accounted on the
chosen region's signal against the home region's when ready, with the saving split into time and place.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.providers.standard.operators.python import PythonOperator

from airflow_carbon.accounting.energy import gated
from airflow_carbon.clock import utcnow
from airflow_carbon.errors import CarbonError
from airflow_carbon.links import CarbonDecisionLink
from airflow_carbon.metrics.record import TaskTryRecord
from airflow_carbon.operators.carbon_aware import set_carbon_options
from airflow_carbon.operators.runtime import CarbonTaskRun, checked_source_refs, resolve_settings, source_refs
from airflow_carbon.settings import OPTION_NAMES, CarbonSettings, CarbonSettingsError, check_arguments, check_given
from airflow_carbon.signals.source import SourceRef
from airflow_carbon.triggers.carbon import CarbonWindowTrigger
from airflow_carbon.triggers.event import Candidacy, CarbonEvent
from airflow_carbon.triggers.regions import CarbonRegionsTrigger

log = logging.getLogger(__name__)

#: What a candidate region may carry besides its task: its own signal source, fallbacks and forecaster, and a penalty.
REGION_KEYS = ("task_id", "source", "fallback", "forecaster", "penalty_pct")
#: Carbon settings a choice does not take: its regions say where, and on-site solar belongs to one site.
NOT_FOR_A_CHOICE = ("region", "solar", "site", "solar_threshold_kw")
#: A penalty above this is a typo, not a preference.
MAX_PENALTY_PCT = 1000.0


@dataclass(frozen=True)
class RegionOption:
    """A candidate region as the DAG author gave it; None: the task's own setting."""

    region: str
    task_id: str
    source: str | None = None
    fallback: tuple[str, ...] | None = None
    forecaster: str | None = None
    penalty_pct: float = 0.0

    def settings(self, settings: CarbonSettings) -> CarbonSettings:
        """The task's settings for this region: its region, and its own sources where it names them."""
        return replace(settings, region=self.region,
                       source=self.source if self.source is not None else settings.source,
                       fallback=self.fallback if self.fallback is not None else settings.fallback,
                       forecaster=self.forecaster if self.forecaster is not None else settings.forecaster)


def parse_regions(task_id: str, regions: Any) -> tuple[RegionOption, ...]:
    """The candidate regions, home first: ``{"FR": "evaluate_fr", "DE": {"task_id": "evaluate_de", "penalty_pct":
    25}}``. Refused at parse time with the task, the region and the key named."""
    example = "{'FR': 'evaluate_fr', 'DE': 'evaluate_de'}"
    if not isinstance(regions, Mapping) or not regions:
        raise CarbonSettingsError(f"task {task_id!r}: regions must map each candidate region to the task that runs "
                                  f"there, e.g. {example}; got {regions!r}")
    options: list[RegionOption] = []
    for region, given in regions.items():
        where = f"task {task_id!r}: regions[{region!r}]"
        if not isinstance(region, str) or not region.strip():
            raise CarbonSettingsError(f"{where}: a region is a non-empty name such as 'FR'")
        spec = {"task_id": given} if isinstance(given, str) else given
        if not isinstance(spec, Mapping):
            raise CarbonSettingsError(f"{where}: give the task id, or a dict with {', '.join(REGION_KEYS)}; "
                                      f"got {given!r}")
        unknown = sorted(set(spec) - set(REGION_KEYS))
        if unknown:
            raise CarbonSettingsError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(REGION_KEYS)}")
        if not isinstance(spec.get("task_id"), str) or not spec["task_id"].strip():
            raise CarbonSettingsError(f"{where}: task_id must name the task that runs in {region}")
        try:
            sources = check_given(task_id, {name: spec.get(name) for name in ("source", "fallback", "forecaster")})
        except CarbonSettingsError as error:
            raise CarbonSettingsError(f"{where}: {error}") from None
        penalty_pct = spec.get("penalty_pct") or 0.0
        if (isinstance(penalty_pct, bool) or not isinstance(penalty_pct, int | float) or not math.isfinite(penalty_pct)
                or not 0 <= penalty_pct <= MAX_PENALTY_PCT):
            raise CarbonSettingsError(f"{where}: penalty_pct must be a number from 0 to {MAX_PENALTY_PCT:.0f} (how "
                                      f"much higher its emissions count when regions are compared), got "
                                      f"{penalty_pct!r}")
        options.append(RegionOption(region.strip(), spec["task_id"].strip(), sources.get("source"),
                                    sources.get("fallback"), sources.get("forecaster"), float(penalty_pct)))
    names = [option.region.upper() for option in options]
    if len(set(names)) != len(names):
        raise CarbonSettingsError(f"task {task_id!r}: regions name a region twice: {', '.join(regions)}")
    return tuple(options)


def narrow(task_id: str, options: Sequence[RegionOption], narrowed: Any) -> tuple[RegionOption, ...]:
    """The candidates a choice's callable kept (None: all), in the order the DAG gave them."""
    if narrowed is None:
        return tuple(options)
    names = [narrowed] if isinstance(narrowed, str) else list(narrowed) if isinstance(narrowed, Iterable) else None
    known = [option.region for option in options]
    if names is None or any(name not in known for name in names):
        raise CarbonSettingsError(f"task {task_id!r}: its callable returned {narrowed!r}; return None (every region) "
                                  f"or some of its regions: {', '.join(known)}")
    kept = tuple(option for option in options if option.region in names)
    if not kept:
        raise CarbonSettingsError(f"task {task_id!r}: its callable kept none of its regions ({', '.join(known)})")
    return kept


@dataclass
class CarbonRegionRun(CarbonTaskRun):
    """A try of a choice between regions: ``CarbonTaskRun`` planned over every candidate region; its ``sources``
    and ``settings.region`` are the home region's until it chooses."""

    candidacies: tuple[Candidacy, ...] = ()

    @classmethod
    def choose(cls, task: Any, context: Any, settings: CarbonSettings,
               options: Sequence[RegionOption]) -> CarbonRegionRun:
        """Each candidate's sources opened once, naming the task and connection when one cannot be."""
        home, *others = options
        run: CarbonRegionRun = cls.start(task, context, home.settings(settings), learn=False)  # type: ignore[assignment]
        run.candidacies = (Candidacy(home.region, home.task_id, tuple(run.sources), home.penalty_pct),
                           *(Candidacy(option.region, option.task_id,
                                       tuple(checked_source_refs(task.task_id, option.settings(settings))),
                                       option.penalty_pct) for option in others))
        return run

    def decide_now(self) -> CarbonEvent:
        now = utcnow()
        readings = {c.region: self.read_signal(list(c.sources), now) for c in self.candidacies}
        self.check_files = False
        policy, settings, override = self.planning_terms(now)
        return CarbonEvent.of_choice(policy, settings, self.candidacies, readings, now=now, ready_at=self.ready_at,
                                     deadline=self.deadline, job=self.job, task_settings=self.settings,
                                     override=override)

    def trigger(self) -> CarbonWindowTrigger:
        _, kwargs = super().trigger().serialize()
        return CarbonRegionsTrigger(**kwargs, candidates=[c.to_dict() for c in self.candidacies])

    def _record(self, event: CarbonEvent, state: str, **values: Any) -> TaskTryRecord:
        record = super()._record(event, state, **values)
        choice = event.choice
        if choice is None:
            return record
        return replace(record, region=choice.region, source=_first_name(event.sources, record.source),
                       home_region=choice.home, chosen_task_id=choice.task_id,
                       region_expected_g=dict(choice.expected_g))


def _first_name(sources: Sequence[SourceRef], default: str | None) -> str | None:
    return sources[0].name if sources else default


class CarbonAwareBranchOperator(BaseBranchOperator):
    """Wait for the best (region, start) among ``regions``, then follow the chosen region's task only.

    :param regions: the candidate regions, home first (its run when ready is the baseline; it wins ties): region ->
        the id of the task that runs there (pinned to that region's workers, e.g. ``queue="fr"``), or region ->
        ``{"task_id", "source", "fallback", "forecaster", "penalty_pct"}``. A candidate without its own ``source``
        reads the task's ``source`` connection for its region, else its region's bundled data. ``penalty_pct``: how
        much higher its emissions count, as moving work has a cost ("prefer DE unless FR saves 20%": FR with 25).

    Every other carbon setting of ``@task.carbon_aware`` applies (``max_delay`` or ``deadline``, ``energy_kwh`` or
    ``power_kw`` and ``expected_duration`` of the work downstream, ``policy``, ``refresh_interval``, ...), except
    ``region`` and the solar settings. A candidate whose signal fails is skipped and recorded as failed; when all
    fail, the home region runs by the deadline.
    """

    template_fields = ("carbon_deadline",)
    ui_color = "#b7e4c7"
    operator_extra_links = (CarbonDecisionLink(),)

    def __init__(self, *, regions: Mapping[str, str | Mapping[str, Any]], **kwargs: Any) -> None:
        task_id = kwargs.get("task_id", "?")
        options = {name: kwargs.pop(name) for name in OPTION_NAMES if name in kwargs}
        refused = sorted(set(options) & set(NOT_FOR_A_CHOICE))
        if refused:
            raise CarbonSettingsError(f"task {task_id!r}: a choice between regions takes no carbon setting "
                                      f"{refused[0]!r}: its regions say where the work may run")
        check_arguments(task_id, kwargs, type(self))
        super().__init__(**kwargs)
        self.region_options = parse_regions(self.task_id, regions)
        set_carbon_options(self, options)

    def execute(self, context: Any) -> Any:
        options = narrow(self.task_id, self.region_options, self.narrowed_regions(context))
        self._check_downstream(options)
        run = CarbonRegionRun.choose(self, context, resolve_settings(self), options)
        return self._follow(context, run, run.wait_if_needed(self))

    def narrowed_regions(self, context: Any) -> Any:
        """The regions this try may choose among; None: all of them."""
        return None

    def carbon_resume(self, context: Any, event: dict[str, Any]) -> Any:
        """Where the choice resumes when its trigger fires: record it, then follow the chosen region's task."""
        carbon_event = CarbonEvent.from_json(self.task_id, event)
        return self._follow(context, CarbonRegionRun.resume(self, context, carbon_event), carbon_event)

    def _follow(self, context: Any, run: CarbonTaskRun, event: CarbonEvent) -> Any:
        choice = event.choice
        if choice is None:
            raise CarbonError(f"task {self.task_id!r}: its trigger's event chose no region")
        chosen_at = utcnow()
        run.finish(context, event, chosen_at, chosen_at, energy=gated(run.settings.pue, "choice between regions"),
                   estimated=True)
        expected = ", ".join(f"{region} {'failed' if grams is None else f'{grams:.1f} g'}"
                             for region, grams in choice.expected_g.items())
        log.info("carbon: task %r chose region %s (%s; home %s; expected at each region's best start: %s): "
                 "following %r", self.task_id, choice.region, event.reason, choice.home, expected, choice.task_id)
        return self.do_branch(context, choice.task_id)

    def _check_downstream(self, options: Sequence[RegionOption]) -> None:
        """A region's task must follow the choice directly, or Airflow could not skip the others."""
        groups = self.dag.task_group_dict if self.dag is not None else {}
        for option in options:
            if option.task_id not in self.downstream_task_ids and option.task_id not in groups:
                raise CarbonSettingsError(f"task {self.task_id!r}: regions[{option.region!r}] names task "
                                          f"{option.task_id!r}, which is not directly downstream of it; set "
                                          f"{self.task_id} >> {option.task_id}")

    def region_sources(self, settings: CarbonSettings) -> dict[str, list[SourceRef]]:
        """Each candidate region's sources for ``settings`` (the choice's own), as its tasks read them."""
        return {option.region: source_refs(option.settings(settings)) for option in self.region_options}


class CarbonAwareBranchPythonOperator(CarbonAwareBranchOperator, PythonOperator):
    """The choice after a Python callable, which may narrow the candidates: it returns None (every region), a region
    or a list of them (data that may not leave a country, a region whose workers are down)."""

    template_fields = (*PythonOperator.template_fields, *CarbonAwareBranchOperator.template_fields)

    def narrowed_regions(self, context: Any) -> Any:
        return PythonOperator.execute(self, context)
