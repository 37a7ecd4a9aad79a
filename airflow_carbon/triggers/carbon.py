"""The trigger a carbon-aware task waits on: re-plan at every refresh, fire once when it should run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_carbon.hooks.sources import aload_first, aload_signal, within
from airflow_carbon.planning import Job, PolicySettings, decide
from airflow_carbon.signals.cache import shared_cache
from airflow_carbon.signals.series import Series
from airflow_carbon.signals.source import SignalSpec
from airflow_carbon.units import parse_instant

#: A series older than this is not used when a fresh read fails: the trigger then plans on no signal.
STALE_AFTER_S = 3600.0
#: Sleep in steps no longer than this, re-reading the clock, so a clock jump cannot make the trigger oversleep.
MAX_SLEEP_STEP_S = 60.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class CarbonWindowTrigger(BaseTrigger):
    """Wait until the planner says run (a green window, solar) or the deadline comes.

    Its kwargs are absolute instants and a source description, never "now + delay" and
    never a secret, so a trigger recreated on another triggerer resumes the same wait.

    :param ready_at: when the task first became ready (aware).
    :param deadline: when the task must run at the latest (aware).
    :param policy: a planning policy (``immediate``, ``threshold``, ``forecast``).
    :param duration_s: the task's expected run time.
    :param energy_kwh: the energy the task is expected to use.
    :param signals: the source and its fallbacks, in order, as ``SignalSpec`` dicts.
    :param settings: ``PolicySettings`` fields as a dict.
    :param refresh_s: how often to re-read the signal and re-plan.
    """

    def __init__(
        self,
        *,
        ready_at: datetime | str,
        deadline: datetime | str,
        policy: str,
        duration_s: float,
        energy_kwh: float,
        signals: list[dict[str, Any]],
        settings: dict[str, Any] | None = None,
        refresh_s: float = 300.0,
    ) -> None:
        super().__init__()
        self.ready_at = parse_instant(ready_at)
        self.deadline = parse_instant(deadline)
        if self.deadline < self.ready_at:
            raise ValueError(f"deadline {self.deadline.isoformat()} is before ready_at {self.ready_at.isoformat()}")
        self.policy = policy
        self.job = Job(timedelta(seconds=duration_s), energy_kwh)
        self.signals = [SignalSpec.from_dict(spec) for spec in signals]
        if not self.signals:
            raise ValueError("a carbon trigger needs at least one signal source")
        self.settings = PolicySettings(**(settings or {}))
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be positive, got {refresh_s}")
        self.refresh_s = float(refresh_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_carbon.triggers.carbon.CarbonWindowTrigger",
            {
                "ready_at": self.ready_at.isoformat(),
                "deadline": self.deadline.isoformat(),
                "policy": self.policy,
                "duration_s": self.job.duration_s,
                "energy_kwh": self.job.energy_kwh,
                "signals": [spec.to_dict() for spec in self.signals],
                "settings": asdict(self.settings),
                "refresh_s": self.refresh_s,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        series, served_by, failures = None, None, []
        while True:
            now = utcnow()
            # At the deadline the decision is "run" whatever the signal says: the event keeps the last read's.
            if now < self.deadline:
                series, served_by, failures = await aload_first(self.signals, now, load=self._cached)
            decision = decide(self.policy, now=now, deadline=self.deadline, job=self.job, intensity=series,
                              settings=self.settings)
            if decision.run_now:
                self.log.info("carbon window: %s at %s", decision.reason, now.isoformat())
                yield TriggerEvent(self._payload(decision.to_dict(), series, served_by, failures))
                return
            # From after the read, so the next refresh finds this read stale rather than planning on it again.
            wake = min(decision.start, utcnow() + timedelta(seconds=self._refresh_s(series)), self.deadline)
            self.log.info("waiting until %s (planned start %s, %s; deadline %s)", wake.isoformat(),
                          decision.start.isoformat(), decision.reason, self.deadline.isoformat())
            await sleep_until(wake)

    def _refresh_s(self, series) -> float:
        """Re-plan at the refresh interval, never less often than the data changes."""
        return min(self.refresh_s, float(series.period_s)) if series is not None else self.refresh_s

    async def _cached(self, spec: SignalSpec, now: datetime, history: timedelta) -> Series:
        """A source's series through the triggerer's shared cache; after a failure, the last good one if recent.

        The wait for a read ends at the deadline; the read itself goes on for the other triggers sharing it.
        """
        key = ("signal", tuple(sorted(spec.to_dict().items())))
        cache = shared_cache()
        try:
            return await within(cache.get(key, lambda: aload_signal(spec, now, history), max_age_s=self.refresh_s),
                                (self.deadline - utcnow()).total_seconds())
        except Exception:
            last = cache.last_good(key)
            if last is None or last[1] > STALE_AFTER_S:
                raise
            self.log.warning("%s failed; planning on its series from %.0f s ago", spec.name, last[1])
            return last[0]

    def _payload(self, decision: dict[str, Any], series: Series | None, served_by: str | None,
                 failures: list[str]) -> dict[str, Any]:
        return event_payload(decision, self.ready_at, self.deadline, series, served_by, failures)


def event_payload(decision: dict[str, Any], ready_at: datetime, deadline: datetime, series: Series | None,
                  served_by: str | None, failures: list[str]) -> dict[str, Any]:
    """What the task learns when it resumes (or plans at once): plain JSON, no secret."""
    return {
        "reason": decision["reason"],
        "fired_at": decision["now"],
        "ready_at": ready_at.isoformat(),
        "deadline": deadline.isoformat(),
        "decision": decision,
        "served_by": served_by,
        "failed_sources": failures,
        "replayed": bool(series is not None and series.replayed),
        "signal": series.source if series is not None else None,
    }


async def sleep_until(moment: datetime) -> None:
    """Sleep in steps, re-reading the clock each time, like Airflow's own DateTimeTrigger."""
    while (remaining_s := (moment - utcnow()).total_seconds()) > 0:
        await asyncio.sleep(min(remaining_s, MAX_SLEEP_STEP_S))

