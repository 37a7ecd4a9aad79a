"""What a carbon-aware task learns when its wait ends, or when it plans to run at once: one type for both.

It carries what the task needs to finish, its settings and sources included, so a resumed task
neither resolves its settings again nor reads its connections to check them. Plain JSON, no secret.
No Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_carbon.control import Override
from airflow_carbon.errors import CarbonError
from airflow_carbon.planning import Decision, Reason
from airflow_carbon.settings import CarbonSettings
from airflow_carbon.signals.series import Series
from airflow_carbon.signals.source import Reading, SourceRef
from airflow_carbon.units import parse_instant


class InvalidEventError(CarbonError, ValueError):
    """A trigger event that is not a carbon event; the message names the field."""


@dataclass(frozen=True)
class CarbonEvent:
    """The decision that ended the wait, the task's ready time and deadline, and the read it was made on.

    :param settings: the task's resolved settings; None in an event of a trigger deferred by version 0.1.
    :param sources: the task's source, then its fallbacks.
    :param solar_served_by: the solar source whose forecast the plan counted on; None without solar.
    :param solar_forecast: that forecast over the task's expected run, for its reservation when it starts.
    :param override: who made the task run before its plan (a release, eco-mode off), when and why.
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
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidEventError(f"task {task_id!r}: not a carbon trigger event ({type(error).__name__}: "
                                    f"{error})") from None


def _override(data: Mapping[str, Any] | None) -> Override | None:
    if not data:
        return None
    return Override(str(Reason(data["reason"])), str(data["by"]), parse_instant(data["at"]), data.get("note"))
