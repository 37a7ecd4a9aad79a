"""The trigger a carbon-aware task waits on: re-plan at every refresh, fire once when it should run."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_carbon.clock import utcnow
from airflow_carbon.control import Override
from airflow_carbon.forecasting.extend import covers, horizon_for
from airflow_carbon.hooks.site import NO_SOLAR, SolarSite, aforecast, afree, aread_solar, solar_for_event
from airflow_carbon.hooks.sources import aforecast_beyond, aload, aload_first, within
from airflow_carbon.metrics.record import TaskTryKey
from airflow_carbon.planning import Decision, Job, PolicySettings, decide
from airflow_carbon.settings import CarbonSettings
from airflow_carbon.signals.cache import shared_cache
from airflow_carbon.signals.series import Series, from_epoch_s, to_epoch_s
from airflow_carbon.signals.source import Reading, SourceRef
from airflow_carbon.triggers.control import ControlWatch, Waiting, control_watch
from airflow_carbon.triggers.event import CarbonEvent
from airflow_carbon.triggers.pacing import loop_pacer
from airflow_carbon.units import parse_instant

T = TypeVar("T")

#: A series older than this is not used when a fresh read fails: the trigger then plans on no signal.
STALE_AFTER_S = 3600.0
#: What other tasks of the site reserved is read again after this long at most, so a start sees recent ones.
SOLAR_BUDGET_MAX_AGE_S = 30.0
#: How far ahead a cached solar forecast is asked for, whatever the deadline of the task that reads it first.
SOLAR_HORIZON = timedelta(hours=48)
#: Sleep in steps no longer than this, re-reading the clock, so a clock jump cannot make the trigger oversleep.
MAX_SLEEP_STEP_S = 60.0
#: Each trigger wakes up to this long after a planned start or a refresh (a tenth of its refresh at most, never
#: past its deadline), as Airflow's DateTimeTrigger, which polls each second, is late by up to a second.
WAKE_SPREAD_S = 1.0


class CarbonWindowTrigger(BaseTrigger):
    """Wait until the planner says run (a green window, solar) or the deadline comes.

    Its kwargs are absolute instants and a source description, never "now + delay" and
    never a secret, so a trigger recreated on another triggerer resumes the same wait.

    :param ready_at: when the task first became ready (aware).
    :param deadline: when the task must run at the latest (aware).
    :param policy: a planning policy (``immediate``, ``threshold``, ``forecast``).
    :param duration_s: the task's expected run time.
    :param energy_kwh: the energy the task is expected to use.
    :param signals: the source and its fallbacks, in order, as ``SourceRef`` dicts.
    :param settings: ``PolicySettings`` fields as a dict.
    :param refresh_s: how often to re-read the signal and re-plan.
    :param task_settings: the task's resolved settings (``CarbonSettings.to_json``), handed back in the event
        so the task finishes without resolving them again; absent in triggers deferred by version 0.1.
    :param solar: the task's site and solar source (``SolarSite.to_dict``); None plans on the grid alone.
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
        task_settings: dict[str, Any] | None = None,
        solar: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.ready_at = parse_instant(ready_at)
        self.deadline = parse_instant(deadline)
        if self.deadline < self.ready_at:
            raise ValueError(f"deadline {self.deadline.isoformat()} is before ready_at {self.ready_at.isoformat()}")
        self.policy = policy
        self.job = Job(timedelta(seconds=duration_s), energy_kwh)
        self.signals = [SourceRef.from_dict(ref) for ref in signals]
        if not self.signals:
            raise ValueError("a carbon trigger needs at least one signal source")
        self.settings = PolicySettings(**(settings or {}))
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be positive, got {refresh_s}")
        self.refresh_s = float(refresh_s)
        self.task_settings = CarbonSettings.from_json("trigger", task_settings) if task_settings else None
        self.solar = SolarSite.from_dict(solar) if solar else None
        self._awaited_load = False
        self._reading, self._solar = Reading(None, None, None), NO_SOLAR
        self._planned_start: datetime | None = None
        self.wake_offset = timedelta(seconds=random.uniform(0.0, min(WAKE_SPREAD_S, self.refresh_s / 10)))

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_carbon.triggers.carbon.CarbonWindowTrigger",
            {
                "ready_at": self.ready_at.isoformat(),
                "deadline": self.deadline.isoformat(),
                "policy": self.policy,
                "duration_s": self.job.duration_s,
                "energy_kwh": self.job.energy_kwh,
                "signals": [ref.to_dict() for ref in self.signals],
                "settings": asdict(self.settings),
                "refresh_s": self.refresh_s,
                "task_settings": self.task_settings.to_json() if self.task_settings else None,
                "solar": self.solar.to_dict() if self.solar else None,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        key, watch = self._control()
        waiting = watch.join(key, self._region) if watch else None
        try:
            async for event in self._wait(key, watch, waiting):
                yield event
        finally:
            if watch is not None:
                watch.leave(key)

    @property
    def _region(self) -> str | None:
        return self.task_settings.region if self.task_settings else None

    def _control(self) -> tuple[TaskTryKey, ControlWatch | None]:
        """The try this trigger waits for, and the watch of its store's releases and switches.

        Only in a triggerer, which sets ``task_instance``; a trigger of version 0.1 (no settings) is watched
        on the default store."""
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return TaskTryKey("", "", ""), None
        key = TaskTryKey(ti.dag_id, ti.task_id, ti.run_id, -1 if ti.map_index is None else ti.map_index,
                         ti.try_number)
        conn_id = self.task_settings.metrics_conn_id if self.task_settings else "carbon_metrics_default"
        return key, control_watch(conn_id)

    async def _wait(self, key: TaskTryKey, watch: ControlWatch | None,
                    waiting: Waiting | None) -> AsyncIterator[TriggerEvent]:
        pacer = loop_pacer()
        log = self.log  # made anew on each access: once per trigger, not once per round of 10,000 triggers
        while True:
            await pacer.turn(max_wait_s=(self.deadline - utcnow()).total_seconds())
            began_cpu_s = time.thread_time()
            now = utcnow()
            # At the deadline the decision is "run" whatever the signal says: the event keeps the last read's.
            if now < self.deadline:
                self._awaited_load = False
                await self._read(now)
                if self._awaited_load:  # a shared load wakes all who waited on it at once: queue again
                    await pacer.turn(max_wait_s=(self.deadline - utcnow()).total_seconds())
                    began_cpu_s = time.thread_time()
            decision = self._plan(now)
            override = None
            if watch is not None and not decision.run_now:
                # Looked up after the read, which may have been slow: a release made during it is acted on now,
                # and the event says it was decided now, not when the read began.
                seen = utcnow()
                override = watch.override(key, seen)
                if override is not None:
                    now, decision = seen, replace(decision, now=seen)
            if decision.run_now or override is not None:
                event = self._event(decision, now, override)
                if event.override is not None:
                    log.info("carbon: %s by %s at %s (%s): running now instead of at the planned start %s",
                             event.reason, override.by, override.at, override.note or "no reason given",
                             decision.start)
                else:
                    log.info("carbon window: %s at %s", decision.reason, now)
                payload = event.to_json()
                pacer.spent(time.thread_time() - began_cpu_s)
                yield TriggerEvent(payload)
                return
            # From after the read, so the next refresh finds this read stale rather than planning on it again.
            wake = min(decision.start, utcnow() + timedelta(seconds=self._refresh_s()), self.deadline)
            log.info("next check at %s; planned start %s (%s); deadline %s", wake, decision.start,
                     decision.reason, self.deadline)
            if watch is not None and waiting is not None:
                watch.report(key, decision)
                waiting.told = False  # told to run, then not any more (a switch's window closed): wait again
            pacer.spent(time.thread_time() - began_cpu_s)
            await sleep_until(self._spread(wake), waiting)

    async def _read(self, now: datetime) -> None:
        """Read the signal (and the site's solar) for this refresh's plan."""
        self._reading = await self._cached_extended(await aload_first(self.signals, now, load=self._cached), now,
                                                    self.signals)
        if self.solar is not None:
            self._solar = await aread_solar(self.solar, now, self.deadline + self.job.duration,
                                            forecast=self._cached_forecast, free=self._cached_free)

    def _plan(self, now: datetime) -> Decision:
        """This refresh's decision, from the start the last one planned."""
        decision = self._decide(now, self._reading, self._solar.free, self._planned_start)
        self._planned_start = decision.start
        return decision

    def _event(self, decision: Decision, now: datetime, override: Override | None) -> CarbonEvent:
        return CarbonEvent.of(decision, self.ready_at, self.deadline, self._reading, self.task_settings,
                              tuple(self.signals), **solar_for_event(self._solar, now, self.job.duration),
                              override=override)

    def _decide(self, now: datetime, reading: Reading, solar_free: Series | None,
                planned_start: datetime | None) -> Decision:
        """One decision for every trigger of this triggerer with the same planning inputs in a refresh.

        Triggers that share a series (one read per source and refresh), a policy, a job and settings differ
        only in their deadline. Rounded down to the refresh interval, it is shared too, so the plan never
        starts after a trigger's own deadline; the decision is then told at this trigger's own now.
        A site's solar budget is read per trigger, so solar tasks decide alone.
        """
        refresh_s = self.refresh_s
        shared_deadline_s = int(to_epoch_s(self.deadline) // refresh_s * refresh_s)
        if solar_free is not None or reading.series is None or shared_deadline_s <= to_epoch_s(now):
            return decide(self.policy, now=now, deadline=self.deadline, job=self.job, intensity=reading.series,
                          solar=solar_free, settings=self.settings, intensity_upper=reading.upper,
                          planned_start=planned_start)
        key = ("decision", self.policy, shared_deadline_s, self.job, self.settings, planned_start,
               id(reading.series), id(reading.upper))

        def plan() -> tuple[Series, Series | None, Decision]:
            return reading.series, reading.upper, decide(
                self.policy, now=now, deadline=from_epoch_s(shared_deadline_s), job=self.job,
                intensity=reading.series, settings=self.settings, intensity_upper=reading.upper,
                planned_start=planned_start)

        series, upper, decision = shared_cache().remember(key, plan, max_age_s=refresh_s)
        if series is not reading.series or upper is not reading.upper:  # an id reused by a newer read
            series, upper, decision = plan()
        return replace(decision, now=now, deadline=self.deadline, start=max(decision.start, now))

    def _spread(self, wake: datetime) -> datetime:
        """The wake moved by this trigger's own offset, never past its deadline: tasks planned on one forecast
        would otherwise all resume at the same instant, in one turn of the event loop."""
        return wake if wake >= self.deadline else min(wake + self.wake_offset, self.deadline)

    def _refresh_s(self) -> float:
        """Re-plan at the refresh interval, never less often than the data changes."""
        return min([self.refresh_s, *(float(series.period_s) for series in self._series_read())])

    def _series_read(self) -> list[Series]:
        return [self._reading.series] if self._reading.series is not None else []

    async def _cached(self, ref: SourceRef, now: datetime, history: timedelta) -> tuple[Series, str | None]:
        """A source's read through the triggerer's shared cache; after a failure, the last good one if recent.

        The wait for a read ends at the deadline; the read itself goes on for the other triggers sharing it.
        """
        key = ("signal", tuple(sorted(ref.to_dict().items())), history.total_seconds())
        try:
            return await self._shared(key, lambda: aload(ref, now, history), self.refresh_s)
        except Exception:
            last = shared_cache().last_good(key)
            if last is None or last[1] > STALE_AFTER_S:
                raise
            self.log.warning("%s failed; planning on its series from %.0f s ago", ref.name, last[1])
            return last[0]

    async def _cached_extended(self, reading: Reading, now: datetime, signals: list[SourceRef]) -> Reading:
        """The reading carried to the deadline by its source's forecaster (one of ``signals``): one forecast per
        source and horizon (in whole days) per refresh, however many tasks wait on it."""
        until = self.deadline + self.job.duration
        if reading.series is None or covers(reading.series, until):
            return reading
        forecaster = next((ref.forecaster for ref in signals if ref.name == reading.served_by), None)
        key = ("extended", reading.served_by, forecaster, horizon_for(now, until).days)
        try:
            return await self._shared(key, lambda: aforecast_beyond(reading, signals, now, until,
                                                                    load=self._cached), self.refresh_s)
        except Exception as error:  # planning on the series in hand beats not planning
            self.log.warning("the forecast past the end of %s failed (%s: %s); planning on its series alone",
                             reading.served_by, type(error).__name__, error)
            return reading

    async def _cached_forecast(self, site: SolarSite, now: datetime, horizon: timedelta) -> tuple[Series, float]:
        """The site's forecast through the shared cache: one read per site however many tasks wait on it.

        Kept at least as long as its source asks (``min_refresh_s``: Forecast.Solar's free tier allows 12 calls
        an hour), never less than the refresh interval.
        """
        key = ("solar", tuple(sorted(site.source.to_dict().items())))
        last = shared_cache().last_good(key)
        max_age_s = max(self.refresh_s, last[0][1]) if last is not None else self.refresh_s
        return await self._shared(key, lambda: aforecast(site, now, max(horizon, SOLAR_HORIZON)), max_age_s)

    async def _cached_free(self, site: SolarSite, forecast: Series, start: datetime, end: datetime) -> Series:
        """What the site's budget leaves over the whole forecast, read once for every task waiting on the site."""
        key = ("solar-free", site.site, site.source.name, site.metrics_conn_id)
        until = max(end, from_epoch_s(forecast.end_epoch_s)) if len(forecast) else end
        return await self._shared(key, lambda: afree(site, forecast, start, until),
                                  min(self.refresh_s, SOLAR_BUDGET_MAX_AGE_S))

    async def _shared(self, key: Hashable, load: Callable[[], Awaitable[T]], max_age_s: float) -> T:
        """A value every trigger of this triggerer shares: a fresh one at once, without a task or a future (the
        path 10,000 waiting triggers take); else awaited, but never past the deadline, while the load goes on
        for the others sharing it."""
        cache = shared_cache()
        kept = cache.fresh(key, max_age_s)
        if kept is not None:
            return kept
        self._awaited_load = True
        return await within(cache.get(key, load, max_age_s=max_age_s), (self.deadline - utcnow()).total_seconds())


async def sleep_until(moment: datetime, waiting: Waiting | None = None) -> None:
    """Sleep in steps, re-reading the clock each time, like Airflow's own DateTimeTrigger; a poll that tells the
    ``waiting`` try to run (a person released it or switched carbon-awareness off) ends the sleep early."""
    while (remaining_s := (moment - utcnow()).total_seconds()) > 0:
        if waiting is None:
            await asyncio.sleep(min(remaining_s, MAX_SLEEP_STEP_S))
        elif waiting.told:
            return
        else:
            await waiting.nap(min(remaining_s, MAX_SLEEP_STEP_S))

