"""The energy of work a ``CarbonAwareSensor`` gated: one row per try of a task it let run, summed onto its record.

The sensor draws nothing itself; each task downstream of it meters its own run and writes a row here when it ends.
The sensor's row in ``carbon_task_try`` is then rewritten from all its rows, never incremented, so concurrent
finishes and a try written twice never count twice. Every try counts: a retried task drew energy in each try.

Pure SQLAlchemy, no Airflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, case, select, update

from airflow_carbon.metrics.record import FINISHED_STATES, KEY_FIELDS
from airflow_carbon.metrics.schema import GATED_ENERGY, TABLE
from airflow_carbon.metrics.store import upsert

#: How a sensor's ``energy_method`` begins once the tasks it gated added their energy.
GATED_PREFIX = "gated: "


@dataclass(frozen=True)
class GatedTry:
    """One try of a task a sensor let run (its key first), which try of the sensor gated it, and what it drew.

    ``energy_kwh`` is the facility's energy (IT energy times the sensor's ``pue``); the emissions are None where
    the signal did not cover the run, and the baseline is the same run started as much earlier as the sensor waited.
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    sensor_task_id: str
    sensor_map_index: int
    sensor_try_number: int
    started_at: datetime
    ended_at: datetime
    energy_kwh: float
    energy_method: str
    energy_scope: str
    emissions_g: float | None = None
    baseline_emissions_g: float | None = None
    #: After a choice between regions: the same run on the home region's signal, which splits the saving.
    home_emissions_g: float | None = None


def sensor_row(engine: Engine, dag_id: str, run_id: str, sensor_task_id: str, map_index: int
               ) -> dict[str, Any] | None:
    """The sensor's latest finished try in the run: of the same map index as the gated task when it has one
    (both mapped alike), else its unmapped one (-1); None when the store has neither."""
    query = (select(TABLE).where(TABLE.c.dag_id == dag_id, TABLE.c.run_id == run_id,
                                 TABLE.c.task_id == sensor_task_id, TABLE.c.state.in_(FINISHED_STATES),
                                 TABLE.c.map_index.in_([map_index, -1]))
             .order_by(case((TABLE.c.map_index == map_index, 0), else_=1), TABLE.c.try_number.desc()).limit(1))
    with engine.connect() as connection:
        row = connection.execute(query).mappings().first()
    return None if row is None else dict(row)


def record_gated(engine: Engine, row: GatedTry, now: datetime) -> bool:
    """Write the gated try and rewrite its sensor's record from all the sensor's gated rows, in one transaction.

    The sensor's row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite has one writer at a time), so a
    concurrent finish sums after this one commits. Returns False when the sensor has no finished row (none, or its
    completion still in a host's spool): the gated row is kept all the same.
    """
    values = asdict(row) | {"updated_at": now}
    stmt = upsert(engine.dialect.name, GATED_ENERGY).values(values)
    stmt = stmt.on_conflict_do_update(index_elements=list(KEY_FIELDS),
                                      set_={name: stmt.excluded[name] for name in values if name not in KEY_FIELDS})
    sensor = _sensor_key(row)
    with engine.begin() as connection:
        found = connection.execute(select(TABLE.c.try_number).where(
            *_is(TABLE, sensor), TABLE.c.state.in_(FINISHED_STATES)).with_for_update()).first()
        connection.execute(stmt)
        if found is None:
            return False
        connection.execute(update(TABLE).where(*_is(TABLE, sensor)).values(
            **_sums(_rows_of(connection, sensor)), updated_at=now))
    return True


def gated_rows(engine: Engine, dag_id: str, run_id: str, sensor_task_id: str) -> list[dict[str, Any]]:
    """Every gated row of a sensor in a run (any of its tries and map indexes), in key order."""
    query = (select(GATED_ENERGY).where(GATED_ENERGY.c.dag_id == dag_id, GATED_ENERGY.c.run_id == run_id,
                                        GATED_ENERGY.c.sensor_task_id == sensor_task_id)
             .order_by(GATED_ENERGY.c.sensor_map_index, GATED_ENERGY.c.sensor_try_number,
                       *(GATED_ENERGY.c[name] for name in KEY_FIELDS)))
    with engine.connect() as connection:
        return [dict(found) for found in connection.execute(query).mappings()]


def _sensor_key(row: GatedTry) -> dict[str, Any]:
    return {"dag_id": row.dag_id, "task_id": row.sensor_task_id, "run_id": row.run_id,
            "map_index": row.sensor_map_index, "try_number": row.sensor_try_number}


def _is(table: Any, key: dict[str, Any]) -> list[Any]:
    return [table.c[name] == value for name, value in key.items()]


def _rows_of(connection: Connection, sensor: dict[str, Any]) -> list[Any]:
    g = GATED_ENERGY.c
    return connection.execute(
        select(g.task_id, g.map_index, g.try_number, g.energy_kwh, g.energy_method, g.emissions_g,
               g.baseline_emissions_g, g.home_emissions_g)
        .where(g.dag_id == sensor["dag_id"], g.run_id == sensor["run_id"], g.sensor_task_id == sensor["task_id"],
               g.sensor_map_index == sensor["map_index"], g.sensor_try_number == sensor["try_number"])
        .order_by(g.task_id, g.map_index, g.try_number)).all()


def _sums(rows: list[Any]) -> dict[str, Any]:
    """The gate's figures: sums over its rows; an emissions figure only when every row has it. After a choice between
    regions, the saving splits into what the time saved (home when ready, less home at the start) and what the place
    saved (home at the start, less the chosen region)."""
    energy_kwh = sum(found.energy_kwh for found in rows)
    emissions_g = _sum([found.emissions_g for found in rows])
    baseline_g = _sum([found.baseline_emissions_g for found in rows])
    home_g = _sum([found.home_emissions_g for found in rows])
    split = {}
    if home_g is not None and baseline_g is not None and emissions_g is not None:
        split = {"saved_time_g": baseline_g - home_g, "saved_place_g": home_g - emissions_g}
    breakdown: dict[str, float] = {}
    for found in rows:
        breakdown[name_of(found)] = breakdown.get(name_of(found), 0.0) + found.energy_kwh
    return {"energy_kwh": energy_kwh, "grid_kwh": energy_kwh, "emissions_g": emissions_g,
            "baseline_emissions_g": baseline_g,
            "saved_g": None if emissions_g is None or baseline_g is None else baseline_g - emissions_g,
            "energy_method": GATED_PREFIX + _combine([(name_of(found), found.energy_method) for found in rows]),
            "energy_breakdown_kwh": breakdown, **split}


def _sum(values: list[float | None]) -> float | None:
    return None if None in values else sum(values)  # type: ignore[arg-type]


def name_of(row: Any) -> str:
    """A gated row's task as the sensor's breakdown names it: ``task_id``, or ``task_id[map_index]`` when mapped."""
    return row.task_id if row.map_index < 0 else f"{row.task_id}[{row.map_index}]"


def _combine(pairs: list[tuple[str, str]]) -> str:
    """One method when every task's was the same, else ``task: method`` per task; ``; `` apart, since a method
    may itself name one per component."""
    methods = list(dict.fromkeys(method for _, method in pairs))
    if len(methods) == 1:
        return methods[0]
    return "; ".join(dict.fromkeys(f"{name}: {method}" for name, method in pairs))
