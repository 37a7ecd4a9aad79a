"""Electricity Maps as an Airflow connection: average intensity, lifecycle or direct, zones worldwide."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from airflow_carbon.hooks.base import SignalSourceHook
from airflow_carbon.hooks.sources import client_for
from airflow_carbon.signals.series import Series, combine
from airflow_carbon.signals.services.electricitymaps import ElectricityMapsClient

DEFAULT_BASE_URL = "https://api.electricitymaps.com"


class ElectricityMapsHook(SignalSourceHook):
    """Reads Electricity Maps with the API token in the connection's password field.

    Extra: ``zone`` (e.g. ``DE``) or ``latitude`` and ``longitude``; ``emission_factor``
    (``lifecycle`` or ``direct``); ``api_version`` (``v3``); ``horizon_hours`` (72). Without
    forecast access (the free tier) it plans on the same hour of the previous day, estimated.

    :param conn_id: the connection id.
    """

    conn_name_attr = "electricitymaps_conn_id"
    default_conn_name = "electricitymaps_default"
    conn_type = "electricitymaps"
    hook_name = "Electricity Maps"

    async def _client(self) -> tuple[ElectricityMapsClient, dict[str, Any]]:
        connection, extra, url = await self._read_connection(DEFAULT_BASE_URL)
        settings = (extra.get("api_version", "v3"), extra.get("emission_factor", "lifecycle"))
        fingerprint = hashlib.sha256(f"{connection.password}\0{url}\0{settings}".encode()).hexdigest()
        client = client_for(("electricitymaps", self.conn_id, fingerprint),
                            lambda: ElectricityMapsClient(connection.password, base_url=url,
                                                          api_version=settings[0], emission_factor=settings[1]))
        return client, extra

    @staticmethod
    def _location(extra: dict[str, Any], region: str) -> dict[str, Any]:
        if "latitude" in extra and "longitude" in extra:
            return {"lat": float(extra["latitude"]), "lon": float(extra["longitude"])}
        return {"zone": extra.get("zone") or region}

    async def aseries(self, now: datetime, region: str, history: timedelta = timedelta(0)) -> Series:
        client, extra = await self._client()
        location = self._location(extra, region)
        forecast = await client.forecast_or_persistence(**location, horizon_hours=int(extra.get("horizon_hours", 72)))
        if history <= timedelta(0):
            return forecast
        past = (await client.history(**location) if history <= timedelta(hours=24)
                else await client.past_range(now - history, now, **location))
        return combine(past, forecast)

    async def describe(self) -> str:
        client, extra = await self._client()
        latest = await client.latest(**self._location(extra, extra.get("zone", "")))
        return f"{latest.region}: {latest.values[-1]:.0f} gCO2eq/kWh now"
