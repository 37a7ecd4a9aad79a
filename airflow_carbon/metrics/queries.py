"""What the Carbon pages show, read from the metrics store: pure SQLAlchemy, no Airflow.

Every function takes the DAGs the caller may read (``dag_ids``; None means no restriction, for
tests and scripts) and never returns a row of another DAG. Aggregates run in the database, so a
year of task tries is not loaded into the API server to draw one chart.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    or_,
    select,
)

from airflow_carbon.metrics.record import (
    COMPLETED,
    DEFERRED,
    DELAYED_AFTER_S,
    DERIVED_FIELDS,
    RUN_FIELDS,
    WAITING_FIELDS,
)
from airflow_carbon.metrics.schema import TABLE, utc_day
from airflow_carbon.metrics.store import row_dict

if TYPE_CHECKING:  # metrics.solar imports this module
    from airflow_carbon.metrics.solar import SolarLedger

DEFAULT_TASK_LIMIT = 1000
MAX_TASK_LIMIT = 10000
#: The days a filter may name: what a scheduler's history can hold, with room on both sides so that a day's
#: bounds and a window around them never leave the range of ``datetime``.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2199, 12, 31)

HISTORY_COLUMNS = ("dag_id", "day", "tasks_run", "delayed", "forced_by_deadline", "served_by_fallback", "energy_kwh",
                   "solar_kwh", "grid_kwh", "emissions_g", "baseline_emissions_g", "saved_g", "saved_pct",
                   "saved_time_g", "saved_place_g")
SOLAR_COLUMNS = ("site", "day", "output_kwh", "measured_kwh", "output_basis", "used_kwh", "tasks_run", "solar_kwh",
                 "grid_kwh")
TASK_COLUMNS = RUN_FIELDS
#: A waiting try's fields with when its latest plan was made: the trigger rewrites the plan at every refresh.
DEFERRED_FIELDS = (*WAITING_FIELDS, "state", "decided_at")
DEFERRED_COLUMNS = (*DEFERRED_FIELDS, *DERIVED_FIELDS)

T = TABLE.c


@dataclass(frozen=True)
class Filters:
    """What the history and the task list are narrowed to; ``start`` and ``end`` are UTC days, both included."""

    dag_id: str | None = None
    task_id: str | None = None
    region: str | None = None
    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            day = getattr(self, name)
            if day is not None and not FIRST_DAY <= day <= LAST_DAY:
                raise ValueError(f"{name}: {day.isoformat()} is not a day between {FIRST_DAY.isoformat()} and "
                                 f"{LAST_DAY.isoformat()}")
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"end {self.end.isoformat()} is before start {self.start.isoformat()}")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


# -- expressions ---------------------------------------------------------------------------------

#: When a completed try counts for a day: when it started (its emissions), else when it became ready.
_run_at = func.coalesce(T.started_at, T.ready_at)

#: It started later than it became ready, whatever its last plan said (a try that waited for a window and was then
#: forced by its deadline, or found none left, waited all the same).
_DELAYED = T.delay_s >= DELAYED_AFTER_S

_FAILED_ANY = func.coalesce(cast(T.failed_sources, String), "[]").not_in(["[]", "null"])

#: Served by another source than the task's own, or some source failed on the way.
_FALLBACK = or_(and_(T.served_by.is_not(None), T.served_by != T.source), _FAILED_ANY)


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _total(column: ColumnElement[Any]) -> ColumnElement[float]:
    return func.coalesce(func.sum(column), 0.0)


def _readable(dag_ids: Collection[str] | None) -> ColumnElement[bool] | None:
    if dag_ids is None:
        return None
    return T.dag_id.in_(sorted(dag_ids)) if dag_ids else false()


def _where(dag_ids: Collection[str] | None, filters: Filters | None) -> list[ColumnElement[bool]]:
    conditions = [c for c in (_readable(dag_ids),) if c is not None]
    filters = filters or Filters()
    for name in ("dag_id", "task_id", "region"):
        value = getattr(filters, name)
        if value:
            conditions.append(T[name] == value)
    if filters.start:
        conditions.append(_run_at >= _day_start(filters.start))
    if filters.end:
        conditions.append(_run_at < _day_start(filters.end + timedelta(days=1)))
    return conditions


# -- queries -------------------------------------------------------------------------------------

def deferred(engine: Engine, dag_ids: Collection[str] | None, now: datetime, *, dag_id: str | None = None,
             task_id: str | None = None) -> list[dict[str, Any]]:
    """Tries waiting for a cleaner grid, soonest planned start first.

    A try that a later try of the same task instance superseded (it failed while deferred, the
    task was cleared) is left out.
    """
    newer = TABLE.alias("newer")
    superseded = exists().where(newer.c.dag_id == T.dag_id, newer.c.task_id == T.task_id,
                                newer.c.run_id == T.run_id, newer.c.map_index == T.map_index,
                                newer.c.try_number > T.try_number)
    query = (select(TABLE)
             .where(T.state == DEFERRED, ~superseded, *_where(dag_ids, Filters(dag_id=dag_id, task_id=task_id)))
             .order_by(T.planned_start, T.dag_id, T.task_id, T.run_id, T.map_index))
    with engine.connect() as connection:
        rows = [row_dict(row) for row in connection.execute(query).mappings()]
    return [{name: row.get(name) for name in DEFERRED_FIELDS} | _derived(row, now) for row in rows]


def _derived(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Intensity and expected saving as of the row's latest plan (``decided_at``), time waited and left until now.

    Only the row's own fields count: the trigger writes each re-plan over the last, so these follow it.
    """
    energy, now_g = row.get("energy_kwh"), row.get("expected_emissions_now_g")
    later_g, ready_at, deadline = row.get("expected_emissions_at_start_g"), row.get("ready_at"), row.get("deadline")
    return {
        "current_intensity_g_per_kwh": now_g / energy if now_g is not None and energy else None,
        "expected_saving_g": now_g - later_g if now_g is not None and later_g is not None else None,
        "waited_s": max((now - ready_at).total_seconds(), 0.0) if ready_at else None,
        "remaining_s": max((deadline - now).total_seconds(), 0.0) if deadline else None,
    }


def history(engine: Engine, dag_ids: Collection[str] | None, filters: Filters | None = None
            ) -> list[dict[str, Any]]:
    """Completed tries per DAG and UTC day (the day each started): counts, energy (on-site solar and grid),
    emissions and savings, and of the savings of choices between regions what the time and the place saved.

    A choice's record counts under its chosen region (``region``), so the ``region`` filter finds it there.
    """
    day = utc_day(_run_at, engine.dialect.name).label("day")
    query = (
        select(
            T.dag_id, day,
            func.count().label("tasks_run"),
            _count(_DELAYED).label("delayed"),
            _count(T.reason == "deadline").label("forced_by_deadline"),
            _count(_FALLBACK).label("served_by_fallback"),
            _total(T.energy_kwh).label("energy_kwh"),
            _total(T.solar_kwh).label("solar_kwh"),
            _total(T.grid_kwh).label("grid_kwh"),
            _total(T.emissions_g).label("emissions_g"),
            _total(T.baseline_emissions_g).label("baseline_emissions_g"),
            _total(T.saved_g).label("saved_g"),
            # A choice between regions splits its saving; null where no try of the day made one.
            func.sum(T.saved_time_g).label("saved_time_g"),
            func.sum(T.saved_place_g).label("saved_place_g"),
            # The saving's own baseline: tries the signal did not cover have no saving to weigh.
            _total(case((T.saved_g.is_not(None), T.baseline_emissions_g))).label("saved_base_g"),
        )
        .where(T.state == COMPLETED, *_where(dag_ids, filters))
        .group_by(T.dag_id, day)
        .order_by(day, T.dag_id)
    )
    with engine.connect() as connection:
        rows = [row_dict(row) for row in connection.execute(query).mappings()]
    out = []
    for row in rows:
        base = row.pop("saved_base_g")
        out.append({name: row.get(name) for name in HISTORY_COLUMNS if name != "saved_pct"}
                   | {"saved_pct": 100.0 * row["saved_g"] / base if base else None})
    return out


def history_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The history as CSV, one line per DAG and day, empty cells for unknown values."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: "" if row.get(name) is None else row[name] for name in HISTORY_COLUMNS})
    return buffer.getvalue()


def solar(engine: Engine, ledger: SolarLedger, dag_ids: Collection[str] | None, filters: Filters | None = None
          ) -> list[dict[str, Any]]:
    """On-site solar per site and UTC day: the site's output beside what tries used, oldest day first per site.

    Two figures of use, each honest about what it counts. ``used_kwh`` is the ledger's (``SolarLedger.site_days``):
    what every try at the site used, per slot's day, whichever DAG it belongs to. ``solar_kwh`` and ``grid_kwh``
    sum the records of the completed tries of ``dag_ids`` that the filters select, per day each started, as the
    history counts them: one aggregate over the tries table, and the figure the Carbon view charts.

    The sites are those the tries of ``dag_ids`` named (narrowed by the filters' DAG, task and region; every site
    of the ledger when there is neither restriction nor name filter); a site's output and ``used_kwh`` are its
    totals, as its panels are shared and what other tries used is what these could not have. The filters' days
    bound both. ``output_basis`` says how the output was obtained: ``measured``, ``forecast``,
    ``measured+forecast``, or None when the site reported no output that day.
    """
    filters = filters or Filters()
    named = replace(filters, start=None, end=None)
    day = utc_day(_run_at, engine.dialect.name).label("day")
    tries = (select(T.site, day, func.count().label("tasks_run"), _total(T.solar_kwh).label("solar_kwh"),
                    _total(T.grid_kwh).label("grid_kwh"))
             .where(T.state == COMPLETED, T.site.is_not(None), *_where(dag_ids, filters))
             .group_by(T.site, day))
    with engine.connect() as connection:
        used = {(row["site"], row["day"]): row for row in connection.execute(tries).mappings()}
        sites = None
        if dag_ids is not None or any((named.dag_id, named.task_id, named.region)):
            query = select(T.site).distinct().where(T.site.is_not(None), *_where(dag_ids, named))
            sites = set(connection.execute(query).scalars())
    since = _day_start(filters.start or FIRST_DAY)
    last = (filters.end or LAST_DAY).isoformat()
    output = {(row["site"], row["day"]): row for row in ledger.site_days(since)
              if row["day"] <= last and (sites is None or row["site"] in sites)}
    out = []
    for site, name in sorted(output.keys() | used.keys()):
        site_day = output.get((site, name), {})
        tried = used.get((site, name), {})
        output_kwh, measured_kwh = site_day.get("output_kwh", 0.0), site_day.get("measured_kwh", 0.0)
        out.append({"site": site, "day": name, "output_kwh": output_kwh, "measured_kwh": measured_kwh,
                    "output_basis": _basis(output_kwh, measured_kwh), "used_kwh": site_day.get("used_kwh", 0.0),
                    "tasks_run": tried.get("tasks_run", 0), "solar_kwh": float(tried.get("solar_kwh", 0.0)),
                    "grid_kwh": float(tried.get("grid_kwh", 0.0))})
    return out


def _basis(output_kwh: float, measured_kwh: float) -> str | None:
    """How a day's output was obtained, from its measured part; sums of the same slots, so within rounding."""
    if output_kwh <= 0:
        return None
    if measured_kwh >= output_kwh * (1 - 1e-9):
        return "measured"
    return "measured+forecast" if measured_kwh > 0 else "forecast"


def tasks(engine: Engine, dag_ids: Collection[str] | None, filters: Filters | None = None,
          limit: int = DEFAULT_TASK_LIMIT) -> list[dict[str, Any]]:
    """Completed tries for charts: the most recent ``limit`` (by start), returned oldest first."""
    limit = max(1, min(int(limit), MAX_TASK_LIMIT))
    query = (select(*(T[name] for name in TASK_COLUMNS))
             .where(T.state == COMPLETED, *_where(dag_ids, filters))
             .order_by(_run_at.desc(), T.dag_id, T.task_id, T.run_id, T.map_index, T.try_number)
             .limit(limit))
    with engine.connect() as connection:
        rows = [row_dict(row) for row in connection.execute(query).mappings()]
    return rows[::-1]


def decision(engine: Engine, dag_ids: Collection[str] | None, dag_id: str, run_id: str, task_id: str,
             map_index: int, now: datetime) -> list[dict[str, Any]]:
    """Every try of one task instance, first try first, with the derived fields of ``deferred``."""
    query = (select(TABLE)
             .where(T.dag_id == dag_id, T.run_id == run_id, T.task_id == task_id, T.map_index == map_index,
                    *_where(dag_ids, None))
             .order_by(T.try_number))
    with engine.connect() as connection:
        rows = [row_dict(row) for row in connection.execute(query).mappings()]
    return [row | _derived(row, now) for row in rows]


def source_regions(engine: Engine, dag_ids: Collection[str] | None, name: str) -> set[str]:
    """The regions tries of these DAGs recorded with ``name`` as their signal source or server (empty: none used it).

    What the Carbon view may ask a connection's source for: no more keys than the store holds.
    """
    query = (select(T.region).distinct()
             .where(or_(T.source == name, T.served_by == name), *_where(dag_ids, None)))
    with engine.connect() as connection:
        return {region or "" for region in connection.execute(query).scalars()}
