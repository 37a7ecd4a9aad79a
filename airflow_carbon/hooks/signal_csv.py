"""A CSV file of carbon intensity as an Airflow connection: a path and a region, no secret."""

from __future__ import annotations

from airflow_carbon.hooks.base import SignalSourceHook


class CarbonCsvHook(SignalSourceHook):
    """Names a carbon-intensity CSV so tasks can refer to it by connection id.

    The connection's extra holds ``path`` and optionally ``region`` (it wins over the
    task's) and ``replay`` (true: map the file onto the present; absent: only when it
    does not cover now).

    :param conn_id: the connection id.
    """

    conn_name_attr = "carbon_csv_conn_id"
    default_conn_name = "carbon_csv_default"
    conn_type = "carbon_csv"
    hook_name = "Carbon intensity CSV file"
