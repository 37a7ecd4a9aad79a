"""Loading any signal source, connection-backed ones included, for triggers (async) and tasks (sync).

The trigger's kwargs name sources by connection id; the credentials are read here, from
the connection, only when a source is loaded, and never leave the hook.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from airflow.sdk import BaseHook

from airflow_carbon.signals.series import Series
from airflow_carbon.signals.services.base import run_sync
from airflow_carbon.signals.source import SignalSpec

log = logging.getLogger(__name__)

T = TypeVar("T")


def service_hooks() -> dict[str, type]:
    """Connection type -> the hook that turns such a connection into a series."""
    from airflow_carbon.hooks.electricitymaps import ElectricityMapsHook
    from airflow_carbon.hooks.signal_csv import CarbonCsvHook
    from airflow_carbon.hooks.ukgrid import UKCarbonIntensityHook
    from airflow_carbon.hooks.watttime import WattTimeHook

    return {hook.conn_type: hook for hook in (WattTimeHook, ElectricityMapsHook, UKCarbonIntensityHook, CarbonCsvHook)}


async def aload_signal(spec: SignalSpec, now: datetime, history: timedelta = timedelta(0)) -> Series:
    """The series of a source; file reads run in a thread so an event loop never blocks on them."""
    if spec.kind != "connection":
        return await asyncio.to_thread(spec.load, now, history)
    connection = await BaseHook.aget_connection(spec.conn_id)
    hooks = service_hooks()
    if connection.conn_type not in hooks:
        raise ValueError(f"connection {spec.conn_id!r} has type {connection.conn_type!r}, not a carbon signal source "
                         f"({', '.join(sorted(hooks))})")
    return await hooks[connection.conn_type](spec.conn_id).aseries(now, spec.region, history)


Loader = Callable[[SignalSpec, datetime, timedelta], Awaitable[Series]]
#: Sees a source's error before the next source is tried; it raises to stop there instead.
Refuse = Callable[[SignalSpec, Exception], None]


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


async def aload_first(specs: Sequence[SignalSpec], now: datetime, history: timedelta = timedelta(0),
                      load: Loader = aload_signal, refuse: Refuse | None = None
                      ) -> tuple[Series | None, str | None, list[str]]:
    """The first source that answers, in order: its series, its name, and what failed before it.

    A failure is described by the source's name and the error; service errors never hold
    credentials, and a connection is named by its id. ``refuse`` may turn a failure into an
    error: a task's start refuses a malformed local file, which is configuration, not an outage.
    """
    failures: list[str] = []
    for spec in specs:
        try:
            return await load(spec, now, history), spec.name, failures
        except Exception as error:  # every source may fail; the task must still run by its deadline
            if refuse is not None:
                refuse(spec, error)
            failures.append(f"{spec.name}: {type(error).__name__}: {error}")
            log.warning("carbon signal unavailable: %s", failures[-1])
    return None, None, failures


def load_first(specs: Sequence[SignalSpec], now: datetime, history: timedelta = timedelta(0), *,
               deadline: datetime | None = None, refuse: Refuse | None = None
               ) -> tuple[Series | None, str | None, list[str]]:
    """``aload_first`` for synchronous callers: a task on a worker, the CLI.

    With a ``deadline``, each read gets only the time left before it, and none is made once it has come.
    """

    async def load(spec: SignalSpec, at: datetime, past: timedelta) -> Series:
        if deadline is None:
            return await aload_signal(spec, at, past)
        return await within(aload_signal(spec, at, past), (deadline - datetime.now(UTC)).total_seconds())

    async def load_then_close() -> tuple[Series | None, str | None, list[str]]:
        try:
            return await aload_first(specs, now, history, load=load, refuse=refuse)
        finally:
            await aclose_clients()

    return run_sync(load_then_close())


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = weakref.WeakKeyDictionary()


def client_for(key: Hashable, factory: Callable[[], Any]) -> Any:
    """One service client per connection and event loop, so a triggerer reuses tokens and connections."""
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    if key not in clients:
        clients[key] = factory()
    return clients[key]


async def aclose_clients() -> None:
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()
