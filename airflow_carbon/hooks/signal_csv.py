"""A CSV file of carbon intensity as an Airflow connection: a path and a region, no secret."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from airflow_carbon.signals.source import SignalSpec


class CarbonCsvHook(BaseHook):
    """Names a carbon-intensity CSV so tasks can refer to it by connection id.

    The connection's extra holds ``path`` and optionally ``region`` and ``replay``
    (true: map the file onto the present; absent: only when it does not cover now).

    :param carbon_csv_conn_id: the connection id.
    """

    conn_name_attr = "carbon_csv_conn_id"
    default_conn_name = "carbon_csv_default"
    conn_type = "carbon_csv"
    hook_name = "Carbon intensity CSV file"

    def __init__(self, carbon_csv_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.carbon_csv_conn_id = carbon_csv_conn_id

    def signal_spec(self, region: str) -> SignalSpec:
        """The file as a source; the connection's region, if it has one, wins over the task's."""
        extra: dict[str, Any] = self.get_connection(self.carbon_csv_conn_id).extra_dejson
        if not extra.get("path"):
            raise ValueError(f"connection {self.carbon_csv_conn_id!r} has no 'path' in its extra")
        replay = extra.get("replay")
        if isinstance(replay, str):
            replay = replay.strip().lower() in ("1", "true", "yes")
        return SignalSpec("csv", region=extra.get("region") or region, path=extra["path"], replay=replay)

    def test_connection(self) -> tuple[bool, str]:
        from datetime import UTC, datetime

        try:
            series = self.signal_spec("").load(datetime.now(UTC))
        except Exception as error:
            return False, str(error)
        return True, f"{len(series)} values of {series.region}, every {series.period_s} s"
