"""Electricity Maps as an Airflow connection: average intensity, lifecycle or direct, zones worldwide."""

from __future__ import annotations

from airflow_carbon.hooks.base import SignalSourceHook


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
