"""Where a series comes from, as plain data a trigger can serialize, and how to load it.

A spec holds a region and a file path or the name of bundled data, never a secret:
sources behind credentials are named by an Airflow connection id (see ``hooks``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from airflow_carbon.signals.bundled import BUNDLED_REGIONS, bundled_intensity
from airflow_carbon.signals.csv import read_intensity_csv
from airflow_carbon.signals.replay import replay
from airflow_carbon.signals.series import Series, to_epoch_s

#: How far past ``now`` a replayed series reaches: the longest forecast any service offers.
REPLAY_HORIZON = timedelta(hours=72)


@dataclass(frozen=True)
class SignalSpec:
    """A carbon-intensity source, described without any secret.

    :param kind: ``bundled`` (the data shipped with the package), ``csv`` (a file), or
        ``connection`` (an Airflow connection naming a service or a file; it is loaded by
        ``airflow_carbon.hooks.sources``, which reads the credentials when it needs them).
    :param region: the grid region; for ``bundled`` one of ``BUNDLED_REGIONS``.
    :param path: the CSV file, for ``csv``.
    :param replay: map the historical series onto the present; None replays only when
        the file does not cover ``now``. Bundled data is always replayed.
    :param conn_id: the connection, for ``connection``.
    """

    kind: Literal["bundled", "csv", "connection"]
    region: str
    path: str | None = None
    replay: bool | None = None
    conn_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "bundled" and self.region.strip().upper() not in BUNDLED_REGIONS:
            known = ", ".join(BUNDLED_REGIONS)
            raise ValueError(f"no bundled data for region {self.region!r}; bundled regions: {known} "
                             "(or name a source connection)")
        if self.kind == "csv" and not self.path:
            raise ValueError("a csv signal source needs a path")
        if self.kind == "connection" and not self.conn_id:
            raise ValueError("a connection signal source needs a conn_id")
        if self.kind not in ("bundled", "csv", "connection"):
            raise ValueError(f"unknown signal source kind {self.kind!r}")

    @property
    def name(self) -> str:
        """How records and logs name this source."""
        return {"bundled": f"bundled:{self.region}", "csv": f"csv:{self.path}"}.get(self.kind, f"conn:{self.conn_id}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignalSpec:
        return cls(**data)

    def load(self, now: datetime, history: timedelta = timedelta(hours=24)) -> Series:
        """The series around ``now``: ``history`` before it and what is known after it. Blocking I/O."""
        if self.kind == "connection":
            raise TypeError(f"{self.name} is loaded through airflow_carbon.hooks.sources, which reads the connection")
        if self.kind == "bundled":
            return replay(bundled_intensity(self.region), now, REPLAY_HORIZON, history)
        series = read_intensity_csv(self.path, self.region or None, kind="forecast")
        covers_now = series.first_epoch_s <= to_epoch_s(now) < series.end_epoch_s
        if self.replay or (self.replay is None and not covers_now):
            return replay(series, now, REPLAY_HORIZON, history)
        return series
