"""On-site solar from Airflow: a site's forecast and measured output, and its shared budget in the metrics store.

Glue only. The budget's arithmetic and locking are the ledger's (``metrics/solar.py``), reading the panels
is the solar sources' (``signals/solar.py``); here they are opened through Airflow's connections, and any
failure becomes an entry of ``failed_sources`` instead of an error: the grid plan then stands alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.hooks.sources import aopen_solar, within
from airflow_carbon.metrics.record import TaskTryKey
from airflow_carbon.metrics.solar import SolarLedger
from airflow_carbon.settings import CarbonSettings
from airflow_carbon.signals.series import Series, to_epoch_s
from airflow_carbon.signals.services.http import run_sync
from airflow_carbon.signals.services.pool import aclose_clients
from airflow_carbon.signals.source import SourceRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SolarSite:
    """The solar side of one task: the source of its site's output, the site, and where the budget is kept.

    Plain data without a secret, carried in trigger kwargs.
    """

    source: SourceRef
    site: str
    metrics_conn_id: str

    @classmethod
    def of(cls, settings: CarbonSettings) -> SolarSite | None:
        """None for a task without a solar source; the site defaults to the solar connection's id."""
        if settings.solar is None:
            return None
        return cls(SourceRef.connection(settings.solar, settings.region), settings.site or settings.solar,
                   settings.metrics_conn_id)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source.to_dict(), "site": self.site, "metrics_conn_id": self.metrics_conn_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SolarSite:
        return cls(SourceRef.from_dict(data["source"]), str(data["site"]), str(data["metrics_conn_id"]))

    def failure(self, what: str, error: BaseException) -> str:
        """A ``failed_sources`` entry: the source or budget and the error, never a secret."""
        return f"{what}: {type(error).__name__}: {error}"


def site_of(settings: CarbonSettings) -> str:
    """The task's site: given, else its solar connection's own; opening the source refuses a wrong connection."""

    async def open_source() -> str:
        try:
            return (await aopen_solar(SourceRef.connection(settings.solar or "", settings.region))).site
        finally:
            await aclose_clients()

    site = run_sync(open_source())
    return settings.site or site


@dataclass(frozen=True)
class SolarReading:
    """What a plan may count on from the panels: the site's forecast less what other tasks reserved.

    :param free: kW free for this task per slot; None when unknown (then the plan is the grid's alone).
    :param forecast: the site's forecast output (kW), kept for the reservation when the task starts.
    """

    free: Series | None
    forecast: Series | None
    served_by: str | None
    failures: tuple[str, ...] = ()


NO_SOLAR = SolarReading(None, None, None)

#: The forecast a start event carries covers the expected run and this much more, in case the run is longer.
EVENT_FORECAST_MARGIN = timedelta(hours=1)


def solar_for_event(solar: SolarReading, now: datetime, duration: timedelta) -> dict[str, Any]:
    """The keywords of ``CarbonEvent.of`` for a solar reading: the forecast over the run, not the whole horizon."""
    forecast = solar.forecast
    if forecast is not None:
        forecast = forecast.between(now, now + duration + EVENT_FORECAST_MARGIN)
    return {"solar_served_by": solar.served_by, "solar_forecast": forecast, "solar_failures": solar.failures}

#: Reads the site's forecast from ``now`` for ``horizon``, and how long it may be kept (the source's
#: ``min_refresh_s``); a trigger passes one that goes through its cache.
ForecastLoader = Callable[[SolarSite, datetime, timedelta], Awaitable[tuple[Series, float]]]
#: Reads what of a forecast is free in the budget over ``[start, end)``.
FreeLoader = Callable[[SolarSite, Series, datetime, datetime], Awaitable[Series]]


async def aforecast(site: SolarSite, now: datetime, horizon: timedelta) -> tuple[Series, float]:
    source = await aopen_solar(site.source)
    return await source.aforecast(now, horizon), source.min_refresh_s


async def aledger(site: SolarSite) -> SolarLedger:
    return SolarLedger(await CarbonMetricsHook(site.metrics_conn_id).aget_store())


async def afree(site: SolarSite, forecast: Series, start: datetime, end: datetime) -> Series:
    ledger = await aledger(site)
    return await asyncio.to_thread(ledger.free_kw, site.site, forecast, start, end)


async def aread_solar(site: SolarSite, now: datetime, until: datetime, *, forecast: ForecastLoader = aforecast,
                      free: FreeLoader = afree) -> SolarReading:
    """The site's free solar over ``[now, until)``; with the budget unreadable, the forecast alone."""
    try:
        forecast_kw, _ = await forecast(site, now, until - now)
    except Exception as error:  # a failing solar source leaves the grid plan standing alone
        log.warning("carbon: solar source %s unavailable: %s", site.source.name, error)
        return SolarReading(None, None, None, (site.failure(site.source.name, error),))
    try:
        return SolarReading(await free(site, forecast_kw, now, until), forecast_kw, site.source.name)
    except Exception as error:
        log.warning("carbon: solar budget of site %r unreadable; planning on the forecast alone: %s", site.site, error)
        return SolarReading(forecast_kw, forecast_kw, site.source.name,
                            (site.failure(f"solar budget of site {site.site!r}", error),))


def read_solar(site: SolarSite | None, now: datetime, until: datetime, deadline: datetime) -> SolarReading:
    """``aread_solar`` for a task on a worker, each read bounded by the time left before the deadline."""
    if site is None:
        return NO_SOLAR

    async def read() -> SolarReading:
        left_s = (deadline - now).total_seconds()
        try:
            return await aread_solar(site, now, until, forecast=lambda *args: within(aforecast(*args), left_s))
        finally:
            await aclose_clients()

    return run_sync(read())


def reserve(site: SolarSite, key: TaskTryKey, start: datetime, end: datetime, draw_kw: float,
            forecast: Series | None) -> tuple[str, ...]:
    """Take the task's share of the forecast for the interval it is about to run; the failures, if any."""
    if forecast is None:
        return ()
    try:
        ledger = SolarLedger(CarbonMetricsHook(site.metrics_conn_id).get_store())
        ledger.reserve(site.site, key, start, end, draw_kw, forecast)
    except Exception as error:
        log.warning("carbon: no solar reservation for site %r: %s", site.site, error)
        return (site.failure(f"solar budget of site {site.site!r}", error),)
    return ()


@dataclass(frozen=True)
class SolarClaim:
    """The solar a finished try really had, and the site's free output had it run when it became ready.

    :param used: kW the try used per slot while it ran (its share of the site's output); None when unknown.
    :param baseline: kW free for the same try started at its ready time; None when that output is unknown.
    :param basis: ``measured``, ``forecast`` or ``measured+forecast``: how ``used`` was obtained.
    """

    used: Series | None
    baseline: Series | None
    basis: str | None
    served_by: str | None
    failures: tuple[str, ...] = ()


def claim(site: SolarSite, key: TaskTryKey, ready_at: datetime, started_at: datetime, ended_at: datetime,
          draw_kw: float, forecast: Series | None) -> SolarClaim:
    """Count the try's share of what the panels gave while it ran, then give back what it reserved beyond that.

    The measured output wins where the site logs it; the forecast the task started on fills the rest.
    """
    baseline_end = ready_at + (ended_at - started_at)

    async def measured() -> Series | None:
        try:
            source = await aopen_solar(site.source)
            if not source.measures:
                return None
            return await source.ameasured(min(ready_at, started_at), max(ended_at, baseline_end))
        finally:
            await aclose_clients()

    failures: list[str] = []
    try:
        measured_kw = run_sync(measured())
    except Exception as error:
        log.warning("carbon: measured output of %s unreadable: %s", site.source.name, error)
        failures.append(site.failure(site.source.name, error))
        measured_kw = None
    try:
        ledger = SolarLedger(CarbonMetricsHook(site.metrics_conn_id).get_store())
        used, basis = ledger.claim(site.site, key, started_at, ended_at, draw_kw, measured=measured_kw,
                                   forecast=forecast)
        ledger.release(key, ended_at)
        output = measured_kw if _covers(measured_kw, ready_at, baseline_end) else None
        baseline = None if output is None else ledger.free_output_kw(site.site, output, ready_at, baseline_end,
                                                                      excluding=key)
    except Exception as error:
        log.warning("carbon: solar of site %r not counted: %s", site.site, error)
        failures.append(site.failure(f"solar budget of site {site.site!r}", error))
        return SolarClaim(None, None, None, site.source.name, tuple(failures))
    return SolarClaim(used, baseline, basis, site.source.name, tuple(failures))


def _covers(series: Series | None, start: datetime, end: datetime) -> bool:
    return (series is not None and len(series) > 0 and series.first_epoch_s <= to_epoch_s(start)
            and to_epoch_s(end) <= series.end_epoch_s)
