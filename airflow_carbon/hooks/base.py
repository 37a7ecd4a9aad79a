"""What every signal-source hook shares: a connection of its type in, a source from the registry out.

The hooks exist for Airflow's connection forms and connection tests; tasks and triggers open sources
through the registry (``airflow_carbon.signals.source``) and never need a hook.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from airflow.sdk import BaseHook

from airflow_carbon.clock import utcnow
from airflow_carbon.hooks.sources import aread_connection
from airflow_carbon.signals.series import Series
from airflow_carbon.signals.services.http import run_sync
from airflow_carbon.signals.services.pool import aclose_clients
from airflow_carbon.signals.source import SignalSource, SourceRef, aopen


class SourceConnectionHook(BaseHook):
    """A hook for one connection of a source's type, grid or solar.

    :param conn_id: the connection id; the hook's ``default_conn_name`` when not given.
    """

    default_conn_name: str

    def __init__(self, conn_id: str | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name
        setattr(self, self.conn_name_attr, self.conn_id)

    @staticmethod
    def run_check(check: Callable[[], Awaitable[str]]) -> tuple[bool, str]:
        """A connection test's answer: the line ``check`` returns, or the error; the loop's clients closed."""

        async def checked() -> str:
            try:
                return await check()
            finally:
                await aclose_clients()

        try:
            return True, run_sync(checked())
        except Exception as error:
            return False, str(error)


class SignalSourceHook(SourceConnectionHook):
    """A hook whose connection names a carbon-intensity source."""

    async def asource(self, region: str = "") -> SignalSource:
        """The connection's source, opened (the connection is read once)."""
        return await aopen(SourceRef.connection(self.conn_id, region), aread_connection)

    async def aseries(self, now: datetime, region: str = "", history: timedelta = timedelta(0)) -> Series:
        """What is known from ``now`` on (and ``history`` before it) for ``region``."""
        return await (await self.asource(region)).aseries(now, history)

    def test_connection(self) -> tuple[bool, str]:
        async def check() -> str:
            source = await self.asource()
            if hasattr(source, "describe"):
                return await source.describe()
            series = await source.aseries(utcnow(), timedelta(0))
            return f"{series.region}: {len(series)} values every {series.period_s} s from {series.source}"

        return self.run_check(check)
