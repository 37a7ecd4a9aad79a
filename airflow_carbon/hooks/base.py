"""What every signal-source hook shares: a connection in, a series of carbon intensity out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseHook

from airflow_carbon.signals.series import Series
from airflow_carbon.signals.services.base import run_sync


class SignalSourceHook(BaseHook):
    """A hook whose connection names a carbon-intensity source.

    :param conn_id: the connection id; the hook's ``default_conn_name`` when not given.
    """

    default_conn_name: str

    def __init__(self, conn_id: str | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name
        setattr(self, self.conn_name_attr, self.conn_id)

    async def _read_connection(self, default_url: str) -> tuple[Any, dict[str, Any], str]:
        """The connection, its extra, and the base URL: its host field, else the service's own."""
        connection = await self.aget_connection(self.conn_id)
        return connection, await connection.aextra_dejson(), base_url(connection.host, default_url)

    async def aseries(self, now: datetime, region: str, history: timedelta = timedelta(0)) -> Series:
        """What is known from ``now`` on (and ``history`` before it, when asked) for ``region``."""
        raise NotImplementedError

    async def describe(self) -> str:
        """A line saying the source answers, for the connection test."""
        from datetime import UTC

        series = await self.aseries(datetime.now(UTC), "")
        return f"{series.region}: {len(series)} values every {series.period_s} s from {series.source}"

    def test_connection(self) -> tuple[bool, str]:
        from airflow_carbon.hooks.sources import aclose_clients

        async def check() -> str:
            try:
                return await self.describe()
            finally:
                await aclose_clients()

        try:
            return True, run_sync(check())
        except Exception as error:
            return False, str(error)


def base_url(host: str | None, default: str) -> str:
    """The connection's host as a base URL; a bare host name gets https."""
    if not host:
        return default
    return host if "://" in host else f"https://{host}"
