"""Reading signal sources from Airflow: a connection's fields for the registry, reads bounded by a deadline.

The trigger's kwargs name sources by connection id; the credentials are read here, once per load,
only when a source is opened, and never leave the source's client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from airflow.sdk import BaseHook

from airflow_carbon.clock import utcnow
from airflow_carbon.forecasting.extend import (
    DEFAULT_FORECASTER,
    HISTORY,
    NO_FORECASTER,
    check_forecaster,
    covers,
    extend,
    horizon_for,
)
from airflow_carbon.signals.series import Series
from airflow_carbon.signals.services.http import run_sync
from airflow_carbon.signals.services.pool import aclose_clients
from airflow_carbon.signals.source import (
    Loader,
    Reading,
    Refuse,
    SolarSource,
    SourceConfig,
    SourceError,
    SourceRef,
    aopen,
    aread_first,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


async def aread_connection(ref: SourceRef) -> SourceConfig:
    """The fields of the ref's connection, read once, without blocking the event loop."""
    connection = await BaseHook.aget_connection(ref.conn_id)
    return SourceConfig(ref.name, ref.region, conn_id=ref.conn_id, conn_type=connection.conn_type,
                        host=connection.host, login=connection.login, password=connection.password,
                        extra=await aconnection_extra(connection))


async def aconnection_extra(connection: Any) -> dict[str, Any]:
    """A connection's extra as a dict, whichever class of connection this process was given.

    Tasks and triggers get the task SDK's ``Connection``, whose ``aextra_dejson`` masks the secrets it
    holds through the supervisor without blocking the loop; the API server reads the metadata database and
    gets ``airflow.models.Connection``, and a secrets backend may hand back either. Those without the
    coroutine have the ``extra_dejson`` property, which parses the JSON and masks in this process only.
    """
    aextra_dejson = getattr(connection, "aextra_dejson", None)
    if aextra_dejson is not None:
        return await aextra_dejson()
    return connection.extra_dejson


async def aopen_solar(ref: SourceRef) -> SolarSource:
    """The solar source a ref names (its connection read once); a grid source's connection is refused."""
    return await aopen(ref, aread_connection, quantity="solar")


async def aload(ref: SourceRef, now: datetime, history: timedelta) -> tuple[Series, str | None]:
    """One source's series and its signal kind."""
    source = await aopen(ref, aread_connection)
    return await source.aseries(now, history), source.signal_kind


async def within(awaitable: Awaitable[T], left_s: float) -> T:
    """Await a read, but no longer than the ``left_s`` seconds left before a deadline.

    Retries and timeouts of a slow or failing service add up to tens of seconds; bounding the
    read by the time left is what keeps a failing source from making a task miss its deadline.
    """
    if left_s <= 0:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise TimeoutError("no time left before the deadline")
    try:
        return await asyncio.wait_for(awaitable, left_s)
    except TimeoutError:
        raise TimeoutError(f"no answer in the {left_s:.1f} s left before the deadline") from None


async def aload_first(refs: Sequence[SourceRef], now: datetime, history: timedelta = timedelta(0),
                      load: Loader = aload, refuse: Refuse | None = None) -> Reading:
    """The first of the sources that answers (see ``aread_first``)."""
    return await aread_first(refs, now, history, load, refuse)


async def aforecast_beyond(reading: Reading, refs: Sequence[SourceRef], now: datetime, until: datetime,
                           load: Loader = aload) -> Reading:
    """The reading carried to ``until`` by its source's forecaster, where the source's series ends before it.

    The forecaster's history is read through ``load`` (the trigger's is its shared cache), and the forecast
    is made off the event loop. A history that cannot be read leaves the forecaster the series in hand.
    """
    ref = next((ref for ref in refs if ref.name == reading.served_by), None)
    if (reading.series is None or ref is None or ref.forecaster in (None, NO_FORECASTER)
            or covers(reading.series, until)):
        return reading
    forecaster = check_forecaster(ref.forecaster)
    try:
        history, _ = await load(ref, now, HISTORY.get(forecaster, timedelta(0)))
    except Exception as error:  # a forecast from the series in hand is still better than none
        log.warning("carbon: %s: the history for the %s forecaster cannot be read (%s: %s); forecasting from "
                    "the series in hand", ref.name, forecaster, type(error).__name__, error)
        history = reading.series
    extended = await asyncio.to_thread(extend, history, now, horizon_for(now, until), forecaster)
    if extended.forecaster is None:
        return reading
    return replace(reading, series=extended.series, upper=extended.upper)


def load_first(refs: Sequence[SourceRef], now: datetime, history: timedelta = timedelta(0), *,
               deadline: datetime | None = None, refuse: Refuse | None = None,
               until: datetime | None = None) -> Reading:
    """``aload_first`` for synchronous callers: a task on a worker, the CLI, the Carbon view.

    With a ``deadline``, each read gets only the time left before it, and none is made once it has come.
    With ``until``, a series that ends before it is carried there by its source's forecaster.
    """

    async def bounded(ref: SourceRef, at: datetime, past: timedelta) -> tuple[Series, str | None]:
        if deadline is None:
            return await aload(ref, at, past)
        return await within(aload(ref, at, past), (deadline - utcnow()).total_seconds())

    async def load_then_close() -> Reading:
        try:
            reading = await aread_first(refs, now, history, bounded, refuse)
            return reading if until is None else await aforecast_beyond(reading, refs, now, until, bounded)
        finally:
            await aclose_clients()

    return run_sync(load_then_close())


def open_source(ref: SourceRef, forecaster: str | None = None,
                default_forecaster: str = DEFAULT_FORECASTER) -> SourceRef:
    """Open the source once (reading its connection): a missing connection or a wrong type raises here.

    Returns the ref with its forecaster resolved: the task's, else its connection's extra ``forecaster``,
    else ``default_forecaster`` (``[carbon] forecaster``).
    """
    extras: list[dict[str, Any]] = []

    async def read(opened: SourceRef) -> SourceConfig:
        config = await aread_connection(opened)
        extras.append(config.extra)
        return config

    async def open_one() -> None:
        try:
            await aopen(ref, read)
        finally:
            await aclose_clients()

    run_sync(open_one())
    named = next((extra.get("forecaster") for extra in extras if extra.get("forecaster")), None)
    if forecaster is None and named is not None:
        try:
            forecaster = check_forecaster(named)
        except ValueError as error:
            raise SourceError(f"{ref.describe()}: extra 'forecaster': {error}") from None
    return replace(ref, forecaster=forecaster or default_forecaster)
