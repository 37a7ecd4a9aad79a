"""A site's solar as a ledger in the metrics store: tries running at once split the panels' output, none counts a
kWh another counted, in plans or in records.

The store is the one database every task and triggerer reaches, so the budget lives there, per site
and 60 s slot aligned to the epoch: what each try draws, the solar planned for it (``reserved_kw``, from
a forecast) and the solar it really had (``used_kw``, from the output once it ran), beside the site's
output per slot. Writers of one site take turns: on PostgreSQL the first statement upserts the site's
row, which locks it until the commit; on SQLite ``BEGIN IMMEDIATE`` takes the database's write lock,
waiting up to the busy timeout, and the whole transaction is retried if it stays locked. Reads for
planning take no lock. The arithmetic is in ``accounting.solar``. Pure SQLAlchemy, no Airflow.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Connection, and_, case, delete, func, not_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import ColumnElement

from airflow_carbon.accounting.solar import interval_means, reservable_kw, shared_kw, slot_grid
from airflow_carbon.clock import utcnow
from airflow_carbon.errors import CarbonError
from airflow_carbon.metrics.record import KEY_FIELDS, TaskTryKey
from airflow_carbon.metrics.schema import SOLAR_OUTPUT, SOLAR_RESERVATION, SOLAR_SITE, utc_day
from airflow_carbon.metrics.store import MetricsStore, upsert
from airflow_carbon.signals import SOLAR_UNIT, Series
from airflow_carbon.signals.series import Kind, from_epoch_s, to_epoch_s

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The ledger's slot: tries that draw in the same slot share its output.
SLOT_S = 60
MEASURED = "measured"
FORECAST = "forecast"
#: How many times a SQLite transaction starts again when the database stayed locked through the busy timeout.
SQLITE_ATTEMPTS = 3

#: The columns of the reservations and of the outputs.
RES, OUT = SOLAR_RESERVATION.c, SOLAR_OUTPUT.c


class SolarLedgerError(CarbonError, ValueError):
    """A call the ledger refuses (the message names the argument), or a site that stayed locked."""


class SolarLedger:
    """The shared solar budget of each site, in the metrics store.

    :param store: the metrics store (SQLite or PostgreSQL) whose ``carbon_solar_*`` tables hold the ledger.
    """

    def __init__(self, store: MetricsStore) -> None:
        self.store = store
        self.engine = store.engine

    def __repr__(self) -> str:
        return f"SolarLedger({self.store.safe_url!r})"

    # -- planning ---------------------------------------------------------------------------------

    def free_kw(self, site: str, forecast: Series, start: datetime, end: datetime, *,
                excluding: TaskTryKey | None = None) -> Series:
        """What a planner may count on in each slot of ``[start, end)``: the forecast's mean over the slot (0 outside
        it) less what the other tries reserved, never below 0. ``excluding`` is the try that plans."""
        slots = _slots(site, start, end)
        forecast_kw, _ = interval_means(forecast, slots, slots + SLOT_S)
        with self.engine.connect() as connection:
            [reserved_kw] = _per_slot(connection, site, slots, [RES.reserved_kw], excluding)
        return _series(site, slots, np.maximum(forecast_kw - reserved_kw, 0.0), FORECAST, forecast.source)

    def reserve(self, site: str, key: TaskTryKey, start: datetime, end: datetime, draw_kw: float,
                forecast: Series, *, peak_kw: float | None = None) -> Series:
        """Plan solar for a try drawing ``draw_kw`` over ``[start, end)``: in each slot, what the forecast leaves after
        the other tries' plans, at most its draw. Its earlier plan is replaced; every slot gets a row (its draw
        counts when the slot's output is shared). Returns the reserved power (kW) per slot.

        :param peak_kw: the site's peak power, kept on its row when given.
        """
        slots = _slots(site, start, end)
        draw_kw = _power("draw_kw", draw_kw)
        peak_kw = None if peak_kw is None else _power("peak_kw", peak_kw)
        forecast_kw, _ = interval_means(forecast, slots, slots + SLOT_S)

        def plan(connection: Connection) -> np.ndarray:
            connection.execute(delete(SOLAR_RESERVATION).where(_is_try(key)))
            [others_kw] = _per_slot(connection, site, slots, [RES.reserved_kw], key)
            reserved_kw = reservable_kw(forecast_kw, others_kw, draw_kw)
            now = utcnow()
            if slots.size:
                connection.execute(SOLAR_RESERVATION.insert(), [
                    {"site": site, "slot_start": from_epoch_s(slot), **asdict(key), "draw_kw": draw_kw,
                     "reserved_kw": float(kw), "used_kw": None, "updated_at": now}
                    for slot, kw in zip(slots, reserved_kw, strict=True)])
            return reserved_kw

        reserved_kw = self._atomic(site, plan, peak_kw)
        return _series(site, slots, reserved_kw, FORECAST, forecast.source)

    def release(self, key: TaskTryKey, after: datetime) -> int:
        """Give back a try's slots that start at or after ``after`` (it drew in the slot holding ``after``), when it
        failed, ended early or was released; returns the rows removed. Slots it already claimed stay: their solar
        is in its record."""
        after_s = _epoch_s("after", after)

        def give_back(connection: Connection) -> int:
            return connection.execute(delete(SOLAR_RESERVATION).where(
                _is_try(key), RES.slot_start >= from_epoch_s(after_s), RES.used_kw.is_(None))).rowcount

        return self._atomic(None, give_back)

    # -- accounting -------------------------------------------------------------------------------

    def claim(self, site: str, key: TaskTryKey, start: datetime, end: datetime, draw_kw: float, *,
              measured: Series | None, forecast: Series | None) -> tuple[Series, str | None]:
        """The solar a try that drew ``draw_kw`` over ``[start, end)`` really had, written so that no other try has it.

        The site's output in each slot is measured where ``measured`` covers the slot's part of ``[start, end)``,
        else the forecast where it covers it, else the mean of whichever knows some of it (measured first, 0 where
        neither knows), else 0; a measured output stored for the slot (by another try's claim) wins over a
        forecast. Each try gets its share of the output by draw, within what the others claimed, so the tries of
        a slot never claim more than its output (``accounting.solar.shared_kw``); a try that claimed on a forecast
        keeps its claim when a lower output is measured later (its record says ``forecast``).

        Returns the used power (kW) per slot touching ``[start, end)``, for ``accounting.account(solar=...)``, and
        its basis: ``measured``, ``forecast``, ``measured+forecast``, or None when nothing was known.
        """
        slots = _slots(site, start, end)
        draw_kw = _power("draw_kw", draw_kw)
        start_s, end_s = to_epoch_s(start), to_epoch_s(end)
        output_kw, basis = _output(slots, start_s, end_s, measured, forecast)
        known = np.flatnonzero(basis.astype(bool))

        def account(connection: Connection) -> tuple[np.ndarray, np.ndarray]:
            now = utcnow()
            if known.size:
                _write_output(connection, [
                    {"site": site, "slot_start": from_epoch_s(slots[i]), "output_kw": float(output_kw[i]),
                     "basis": basis[i], "updated_at": now} for i in known])
            stored_kw, stored_basis = _stored_output(connection, site, slots)
            others_draw_kw, others_used_kw = _per_slot(connection, site, slots, [RES.draw_kw, RES.used_kw], key)
            used_kw = shared_kw(stored_kw, draw_kw, others_draw_kw + draw_kw, others_used_kw)
            if slots.size:
                _write_used(connection, [
                    {"site": site, "slot_start": from_epoch_s(slot), **asdict(key), "draw_kw": draw_kw,
                     "reserved_kw": 0.0, "used_kw": float(kw), "updated_at": now}
                    for slot, kw in zip(slots, used_kw, strict=True)])
            return used_kw, stored_basis

        used_kw, stored_basis = self._atomic(site, account)
        kinds = [kind for kind in (MEASURED, FORECAST) if kind in set(stored_basis)]
        overall = "+".join(kinds) or None
        served = [series.source for kind, series in ((MEASURED, measured), (FORECAST, forecast))
                  if kind in kinds and series is not None]
        return _series(site, slots, used_kw, MEASURED if overall == MEASURED else FORECAST,
                       served[0] if served else ""), overall

    def free_output_kw(self, site: str, output: Series, start: datetime, end: datetime, *,
                       excluding: TaskTryKey | None = None) -> Series:
        """The output in each slot of ``[start, end)`` (its mean over the slot, 0 outside it) less what the other tries
        used, never below 0: the solar a baseline run at the ready time could have had."""
        slots = _slots(site, start, end)
        output_kw, _ = interval_means(output, slots, slots + SLOT_S)
        with self.engine.connect() as connection:
            [used_kw] = _per_slot(connection, site, slots, [RES.used_kw], excluding)
        return _series(site, slots, np.maximum(output_kw - used_kw, 0.0), output.kind, output.source)

    # -- reading ----------------------------------------------------------------------------------

    def site_days(self, since: datetime) -> list[dict[str, Any]]:
        """Per site and UTC day from ``since``: the output (kWh), its measured part and the solar tries used."""
        since = from_epoch_s(_epoch_s("since", since))
        dialect = self.engine.dialect.name
        output_day, used_day = utc_day(OUT.slot_start, dialect), utc_day(RES.slot_start, dialect)
        kwh = SLOT_S / 3600.0
        outputs = (select(OUT.site, output_day, func.sum(OUT.output_kw),
                          func.sum(case((OUT.basis == MEASURED, OUT.output_kw), else_=0.0)))
                   .where(OUT.slot_start >= since).group_by(OUT.site, output_day))
        used = (select(RES.site, used_day, func.sum(RES.used_kw))
                .where(RES.slot_start >= since, RES.used_kw.is_not(None)).group_by(RES.site, used_day))
        days: dict[tuple[str, str], dict[str, Any]] = {}

        def day(site: str, name: str) -> dict[str, Any]:
            return days.setdefault((site, name), {"site": site, "day": name, "output_kwh": 0.0, "measured_kwh": 0.0,
                                                  "used_kwh": 0.0})

        with self.engine.connect() as connection:
            for site, name, output_kw, measured_kw in connection.execute(outputs):
                day(site, name).update(output_kwh=float(output_kw) * kwh, measured_kwh=float(measured_kw) * kwh)
            for site, name, used_kw in connection.execute(used):
                day(site, name)["used_kwh"] = float(used_kw) * kwh
        return [days[where] for where in sorted(days)]

    def site_slots(self, site: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """The slots of ``[start, end)`` the ledger knows anything of: output, its basis, and the tries' reserved and
        used power (sums) and count."""
        slots = _slots(site, start, end)
        if not slots.size:
            return []
        found: dict[datetime, dict[str, Any]] = {}

        def slot(slot_start: datetime) -> dict[str, Any]:
            return found.setdefault(slot_start, {"slot_start": slot_start, "output_kw": None, "basis": None,
                                                 "reserved_kw": 0.0, "used_kw": 0.0, "tries": 0})

        with self.engine.connect() as connection:
            for slot_start, output_kw, basis in connection.execute(
                    select(OUT.slot_start, OUT.output_kw, OUT.basis).where(OUT.site == site, *_in_slots(OUT, slots))):
                slot(slot_start).update(output_kw=output_kw, basis=basis)
            for slot_start, reserved_kw, used_kw, tries in connection.execute(
                    select(RES.slot_start, func.sum(RES.reserved_kw), func.coalesce(func.sum(RES.used_kw), 0.0),
                           func.count()).where(RES.site == site, *_in_slots(RES, slots)).group_by(RES.slot_start)):
                slot(slot_start).update(reserved_kw=float(reserved_kw), used_kw=float(used_kw), tries=tries)
        return [found[slot_start] for slot_start in sorted(found)]

    # -- transactions -----------------------------------------------------------------------------

    def _atomic(self, site: str | None, work: Callable[[Connection], T], peak_kw: float | None = None) -> T:
        """Run ``work`` in one transaction that holds ``site``'s lock (the site's row is upserted first).

        On SQLite the transaction is ``BEGIN IMMEDIATE``, on a connection whose driver does not open one of its
        own, and starts again when the database stayed locked through the busy timeout.
        """
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as connection:
                if site is not None:
                    _lock_site(connection, site, peak_kw)
                return work(connection)
        for attempt in range(1, SQLITE_ATTEMPTS + 1):
            try:
                with self.engine.connect() as plain:
                    connection = plain.execution_options(isolation_level="AUTOCOMMIT")
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                    try:
                        if site is not None:
                            _lock_site(connection, site, peak_kw)
                        result = work(connection)
                    except BaseException:
                        connection.exec_driver_sql("ROLLBACK")
                        raise
                    connection.exec_driver_sql("COMMIT")
                    return result
            except OperationalError as error:
                if "locked" not in str(error.orig).lower():
                    raise
                if attempt == SQLITE_ATTEMPTS:
                    raise SolarLedgerError(
                        f"carbon solar ledger at {self.store.safe_url}: the database stayed locked through "
                        f"{SQLITE_ATTEMPTS} waits for its busy timeout ({error.orig})") from error
                log.warning("carbon solar ledger at %s: the database is locked (%s); starting again",
                            self.store.safe_url, error.orig)
                time.sleep(0.1 * attempt)
        raise AssertionError("unreachable")


# -- arguments ------------------------------------------------------------------------------------

def _epoch_s(name: str, instant: datetime) -> int:
    if not isinstance(instant, datetime):
        raise SolarLedgerError(f"{name}: expected an aware datetime, got {instant!r}")
    try:
        return to_epoch_s(instant)
    except ValueError as error:
        raise SolarLedgerError(f"{name}: {error}") from None


def _slots(site: str, start: datetime, end: datetime) -> np.ndarray:
    """The starts of the slots ``[start, end)`` touches, once the arguments are checked."""
    if not isinstance(site, str) or not site:
        raise SolarLedgerError(f"site: expected a site's name, got {site!r}")
    start_s, end_s = _epoch_s("start", start), _epoch_s("end", end)
    if end_s < start_s:
        raise SolarLedgerError(f"end {end.isoformat()} is before start {start.isoformat()}")
    return slot_grid(start_s, end_s, SLOT_S)[0]


def _power(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value) \
            or value < 0:
        raise SolarLedgerError(f"{name}: expected a power in kW, finite and not negative, got {value!r}")
    return float(value)


def _series(site: str, slots: np.ndarray, kw: np.ndarray, kind: Kind, source: str) -> Series:
    return Series(slots, kw, SLOT_S, site, unit=SOLAR_UNIT, kind=kind, source=source)


def _output(slots: np.ndarray, start_s: int, end_s: int, measured: Series | None, forecast: Series | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """The site's output in each slot's part of ``[start_s, end_s)``, and its basis (None: nothing known)."""
    lo_s, hi_s = np.maximum(slots, start_s), np.minimum(slots + SLOT_S, end_s)
    measured_kw, measured_known = interval_means(measured, lo_s, hi_s)
    forecast_kw, forecast_known = interval_means(forecast, lo_s, hi_s)
    choices = [measured_known >= 1, forecast_known >= 1, measured_known > 0, forecast_known > 0]
    output_kw = np.select(choices, [measured_kw, forecast_kw, measured_kw, forecast_kw], 0.0)
    measured_basis, forecast_basis = (np.full(slots.shape, kind, dtype=object) for kind in (MEASURED, FORECAST))
    basis = np.select(choices, [measured_basis, forecast_basis, measured_basis, forecast_basis], None)
    return output_kw, basis


# -- statements -----------------------------------------------------------------------------------

def _lock_site(connection: Connection, site: str, peak_kw: float | None) -> None:
    """Upsert the site's row: on PostgreSQL this locks it until the transaction ends, so writers take turns."""
    stmt = upsert(connection.dialect.name, SOLAR_SITE).values(site=site, peak_kw=peak_kw, updated_at=utcnow())
    connection.execute(stmt.on_conflict_do_update(index_elements=["site"], set_={
        "peak_kw": func.coalesce(stmt.excluded.peak_kw, SOLAR_SITE.c.peak_kw),
        "updated_at": stmt.excluded.updated_at}))


def _is_try(key: TaskTryKey) -> ColumnElement[bool]:
    return and_(*(RES[name] == value for name, value in asdict(key).items()))


def _in_slots(columns: Any, slots: np.ndarray) -> list[ColumnElement[bool]]:
    return [columns.slot_start >= from_epoch_s(slots[0]), columns.slot_start < from_epoch_s(slots[-1] + SLOT_S)]


def _per_slot(connection: Connection, site: str, slots: np.ndarray, columns: Iterable[ColumnElement[Any]],
              excluding: TaskTryKey | None) -> list[np.ndarray]:
    """Each column's sum over the tries of each slot (0 where none), leaving out ``excluding``."""
    columns = list(columns)
    sums = [np.zeros(slots.shape) for _ in columns]
    if not slots.size:
        return sums
    query = (select(RES.slot_start, *(func.coalesce(func.sum(column), 0.0) for column in columns))
             .where(RES.site == site, *_in_slots(RES, slots)).group_by(RES.slot_start))
    if excluding is not None:
        query = query.where(not_(_is_try(excluding)))
    for slot_start, *values in connection.execute(query):
        index = (to_epoch_s(slot_start) - int(slots[0])) // SLOT_S
        for total, value in zip(sums, values, strict=True):
            total[index] = float(value)
    return sums


def _write_output(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Upsert the site's output per slot; a measured value is never overwritten by a forecast."""
    stmt = upsert(connection.dialect.name, SOLAR_OUTPUT)
    keep = and_(SOLAR_OUTPUT.c.basis == MEASURED, stmt.excluded.basis != MEASURED)
    connection.execute(stmt.on_conflict_do_update(index_elements=["site", "slot_start"], set_={
        "output_kw": case((keep, SOLAR_OUTPUT.c.output_kw), else_=stmt.excluded.output_kw),
        "basis": case((keep, SOLAR_OUTPUT.c.basis), else_=stmt.excluded.basis),
        "updated_at": stmt.excluded.updated_at}), rows)


def _stored_output(connection: Connection, site: str, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The output the store holds for each slot (0 where none) and its basis (None where none)."""
    output_kw, basis = np.zeros(slots.shape), np.full(slots.shape, None, dtype=object)
    if not slots.size:
        return output_kw, basis
    query = select(OUT.slot_start, OUT.output_kw, OUT.basis).where(OUT.site == site, *_in_slots(OUT, slots))
    for slot_start, kw, kind in connection.execute(query):
        index = (to_epoch_s(slot_start) - int(slots[0])) // SLOT_S
        output_kw[index], basis[index] = kw, kind
    return output_kw, basis


def _write_used(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Upsert a try's rows with the draw and solar it really had; a reservation's ``reserved_kw`` stays."""
    stmt = upsert(connection.dialect.name, SOLAR_RESERVATION)
    connection.execute(stmt.on_conflict_do_update(
        index_elements=["site", "slot_start", *KEY_FIELDS],
        set_={name: stmt.excluded[name] for name in ("draw_kw", "used_kw", "updated_at")}), rows)


__all__ = ["SLOT_S", "SolarLedger", "SolarLedgerError"]
