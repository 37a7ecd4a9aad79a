"""What a source of carbon intensity is, how tasks and records name one, and the registry of the kinds there are.

A task names its source as ``bundled:<region>``, ``csv:<path>`` or ``conn:<connection id>`` (a
``SourceRef``: plain data a trigger serializes, never a secret). Opening a ref gives a
``SignalSource``, found in the registry by the ref's scheme or, for a connection, by the
connection's type; each implementation registers itself with ``@register``, the way the cats
scheduler registers its providers. This module is the only place that tells kinds of source apart.
No Airflow: a connection's fields are read by the caller's ``read_connection``.

Each kind measures one quantity, its class's ``quantity``: ``intensity`` (the grid's carbon intensity, the
default) or ``solar`` (on-site solar output, ``airflow_carbon.signals.solar``). A caller opens a ref for the
quantity it wants, and a connection of the other quantity is refused, naming it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, overload

from airflow_carbon.errors import CarbonConfigError
from airflow_carbon.signals.bundled import BUNDLED_REGIONS, bundled_intensity
from airflow_carbon.signals.csv import read_intensity_csv
from airflow_carbon.signals.replay import replay
from airflow_carbon.signals.series import Series, SignalDataError, to_epoch_s
from airflow_carbon.units import parse_instant

log = logging.getLogger(__name__)

#: How far past ``now`` a replayed series reaches: the longest forecast any service offers.
REPLAY_HORIZON = timedelta(hours=72)
#: A file source reads at least this much history, so a replayed day keeps its shape.
FILE_HISTORY = timedelta(hours=24)
#: The modules whose sources register themselves; imported on the first lookup.
IMPLEMENTATIONS = ("airflow_carbon.signals.source", "airflow_carbon.signals.solar",
                   "airflow_carbon.signals.services.sources")
#: What each quantity's sources are called in messages.
QUANTITIES = {"intensity": "carbon signal source", "solar": "solar source"}


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


class SolarSource(Protocol):
    """A site's solar output, opened: a forecast in kW and, when something logs the panels, what they gave."""

    name: str  #: the ref's name, e.g. ``conn:roof``
    site: str  #: the site whose panels it describes: the extra's ``site``, else the connection id
    peak_kw: float | None  #: the panels' peak power, when known
    measures: bool  #: it has measured output for the past
    min_refresh_s: float  #: read the forecast no more often than this (a service's rate limit); 0: any time

    async def aforecast(self, now: datetime, horizon: timedelta) -> Series:
        """Site output in kW (``SOLAR_UNIT``, region = site, kind ``forecast``), covering at least
        ``[now, now + horizon)`` where known; night is 0 kW, not a gap."""
        ...

    async def ameasured(self, start: datetime, end: datetime) -> Series | None:
        """Measured output in kW (kind ``measured``) over what of ``[start, end)`` was logged; None when the
        source measures nothing or nothing of it was logged. Raises ``SignalDataError`` (naming the file and
        line) when the log is configured but unreadable."""
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

    def _refuse(self, key: str, wanted: str, value: Any) -> SourceError:
        return SourceError(f"connection {self.conn_id!r}: extra {key!r} must be {wanted}, got {value!r:.60}")

    def extra_text(self, key: str, *, required: bool = False) -> str | None:
        """A text field of the extra, stripped; None when absent or blank (refused if ``required``)."""
        value = self.extra.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise SourceError(f"connection {self.conn_id!r} has no {key!r} in its extra")
            return None
        if not isinstance(value, str):
            raise self._refuse(key, "text", value)
        return value.strip()

    def extra_number(self, key: str, *, low: float | None = None, high: float | None = None,
                     positive: bool = False, required: bool = False) -> float | None:
        """A number of the extra (a JSON number or its text) within ``[low, high]``; None when absent or blank."""
        value = self.extra.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise SourceError(f"connection {self.conn_id!r} has no {key!r} in its extra")
            return None
        bounds = ("a number" + (f" from {low:g} to {high:g}" if low is not None and high is not None else "")
                  + (" above 0" if positive else ""))
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            raise self._refuse(key, bounds, value) from None
        if (not math.isfinite(number) or (low is not None and number < low) or (high is not None and number > high)
                or (positive and number <= 0)):
            raise self._refuse(key, bounds, value)
        return number

    def extra_flag(self, key: str) -> bool | None:
        """A true/false field of the extra (JSON boolean, or true/false/yes/no/1/0 as text); None when absent."""
        value = self.extra.get(key)
        if value is None or isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes"):
            return True
        if text in ("0", "false", "no"):
            return False
        if not text:
            return None
        raise self._refuse(key, "true or false", value)

    def extra_instant(self, key: str) -> datetime | None:
        """An ISO 8601 instant of the extra in UTC (naive is UTC, as in the files); None when absent."""
        text = self.extra_text(key)
        if text is None:
            return None
        try:
            return parse_instant(text, naive_is_utc=True)
        except ValueError:
            raise self._refuse(key, "an ISO 8601 instant such as 2024-06-01T00:00:00Z", text) from None


class SourceType(Protocol):
    @classmethod
    def from_config(cls, config: SourceConfig) -> SignalSource: ...


#: quantity -> source kind (a ref scheme or a connection type) -> class.
_REGISTRY: dict[str, dict[str, type[SourceType]]] = {}


def quantity_of(kind: type) -> str:
    """What a source class measures: its ``quantity``, ``intensity`` when it does not say."""
    return getattr(kind, "quantity", "intensity")


def register(*keys: str) -> Callable[[type], type]:
    """Class decorator: the source kind ``keys`` (a ref scheme or a connection type) opens with this class.

    A scheme may have one kind per quantity (``csv:`` is a grid file or a solar file, by what is asked); a
    connection type belongs to one quantity only, so a connection of the other one can be named when refused.
    """

    def add(cls: type) -> type:
        quantity = quantity_of(cls)
        if quantity not in QUANTITIES:
            raise ValueError(f"{cls.__name__}: unknown quantity {quantity!r}; use one of {', '.join(QUANTITIES)}")
        for key in keys:
            taken = _quantity_of_connection_type(key)
            if key not in _SCHEMES and taken not in (None, quantity):
                raise ValueError(f"{cls.__name__}: connection type {key!r} is already a {QUANTITIES[taken]}")
            _REGISTRY.setdefault(quantity, {})[key] = cls
        return cls

    return add


def _imported() -> dict[str, dict[str, type[SourceType]]]:
    for module in IMPLEMENTATIONS:
        importlib.import_module(module)
    return _REGISTRY


def _quantity_of_connection_type(conn_type: str | None) -> str | None:
    return next((quantity for quantity, kinds in _REGISTRY.items() if conn_type in kinds), None)


def source_types(quantity: str = "intensity") -> dict[str, type[SourceType]]:
    """Every registered kind of ``quantity``; the implementations register themselves when first imported."""
    return dict(_imported().get(quantity, {}))


def connection_types(quantity: str = "intensity") -> tuple[str, ...]:
    """The connection types that are sources of ``quantity`` (carbon signal sources by default)."""
    return tuple(sorted(key for key in source_types(quantity) if key not in _SCHEMES))


_SCHEMES = ("bundled", "csv", "conn")


@dataclass(frozen=True)
class SourceRef:
    """A source as a task names it: ``bundled:<region>``, ``csv:<path>`` or ``conn:<connection id>``.

    :param name: the name, parsed once here; nothing else reads its prefix.
    :param region: the grid region the task plans for (a connection or file may name its own).
    :param replay: files only: map the past onto the present; None replays when the file does not cover now.
    :param forecaster: what carries the source's series past its end (a forecaster's name, or ``none``),
        resolved when the task starts; None in refs made before forecasters, which then plan as before.
    """

    name: str
    region: str
    replay: bool | None = None
    forecaster: str | None = None

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
        return {"name": self.name, "region": self.region, "replay": self.replay, "forecaster": self.forecaster}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceRef:
        """From ``to_dict``, or from the ``SignalSpec`` dicts that triggers deferred by version 0.1 still hold."""
        if "name" in data:
            return cls(data["name"], data.get("region") or "", data.get("replay"), data.get("forecaster"))
        kind, region = data.get("kind"), data.get("region") or ""
        target = {"bundled": region, "csv": data.get("path"), "connection": data.get("conn_id")}.get(kind)
        scheme = {"connection": "conn"}.get(kind, kind)
        return cls(f"{scheme}:{target or ''}", region, data.get("replay"))  # no target: refused, not "conn:None"

    def config(self) -> SourceConfig:
        """What opening a bundled or file source needs: all of it is in the ref."""
        return SourceConfig(self.name, self.region, path=self.path, replay=self.replay)


#: Reads a connection's fields (the Airflow layer's ``aread_connection``).
ConnectionReader = Callable[[SourceRef], Awaitable[SourceConfig]]


@overload
async def aopen(ref: SourceRef, read_connection: ConnectionReader | None = None,
                quantity: Literal["intensity"] = "intensity") -> SignalSource: ...


@overload
async def aopen(ref: SourceRef, read_connection: ConnectionReader | None = None, *,
                quantity: Literal["solar"]) -> SolarSource: ...


async def aopen(ref: SourceRef, read_connection: ConnectionReader | None = None,
                quantity: str = "intensity") -> SignalSource | SolarSource:
    """The source of ``quantity`` a ref names; a connection is read once, here, by ``read_connection``.

    A connection whose type is not a source of ``quantity`` is refused, naming the types that are.
    """
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; use one of {', '.join(QUANTITIES)}")
    kinds, what = source_types(quantity), QUANTITIES[quantity]
    if ref.conn_id is None:
        scheme = ref.name.partition(":")[0]
        if scheme not in kinds:
            raise SourceError(f"{ref.describe()} is not a {what}; name a connection of type "
                              f"{' or '.join(connection_types(quantity))}")
        return kinds[scheme].from_config(ref.config())
    if read_connection is None:
        raise SourceError(f"{ref.describe()} is read through Airflow (airflow_carbon.hooks.sources)")
    config = await read_connection(ref)
    if config.conn_type not in kinds or config.conn_type in _SCHEMES:
        other = _quantity_of_connection_type(config.conn_type) if config.conn_type not in _SCHEMES else None
        hint = f"; it is a {QUANTITIES[other]}" if other is not None else ""
        raise SourceError(f"connection {ref.conn_id!r} has type {config.conn_type!r}, which is not a {what} "
                          f"({', '.join(connection_types(quantity))}){hint}")
    return kinds[config.conn_type].from_config(config)


@dataclass(frozen=True)
class Reading:
    """The first source that answered: its series and what it is, and every source that failed before it."""

    series: Series | None
    served_by: str | None
    signal_kind: str | None
    failed_sources: tuple[str, ...] = ()
    #: Where a forecaster carried the series past the source's end: the same periods at its upper quantile.
    upper: Series | None = None


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
        return cls(config.name, config.extra.get("region") or config.region, str(path), config.extra_flag("replay"))

    async def aseries(self, now: datetime, history: timedelta) -> Series:
        return await asyncio.to_thread(self._load, now, max(history, FILE_HISTORY))

    def _load(self, now: datetime, history: timedelta) -> Series:
        series = read_intensity_csv(self.path, self.region or None, kind="forecast")
        covers_now = series.first_epoch_s <= to_epoch_s(now) < series.end_epoch_s
        if self.replay or (self.replay is None and not covers_now):
            return replay(series, now, REPLAY_HORIZON, history)
        return series
