"""A CSV file of carbon intensity as an Airflow connection: a path and a region, no secret."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from airflow_carbon.hooks.base import SignalSourceHook
from airflow_carbon.signals.series import Series, SignalDataError
from airflow_carbon.signals.source import SignalSpec


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

    async def aseries(self, now: datetime, region: str, history: timedelta = timedelta(0)) -> Series:
        connection = await self.aget_connection(self.conn_id)
        extra = await connection.aextra_dejson()
        if not extra.get("path"):
            raise SignalDataError(f"connection {self.conn_id!r} has no 'path' in its extra")
        replay = extra.get("replay")
        if isinstance(replay, str):
            replay = replay.strip().lower() in ("1", "true", "yes")
        spec = SignalSpec("csv", region=extra.get("region") or region, path=extra["path"], replay=replay)
        return await asyncio.to_thread(spec.load, now, max(history, timedelta(hours=24)))
