"""The trigger a choice between regions waits on: every candidate region re-planned at each refresh, one event when
the best (region, start) comes, or at the deadline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow_carbon.control import Override
from airflow_carbon.hooks.sources import aload_first
from airflow_carbon.planning import Decision
from airflow_carbon.signals.series import Series
from airflow_carbon.signals.source import Reading
from airflow_carbon.triggers.carbon import CarbonWindowTrigger
from airflow_carbon.triggers.event import Candidacy, CarbonEvent


class CarbonRegionsTrigger(CarbonWindowTrigger):
    """``CarbonWindowTrigger`` over several regions: each candidate's sources are read through the triggerer's shared
    cache (one read per source and refresh, however many tasks wait on it), and ``choose_region`` plans them all.

    :param candidates: the regions in order, home first, as ``Candidacy`` dicts (task id, sources, penalty).
    The other kwargs are ``CarbonWindowTrigger``'s; its ``signals`` are the home region's.
    """

    def __init__(self, *, candidates: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidates = [Candidacy.from_dict(candidate) for candidate in candidates]
        if not self.candidates:
            raise ValueError("a choice between regions needs at least one candidate region")
        self._readings = {c.region: Reading(None, None, None) for c in self.candidates}
        self._planned: tuple[str, datetime] | None = None
        self._last: CarbonEvent | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return ("airflow_carbon.triggers.regions.CarbonRegionsTrigger",
                kwargs | {"candidates": [c.to_dict() for c in self.candidates]})

    async def _read(self, now: datetime) -> None:
        for candidate in self.candidates:
            signals = list(candidate.sources)
            reading = await aload_first(signals, now, load=self._cached)
            self._readings[candidate.region] = await self._cached_extended(reading, now, signals)

    def _plan(self, now: datetime) -> Decision:
        self._last = self._event_of(now, self._planned, None)
        if self._last.choice is not None:
            self._planned = (self._last.choice.region, self._last.decision.start)
        return self._last.decision

    def _event(self, decision: Decision, now: datetime, override: Override | None) -> CarbonEvent:
        """The plan's event; a person's say (a release, eco-mode off) re-chooses for a run now."""
        return self._last if override is None else self._event_of(now, None, override)

    def _event_of(self, now: datetime, planned: tuple[str, datetime] | None,
                  override: Override | None) -> CarbonEvent:
        return CarbonEvent.of_choice(self.policy, self.settings, self.candidates, self._readings, now=now,
                                     ready_at=self.ready_at, deadline=self.deadline, job=self.job,
                                     task_settings=self.task_settings, planned=planned, override=override)

    def _series_read(self) -> list[Series]:
        return [reading.series for reading in self._readings.values() if reading.series is not None]
