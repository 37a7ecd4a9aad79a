"""WattTime as an Airflow connection: marginal emissions (``co2_moer``), forecasts up to 72 h."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from airflow_carbon.hooks.base import SignalSourceHook
from airflow_carbon.hooks.sources import client_for
from airflow_carbon.signals.series import Series, combine
from airflow_carbon.signals.services.watttime import WattTimeClient

DEFAULT_BASE_URL = "https://api.watttime.org"


class WattTimeHook(SignalSourceHook):
    """Reads WattTime v3 with the connection's username and password (login, password fields).

    Extra: ``region`` (e.g. ``CAISO_NORTH``; or ``latitude`` and ``longitude`` to look it up),
    ``signal_type`` (``co2_moer``), ``horizon_hours`` (72). The host field overrides the base URL.

    :param conn_id: the connection id.
    """

    conn_name_attr = "watttime_conn_id"
    default_conn_name = "watttime_default"
    conn_type = "watttime"
    hook_name = "WattTime"

    async def _client(self) -> tuple[WattTimeClient, dict[str, Any]]:
        connection, extra, url = await self._read_connection(DEFAULT_BASE_URL)
        fingerprint = hashlib.sha256(f"{connection.login}\0{connection.password}\0{url}".encode()).hexdigest()
        client = client_for(("watttime", self.conn_id, fingerprint),
                            lambda: WattTimeClient(connection.login, connection.password, base_url=url))
        return client, extra

    async def aseries(self, now: datetime, region: str, history: timedelta = timedelta(0)) -> Series:
        """The forecast from now, with ``history`` of measured values before it when asked."""
        client, extra = await self._client()
        signal_type = extra.get("signal_type", "co2_moer")
        region = extra.get("region") or (await client.region_from_loc(float(extra["latitude"]), float(
            extra["longitude"]), signal_type=signal_type) if "latitude" in extra else region)
        forecast = await client.forecast(region, signal_type=signal_type,
                                         horizon_hours=int(extra.get("horizon_hours", 72)))
        if history <= timedelta(0):
            return forecast
        past = await client.historical(region, now - history, now, signal_type=signal_type)
        return combine(past, forecast)

    async def describe(self) -> str:
        client, extra = await self._client()
        region = extra.get("region", "CAISO_NORTH")
        return f"{region}: signal index {await client.signal_index(region):.0f} of 100"
