"""Releases, eco-mode-off switches and budgets in the metrics store, each change with its audit entry.

The API, the CLI, the worker and the triggerer all go through these functions, so a change is written
the same way whoever makes it: the change and its audit entry in one transaction. The poll a triggerer
makes (``control_state``) is one query, however many tasks wait on it. Pure SQLAlchemy, no Airflow.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal,
    null,
    or_,
    select,
)
from sqlalchemy import update as sql_update

from airflow_carbon.control import (
    Budget,
    ControlInputError,
    EcoSwitch,
    Override,
    eco_off_for,
    parse_window,
    period_bounds,
    projected_g,
)
from airflow_carbon.errors import CarbonError
from airflow_carbon.metrics.record import DEFERRED, FINISHED_STATES, KEY_FIELDS, TaskTryKey
from airflow_carbon.metrics.schema import AUDIT, BUDGET, BUDGET_ALERT, ECO_SWITCH, RELEASE, TABLE
from airflow_carbon.metrics.store import upsert
from airflow_carbon.units import parse_instant

__all__ = ["ControlInputError", "NotWaitingError"]

#: The scope of a switch for every DAG.
ALL_DAGS = "*"
#: Who writes what the system itself decided (a budget crossed) into the audit.
SYSTEM_ACTOR = "airflow-carbon"
CODE_SOURCE = "dag code"
API_SOURCE = "api"


class NotWaitingError(CarbonError, LookupError):
    """A release of a task instance that has no waiting try in the store."""


def _audit(connection: Connection, now: datetime, actor: str, action: str, reason: str | None, *,
           dag_id: str | None = None, run_id: str | None = None, task_id: str | None = None,
           map_index: int | None = None, detail: Mapping[str, Any] | None = None) -> None:
    connection.execute(AUDIT.insert().values(
        at=now, actor=actor, action=action, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index,
        reason=reason or None, detail=dict(detail) if detail else None))


# -- releases ---------------------------------------------------------------------------------------------

def release(engine: Engine, dag_id: str, run_id: str, task_id: str, map_index: int, *, actor: str,
            reason: str | None, now: datetime) -> dict[str, Any]:
    """Release the instance's latest waiting try; releasing it again keeps the first release."""
    with engine.begin() as connection:
        try_number = connection.execute(
            select(func.max(TABLE.c.try_number)).where(
                TABLE.c.dag_id == dag_id, TABLE.c.run_id == run_id, TABLE.c.task_id == task_id,
                TABLE.c.map_index == map_index, TABLE.c.state == DEFERRED)).scalar_one_or_none()
        if try_number is None:
            raise NotWaitingError(f"task {task_id!r} (map index {map_index}) of run {run_id!r} of DAG {dag_id!r} "
                                  "is not waiting for a cleaner grid")
        key = {"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "map_index": map_index,
               "try_number": try_number}
        inserted = connection.execute(upsert(engine.dialect.name, RELEASE).values(
            **key, released_by=actor, released_at=now, reason=reason or None).on_conflict_do_nothing()
            .returning(RELEASE.c.try_number)).first()
        if inserted is not None:
            _audit(connection, now, actor, "release", reason, dag_id=dag_id, run_id=run_id, task_id=task_id,
                   map_index=map_index, detail={"try_number": try_number})
        row = connection.execute(select(RELEASE).where(*(RELEASE.c[name] == value for name, value in key.items()))
                                 ).mappings().one()
    return dict(row)


# -- eco-mode off -----------------------------------------------------------------------------------------

def set_eco_off(engine: Engine, dag_id: str | None, *, until: datetime | None, windows: Sequence[str], actor: str,
                reason: str | None, now: datetime) -> dict[str, Any]:
    """Switch carbon-awareness off for a DAG (or every DAG), replacing the switch it had."""
    parsed = tuple(parse_window(text, f"windows[{i}]") for i, text in enumerate(windows))
    if until is not None:
        until = parse_instant(until)
        if until <= now:
            raise ControlInputError(f"until {until.isoformat()} is not in the future")
    values = {"scope": dag_id or ALL_DAGS, "until": until, "windows": [window.text for window in parsed] or None,
              "set_by": actor, "set_at": now, "reason": reason or None}
    stmt = upsert(engine.dialect.name, ECO_SWITCH).values(values)
    with engine.begin() as connection:
        connection.execute(stmt.on_conflict_do_update(
            index_elements=["scope"], set_={name: stmt.excluded[name] for name in values if name != "scope"}))
        _audit(connection, now, actor, "eco_off", reason, dag_id=dag_id,
               detail={"until": until.isoformat() if until else None, "windows": values["windows"]})
    return _switch_dict(_switch(values), now)


def clear_eco_off(engine: Engine, dag_id: str | None, *, actor: str, reason: str | None, now: datetime) -> bool:
    """Carbon-awareness back on for a DAG (or every DAG); False when it was not switched off."""
    with engine.begin() as connection:
        deleted = connection.execute(delete(ECO_SWITCH).where(ECO_SWITCH.c.scope == (dag_id or ALL_DAGS))
                                     .returning(ECO_SWITCH.c.scope)).first()
        if deleted is not None:
            _audit(connection, now, actor, "eco_on", reason, dag_id=dag_id)
    return deleted is not None


def _switch(row: Mapping[str, Any]) -> EcoSwitch:
    return EcoSwitch(None if row["scope"] == ALL_DAGS else row["scope"], row["until"],
                     tuple(parse_window(text) for text in row["windows"] or ()), row["set_by"], row["set_at"],
                     row["reason"])


def _switch_dict(switch: EcoSwitch, now: datetime) -> dict[str, Any]:
    return {"dag_id": switch.dag_id, "until": switch.until, "windows": [window.text for window in switch.windows],
            "set_by": switch.set_by, "set_at": switch.set_at, "reason": switch.reason, "active": switch.holds(now)}


def eco_switches(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """Every switch, the global one first, with whether it holds now."""
    with engine.connect() as connection:
        rows = connection.execute(select(ECO_SWITCH).order_by(ECO_SWITCH.c.scope)).mappings().all()
    return [_switch_dict(_switch(row), now) for row in rows]


# -- what a waiting task asks ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ControlState:
    """The releases of waiting tries and the eco-mode-off switches, as one poll read them."""

    releases: Mapping[TaskTryKey, Override]
    switches: tuple[EcoSwitch, ...]

    def override(self, key: TaskTryKey, now: datetime) -> Override | None:
        """Why this try should run now whatever its plan says; None when nobody said so."""
        released = self.releases.get(key)
        if released is not None:
            return released
        switch = eco_off_for(self.switches, key.dag_id, now)
        return None if switch is None else Override("eco_off", switch.set_by, switch.set_at, switch.reason)


NO_CONTROL = ControlState({}, ())


def control_state(engine: Engine) -> ControlState:
    """The switches and the releases of tries still waiting, in one query."""
    switches = select(literal("eco").label("kind"), ECO_SWITCH.c.scope.label("dag_id"),
                      cast(null(), String).label("run_id"), cast(null(), String).label("task_id"),
                      cast(null(), Integer).label("map_index"), cast(null(), Integer).label("try_number"),
                      ECO_SWITCH.c.set_by.label("actor"), ECO_SWITCH.c.set_at.label("at"), ECO_SWITCH.c.reason,
                      ECO_SWITCH.c.until, ECO_SWITCH.c.windows)
    waiting = RELEASE.join(TABLE, (TABLE.c.state == DEFERRED) & _same_key(RELEASE, TABLE))
    releases = select(literal("release"), RELEASE.c.dag_id, RELEASE.c.run_id, RELEASE.c.task_id,
                      RELEASE.c.map_index, RELEASE.c.try_number, RELEASE.c.released_by, RELEASE.c.released_at,
                      RELEASE.c.reason, null(), null()).select_from(waiting)
    with engine.connect() as connection:
        rows = connection.execute(switches.union_all(releases)).mappings().all()
    found: dict[TaskTryKey, Override] = {}
    eco: list[EcoSwitch] = []
    for row in rows:
        if row["kind"] == "eco":
            eco.append(_switch({**row, "scope": row["dag_id"], "set_by": row["actor"], "set_at": row["at"]}))
        else:
            key = TaskTryKey(row["dag_id"], row["task_id"], row["run_id"], row["map_index"], row["try_number"])
            found[key] = Override("released", row["actor"], parse_instant(row["at"], naive_is_utc=True),
                                  row["reason"])
    return ControlState(found, tuple(eco))


def _same_key(left: Any, right: Any) -> Any:
    return and_(*(left.c[name] == right.c[name] for name in KEY_FIELDS))


def write_plans(engine: Engine, plans: Sequence[Mapping[str, Any]], now: datetime) -> None:
    """The latest plan of each waiting try, in one transaction: ``decided_at``, ``planned_start`` and the
    expected emissions, keyed by the try's key fields. A try that stopped waiting keeps its row."""
    if not plans:
        return
    stmt = (sql_update(TABLE)
            .where(*(TABLE.c[name] == bindparam(f"k_{name}") for name in KEY_FIELDS), TABLE.c.state == DEFERRED)
            .values({name: bindparam(name) for name in ("decided_at", "planned_start", "expected_emissions_now_g",
                                                        "expected_emissions_at_start_g")} | {"updated_at": now}))
    rows = [{f"k_{name}": plan[name] for name in KEY_FIELDS} | {name: plan.get(name) for name in (
        "decided_at", "planned_start", "expected_emissions_now_g", "expected_emissions_at_start_g")}
        for plan in plans]
    with engine.begin() as connection:
        connection.execute(stmt, rows)


# -- budgets ---------------------------------------------------------------------------------------------

def set_budget(engine: Engine, dag_id: str, *, grams: float, period: str, strict: bool, actor: str,
               reason: str | None, now: datetime, source: str = API_SOURCE) -> dict[str, Any]:
    """Set a DAG's budget. DAG code (``source="dag code"``) never replaces a budget a person set, and writes
    (and audits) only a change."""
    budget = Budget(float(grams), period, bool(strict))
    values = {"dag_id": dag_id, "grams": budget.grams, "period": budget.period, "strict": budget.strict,
              "source": source, "set_by": actor, "set_at": now, "reason": reason or None}
    with engine.begin() as connection:
        kept = connection.execute(select(BUDGET).where(BUDGET.c.dag_id == dag_id)).mappings().one_or_none()
        if source == CODE_SOURCE and kept is not None and (
                kept["source"] != CODE_SOURCE
                or (kept["grams"], kept["period"], kept["strict"]) == (budget.grams, budget.period, budget.strict)):
            return dict(kept)
        stmt = upsert(engine.dialect.name, BUDGET).values(values)
        connection.execute(stmt.on_conflict_do_update(
            index_elements=["dag_id"], set_={name: stmt.excluded[name] for name in values if name != "dag_id"}))
        _audit(connection, now, actor, "budget_set", reason, dag_id=dag_id,
               detail={"grams": budget.grams, "period": budget.period, "strict": budget.strict, "source": source})
    return values


def clear_budget(engine: Engine, dag_id: str, *, actor: str, reason: str | None, now: datetime) -> bool:
    """Remove a DAG's budget; False when it had none. DAG code that names one sets it again at its next task."""
    with engine.begin() as connection:
        deleted = connection.execute(delete(BUDGET).where(BUDGET.c.dag_id == dag_id).returning(BUDGET.c.dag_id)
                                     ).first()
        if deleted is not None:
            _audit(connection, now, actor, "budget_clear", reason, dag_id=dag_id)
    return deleted is not None


def spent_g(connection: Connection, dag_id: str, start: datetime, end: datetime) -> float:
    """The grid emissions of the DAG's tries that ended in ``[start, end)``."""
    return float(connection.execute(select(func.coalesce(func.sum(TABLE.c.emissions_g), 0.0)).where(
        TABLE.c.dag_id == dag_id, TABLE.c.state.in_(FINISHED_STATES), TABLE.c.ended_at >= start,
        TABLE.c.ended_at < end)).scalar_one())


def budget_status(engine: Engine, dag_ids: Collection[str] | None, now: datetime) -> list[dict[str, Any]]:
    """Each budget with what its current period has spent, where it is heading, and whether it is over."""
    query = select(BUDGET).order_by(BUDGET.c.dag_id)
    if dag_ids is not None:
        query = query.where(BUDGET.c.dag_id.in_(list(dag_ids)))
    statuses = []
    with engine.connect() as connection:
        for row in connection.execute(query).mappings().all():
            start, end = period_bounds(row["period"], now)
            spent = spent_g(connection, row["dag_id"], start, end)
            statuses.append({
                "dag_id": row["dag_id"], "budget_g": row["grams"], "period": row["period"], "period_start": start,
                "period_end": end, "spent_g": spent, "projected_g": projected_g(spent, start, end, now),
                "spent_pct": 100.0 * spent / row["grams"], "over": spent > row["grams"], "strict": row["strict"],
                "source": row["source"], "set_by": row["set_by"], "set_at": row["set_at"], "reason": row["reason"]})
    return statuses


def claim_budget_alert(engine: Engine, dag_id: str, period_start: datetime, *, spent: float, budget_g: float,
                       now: datetime) -> bool:
    """True for the one caller that first finds the DAG over budget in this period: it tells, nobody else does."""
    with engine.begin() as connection:
        inserted = connection.execute(upsert(engine.dialect.name, BUDGET_ALERT).values(
            dag_id=dag_id, period_start=period_start, spent_g=spent, budget_g=budget_g,
            alerted_at=now).on_conflict_do_nothing().returning(BUDGET_ALERT.c.dag_id)).first()
        if inserted is not None:
            _audit(connection, now, SYSTEM_ACTOR, "budget_exceeded", None, dag_id=dag_id,
                   detail={"spent_g": spent, "budget_g": budget_g, "period_start": period_start.isoformat()})
    return inserted is not None


# -- the trail -------------------------------------------------------------------------------------------

def audit(engine: Engine, dag_ids: Collection[str] | None, *, dag_id: str | None = None,
          limit: int = 200) -> list[dict[str, Any]]:
    """Newest first; ``dag_ids`` narrows to those DAGs and the entries of every DAG (``dag_id`` None)."""
    query = select(AUDIT).order_by(AUDIT.c.at.desc(), AUDIT.c.id.desc()).limit(limit)
    if dag_ids is not None:
        query = query.where(or_(AUDIT.c.dag_id.in_(list(dag_ids)), AUDIT.c.dag_id.is_(None)))
    if dag_id is not None:
        query = query.where(AUDIT.c.dag_id == dag_id)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]
