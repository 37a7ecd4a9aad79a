"""What a carbon-aware task learns when its wait ends, or when it plans to run at once: one type for both.

It carries what the task needs to finish, its settings and sources included, so a resumed task
neither resolves its settings again nor reads its connections to check them. Plain JSON, no secret.
No Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from airflow_carbon.control import Override
from airflow_carbon.errors import CarbonError
from airflow_carbon.planning import Decision, Job, PolicySettings, Reason
from airflow_carbon.planning.regions import Candidate, choose_region
from airflow_carbon.settings import CarbonSettings
from airflow_carbon.signals.series import Series
from airflow_carbon.signals.source import Reading, SourceRef
from airflow_carbon.units import parse_instant


class InvalidEventError(CarbonError, ValueError):
    """A trigger event that is not a carbon event; the message names the field."""


@dataclass(frozen=True)
class Candidacy:
    """A region a choice between regions may send its work to: the task that runs there, the sources read for it
    (its own, or the task's with its region), and how much higher its emissions count when compared."""

    region: str
    task_id: str
    sources: tuple[SourceRef, ...]
    penalty_pct: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"region": self.region, "task_id": self.task_id, "sources": [ref.to_dict() for ref in self.sources],
                "penalty_pct": self.penalty_pct}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidacy:
        return cls(str(data["region"]), str(data["task_id"]),
                   tuple(SourceRef.from_dict(ref) for ref in data["sources"]), float(data.get("penalty_pct") or 0.0))


@dataclass(frozen=True)
class RegionChoice:
    """Where a choice between regions sends its work: the region, its task, the home region (the baseline), each
    candidate's expected emissions at its own best start (None where its signal failed) and the failed regions."""

    region: str
    task_id: str
    home: str
    expected_g: dict[str, float | None] = field(default_factory=dict)
    failed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "task_id": self.task_id, "home": self.home, "expected_g": self.expected_g,
                "failed": list(self.failed)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegionChoice:
        return cls(str(data["region"]), str(data["task_id"]), str(data["home"]),
                   {str(k): None if v is None else float(v) for k, v in dict(data.get("expected_g") or {}).items()},
                   tuple(data.get("failed") or ()))


@dataclass(frozen=True)
class CarbonEvent:
    """The decision that ended the wait, the task's ready time and deadline, and the read it was made on.

    :param settings: the task's resolved settings; None in an event of a trigger deferred by version 0.1.
    :param sources: the task's source, then its fallbacks.
    :param solar_served_by: the solar source whose forecast the plan counted on; None without solar.
    :param solar_forecast: that forecast over the task's expected run, for its reservation when it starts.
    :param override: who made the task run before its plan (a release, eco-mode off), when and why.
    :param choice: a choice between regions: where it sends the work; ``sources`` are then the chosen region's.
    """

    decision: Decision
    ready_at: datetime
    deadline: datetime
    served_by: str | None
    signal: str | None
    signal_kind: str | None
    failed_sources: tuple[str, ...]
    replayed: bool
    settings: CarbonSettings | None
    sources: tuple[SourceRef, ...]
    solar_served_by: str | None = None
    solar_forecast: Series | None = None
    override: Override | None = None
    choice: RegionChoice | None = None

    @classmethod
    def of(cls, decision: Decision, ready_at: datetime, deadline: datetime, reading: Reading,
           settings: CarbonSettings | None, sources: tuple[SourceRef, ...], *, solar_served_by: str | None = None,
           solar_forecast: Series | None = None, solar_failures: tuple[str, ...] = (),
           override: Override | None = None) -> CarbonEvent:
        """The event of ``decision``; with an ``override``, a person's say takes the plan's place: run now."""
        series = reading.series
        if override is not None and not decision.run_now:
            decision = decision.overridden(Reason(override.reason))
        else:
            override = None
        return cls(decision, ready_at, deadline, reading.served_by, series.source if series is not None else None,
                   reading.signal_kind, (*reading.failed_sources, *solar_failures),
                   bool(series is not None and series.replayed), settings, sources, solar_served_by, solar_forecast,
                   override)

    @classmethod
    def of_choice(cls, policy: str, settings: PolicySettings, candidacies: Sequence[Candidacy],
                  readings: Mapping[str, Reading], *, now: datetime, ready_at: datetime, deadline: datetime, job: Job,
                  task_settings: CarbonSettings | None, planned: tuple[str, datetime] | None = None,
                  override: Override | None = None) -> CarbonEvent:
        """The event of a choice between regions, planned on each candidate's reading; with an ``override`` the
        work runs now, in the region least emitting now (penalties counted)."""
        candidates = [Candidate(c.region, readings[c.region].series, readings[c.region].upper, c.penalty_pct)
                      for c in candidacies]
        chosen = choose_region(policy, candidates, now=now, deadline=deadline, job=job, settings=settings,
                               planned=planned)
        if override is not None and not chosen.decision.run_now:
            chosen = choose_region("immediate", candidates, now=now, deadline=deadline, job=job, settings=settings)
        by_region = {c.region: c for c in candidacies}
        failed_sources = tuple(f"{c.region}: {failure}" for c in candidacies
                               for failure in readings[c.region].failed_sources)
        event = cls.of(chosen.decision, ready_at, deadline, readings[chosen.region], task_settings,
                       by_region[chosen.region].sources, override=override)
        choice = RegionChoice(chosen.region, by_region[chosen.region].task_id, chosen.home, chosen.expected_g,
                              chosen.failed)
        return replace(event, failed_sources=failed_sources, choice=choice)

    @property
    def reason(self) -> str:
        return str(self.decision.reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "fired_at": self.decision.now.isoformat(),
            "ready_at": self.ready_at.isoformat(),
            "deadline": self.deadline.isoformat(),
            "decision": self.decision.to_dict(),
            "served_by": self.served_by,
            "failed_sources": list(self.failed_sources),
            "replayed": self.replayed,
            "signal": self.signal,
            "signal_kind": self.signal_kind,
            "settings": self.settings.to_json() if self.settings is not None else None,
            "sources": [ref.to_dict() for ref in self.sources],
            "solar_served_by": self.solar_served_by,
            "solar_forecast": self.solar_forecast.to_json() if self.solar_forecast is not None else None,
            "override": None if self.override is None else {
                "reason": self.override.reason, "by": self.override.by, "at": self.override.at.isoformat(),
                "note": self.override.note},
            "choice": self.choice.to_json() if self.choice is not None else None,
        }

    @classmethod
    def from_json(cls, task_id: str, data: Mapping[str, Any]) -> CarbonEvent:
        """The inverse of ``to_json``; an event of version 0.1 (no settings or sources) is read too."""
        try:
            settings = data.get("settings")
            return cls(
                decision=Decision.from_dict(data["decision"]),
                ready_at=parse_instant(data["ready_at"]),
                deadline=parse_instant(data["deadline"]),
                served_by=data.get("served_by"),
                signal=data.get("signal"),
                signal_kind=data.get("signal_kind"),
                failed_sources=tuple(data.get("failed_sources") or ()),
                replayed=bool(data.get("replayed")),
                settings=CarbonSettings.from_json(task_id, settings) if settings else None,
                sources=tuple(SourceRef.from_dict(ref) for ref in data.get("sources") or ()),
                solar_served_by=data.get("solar_served_by"),
                solar_forecast=Series.from_json(data["solar_forecast"]) if data.get("solar_forecast") else None,
                override=_override(data.get("override")),
                choice=RegionChoice.from_json(data["choice"]) if data.get("choice") else None,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidEventError(f"task {task_id!r}: not a carbon trigger event ({type(error).__name__}: "
                                    f"{error})") from None


def _override(data: Mapping[str, Any] | None) -> Override | None:
    if not data:
        return None
    return Override(str(Reason(data["reason"])), str(data["by"]), parse_instant(data["at"]), data.get("note"))
