"""WattTime as an Airflow connection: marginal emissions (``co2_moer``), forecasts up to 72 h."""

from __future__ import annotations

from airflow_carbon.hooks.base import SignalSourceHook


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
