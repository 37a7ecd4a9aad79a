"""The UK Carbon Intensity API as an Airflow connection: national or regional 48 h forecasts, no key."""

from __future__ import annotations

from airflow_carbon.hooks.base import SignalSourceHook


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
