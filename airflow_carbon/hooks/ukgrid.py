"""The UK Carbon Intensity API as an Airflow connection: national or regional 48 h forecasts, no key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow_carbon.hooks.base import SignalSourceHook
from airflow_carbon.hooks.sources import client_for
from airflow_carbon.signals.series import Series
from airflow_carbon.signals.services.ukgrid import UKCarbonIntensityClient

DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"


class UKCarbonIntensityHook(SignalSourceHook):
    """Reads the UK Carbon Intensity API (CC BY 4.0, no auth).

    Extra: ``postcode`` (outward code, e.g. ``RG10``) or ``region_id`` for a regional
    forecast; neither means Great Britain as a whole. The host field overrides the base URL.

    :param conn_id: the connection id.
    """

    conn_name_attr = "ukgrid_conn_id"
    default_conn_name = "ukgrid_default"
    conn_type = "ukgrid"
    hook_name = "UK Carbon Intensity"

    async def _client(self) -> tuple[UKCarbonIntensityClient, dict[str, Any]]:
        _, extra, url = await self._read_connection(DEFAULT_BASE_URL)
        client = client_for(("ukgrid", self.conn_id, url), lambda: UKCarbonIntensityClient(base_url=url))
        return client, extra

    async def aseries(self, now: datetime, region: str, history: timedelta = timedelta(0)) -> Series:
        """48 h from ``now - history``: the API returns measured and forecast values in one answer."""
        client, extra = await self._client()
        return await client.forecast(now - history, postcode=extra.get("postcode"), region_id=extra.get("region_id"))
