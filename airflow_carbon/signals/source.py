"""What a source of carbon intensity is, how tasks and records name one, and the registry of the kinds there are.

A task names its source as ``bundled:<region>``, ``csv:<path>`` or ``conn:<connection id>`` (a
``SourceRef``: plain data a trigger serializes, never a secret). Opening a ref gives a
``SignalSource``, found in the registry by the ref's scheme or, for a connection, by the
connection's type; each implementation registers itself with ``@register``, the way the cats
scheduler registers its providers. This module is the only place that tells kinds of source apart.
No Airflow: a connection's fields are read by the caller's ``read_connection``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from airflow_carbon.errors import CarbonConfigError
from airflow_carbon.signals.bundled import BUNDLED_REGIONS, bundled_intensity
from airflow_carbon.signals.csv import read_intensity_csv
from airflow_carbon.signals.replay import replay
from airflow_carbon.signals.series import Series, SignalDataError, to_epoch_s

log = logging.getLogger(__name__)

#: How far past ``now`` a replayed series reaches: the longest forecast any service offers.
REPLAY_HORIZON = timedelta(hours=72)
#: A file source reads at least this much history, so a replayed day keeps its shape.
FILE_HISTORY = timedelta(hours=24)
#: The modules whose sources register themselves; imported on the first lookup.
IMPLEMENTATIONS = ("airflow_carbon.signals.source", "airflow_carbon.signals.services.sources")


class SourceError(CarbonConfigError):
    """A source that cannot be opened as configured: unknown kind, wrong connection type, bad region."""


class SignalSource(Protocol):
    """A source of carbon intensity, opened: it knows what it is and reads a series for an interval."""

    name: str  #: how records and logs name it: its ref's name
    region: str  #: the grid region it reads
    signal_kind: str | None  #: ``marginal`` or ``average`` emissions rate; None when unknown (files)
    forecasts: bool  #: it gives a forecast of its own (not a replay of the past)

    async def aseries(self, now: datetime, history: timedelta) -> Series:
        """What is known from ``now`` on, and ``history`` before it."""
        ...


@dataclass(frozen=True)
class SourceConfig:
    """What opening a source needs: the ref's name and region and, for a connection, its fields.

    It may hold credentials: it lives in memory for one load and is never serialized or logged.
    """

    name: str
    region: str
    conn_id: str | None = None
    conn_type: str | None = None
    host: str | None = None
    login: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    path: str | None = None
    replay: bool | None = None


class SourceType(Protocol):
    @classmethod
    def from_config(cls, config: SourceConfig) -> SignalSource: ...


_REGISTRY: dict[str, type[SourceType]] = {}


def register(*keys: str) -> Callable[[type], type]:
    """Class decorator: the source kind ``keys`` (a ref scheme or a connection type) opens with this class."""

    def add(cls: type) -> type:
        for key in keys:
            _REGISTRY[key] = cls
        return cls

    return add


def source_types() -> dict[str, type[SourceType]]:
    """Every registered kind; the implementations register themselves when first imported."""
    for module in IMPLEMENTATIONS:
        importlib.import_module(module)
    return dict(_REGISTRY)


def connection_types() -> tuple[str, ...]:
    """The connection types that are carbon signal sources."""
    return tuple(sorted(key for key in source_types() if key not in _SCHEMES))


_SCHEMES = ("bundled", "csv", "conn")


@dataclass(frozen=True)
class SourceRef:
    """A source as a task names it: ``bundled:<region>``, ``csv:<path>`` or ``conn:<connection id>``.

    :param name: the name, parsed once here; nothing else reads its prefix.
    :param region: the grid region the task plans for (a connection or file may name its own).
    :param replay: files only: map the past onto the present; None replays when the file does not cover now.
    """

    name: str
    region: str
    replay: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name.strip())  # one key per source, whatever spaces came with it
        scheme, _, target = self.name.partition(":")
        if scheme not in _SCHEMES or not target:
            raise SourceError(f"source {self.name!r}: expected bundled:<region>, csv:<path> or conn:<connection id>")
        if scheme == "bundled" and target.strip().upper() not in BUNDLED_REGIONS:
            raise SourceError(f"no bundled data for region {target!r}; bundled regions: {', '.join(BUNDLED_REGIONS)} "
                              "(or name a source connection)")
        if scheme == "bundled":  # bundled data is of its own region, whatever the task plans for
            object.__setattr__(self, "region", target)

    @classmethod
    def bundled(cls, region: str) -> SourceRef:
        return cls(f"bundled:{region}", region)

    @classmethod
    def connection(cls, conn_id: str, region: str) -> SourceRef:
        return cls(f"conn:{conn_id}", region)

    @classmethod
    def file(cls, path: str, region: str, replay: bool | None = None) -> SourceRef:
        return cls(f"csv:{path}", region, replay)

    @property
    def conn_id(self) -> str | None:
        """The Airflow connection behind this source, if any."""
        scheme, _, target = self.name.partition(":")
        return target if scheme == "conn" else None

    @property
    def path(self) -> str | None:
        """The file behind this source, if any."""
        scheme, _, target = self.name.partition(":")
        return target if scheme == "csv" else None

    def describe(self) -> str:
        """``connection 'x'``, ``file '/p'`` or ``bundled data for DE``, for error messages."""
        if self.conn_id:
            return f"connection {self.conn_id!r}"
        if self.path:
            return f"file {self.path!r}"
        return f"bundled data for {self.name.partition(':')[2]}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "region": self.region, "replay": self.replay}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceRef:
        """From ``to_dict``, or from the ``SignalSpec`` dicts that triggers deferred by version 0.1 still hold."""
        if "name" in data:
            return cls(data["name"], data.get("region") or "", data.get("replay"))
        kind, region = data.get("kind"), data.get("region") or ""
        target = {"bundled": region, "csv": data.get("path"), "connection": data.get("conn_id")}.get(kind)
        scheme = {"connection": "conn"}.get(kind, kind)
        return cls(f"{scheme}:{target or ''}", region, data.get("replay"))  # no target: refused, not "conn:None"

    def config(self) -> SourceConfig:
        """What opening a bundled or file source needs: all of it is in the ref."""
        return SourceConfig(self.name, self.region, path=self.path, replay=self.replay)


#: Reads a connection's fields (the Airflow layer's ``aread_connection``).
ConnectionReader = Callable[[SourceRef], Awaitable[SourceConfig]]


async def aopen(ref: SourceRef, read_connection: ConnectionReader | None = None) -> SignalSource:
    """The source a ref names; a connection is read once, here, by ``read_connection``."""
    if ref.conn_id is None:
        return source_types()[ref.name.partition(":")[0]].from_config(ref.config())
    if read_connection is None:
        raise SourceError(f"{ref.describe()} is read through Airflow (airflow_carbon.hooks.sources)")
    config = await read_connection(ref)
    kinds = source_types()
    if config.conn_type not in kinds or config.conn_type in _SCHEMES:
        raise SourceError(f"connection {ref.conn_id!r} has type {config.conn_type!r}, which is not a carbon signal "
                          f"source ({', '.join(connection_types())})")
    return kinds[config.conn_type].from_config(config)


@dataclass(frozen=True)
class Reading:
    """The first source that answered: its series and what it is, and every source that failed before it."""

    series: Series | None
    served_by: str | None
    signal_kind: str | None
    failed_sources: tuple[str, ...] = ()


#: Reads one source: its series and its signal kind (a trigger passes one that goes through its cache).
Loader = Callable[[SourceRef, datetime, timedelta], Awaitable[tuple[Series, str | None]]]
#: Sees a source's error before the next source is tried; it raises to stop there instead.
Refuse = Callable[[SourceRef, Exception], None]


async def aread_first(refs: Sequence[SourceRef], now: datetime, history: timedelta, load: Loader,
                      refuse: Refuse | None = None) -> Reading:
    """The first source that answers, in order; a failure is named by the source and the error, never a secret.

    ``refuse`` may turn a failure into an error: a task's start refuses a malformed local file, which is
    configuration, not an outage.
    """
    failures: list[str] = []
    for ref in refs:
        try:
            series, signal_kind = await load(ref, now, history)
            return Reading(series, ref.name, signal_kind, tuple(failures))
        except Exception as error:  # every source may fail; the task must still run by its deadline
            if refuse is not None:
                refuse(ref, error)
            failures.append(f"{ref.name}: {type(error).__name__}: {error}")
            log.warning("carbon signal unavailable: %s", failures[-1])
    return Reading(None, None, None, tuple(failures))


@register("bundled")
@dataclass(frozen=True)
class BundledSource:
    """The measured series shipped with the package, replayed onto the present: examples run with nothing set up."""

    name: str
    region: str
    signal_kind: str | None = None
    forecasts: bool = False

    @classmethod
    def from_config(cls, config: SourceConfig) -> BundledSource:
        return cls(config.name, config.name.partition(":")[2])

    async def aseries(self, now: datetime, history: timedelta) -> Series:
        series = await asyncio.to_thread(bundled_intensity, self.region)
        return replay(series, now, REPLAY_HORIZON, max(history, FILE_HISTORY))


@register("csv", "carbon_csv")
@dataclass(frozen=True)
class CsvFileSource:
    """A CSV of carbon intensity: a forecast where it covers now, else its past replayed onto the present.

    Named as ``csv:<path>``, or by a ``carbon_csv`` connection whose extra holds ``path`` and optionally
    ``region`` (it wins over the task's) and ``replay``.
    """

    name: str
    region: str
    path: str
    replay: bool | None = None
    signal_kind: str | None = None
    forecasts: bool = True

    @classmethod
    def from_config(cls, config: SourceConfig) -> CsvFileSource:
        if config.conn_id is None:
            return cls(config.name, config.region, config.path or "", config.replay)
        path = config.extra.get("path")
        if not path:
            raise SignalDataError(f"connection {config.conn_id!r} has no 'path' in its extra")
        replay_flag = config.extra.get("replay")
        if isinstance(replay_flag, str):
            replay_flag = replay_flag.strip().lower() in ("1", "true", "yes")
        return cls(config.name, config.extra.get("region") or config.region, str(path), replay_flag)

    async def aseries(self, now: datetime, history: timedelta) -> Series:
        return await asyncio.to_thread(self._load, now, max(history, FILE_HISTORY))

    def _load(self, now: datetime, history: timedelta) -> Series:
        series = read_intensity_csv(self.path, self.region or None, kind="forecast")
        covers_now = series.first_epoch_s <= to_epoch_s(now) < series.end_epoch_s
        if self.replay or (self.replay is None and not covers_now):
            return replay(series, now, REPLAY_HORIZON, history)
        return series
