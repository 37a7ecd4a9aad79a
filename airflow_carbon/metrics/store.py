"""One row per task try in a database of its own, written by workers and triggers, read by the UI and the simulator.

Pure SQLAlchemy 2: this module never imports Airflow, because task and trigger processes in
Airflow 3 cannot reach Airflow's metadata database, and the readers (UI plugin, simulator) should
not need a running Airflow to open the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Engine,
    Float,
    Index,
    Integer,
    String,
    case,
    create_engine,
    event,
    func,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import ColumnElement, Insert
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

DEFERRED = "deferred"
RUNNING = "running"
COMPLETED = "completed"
SUPPORTED_DIALECTS = ("sqlite", "postgresql")
SQLITE_BUSY_TIMEOUT_S = 30.0


class UnsupportedDialectError(ValueError):
    """The store upserts with ``INSERT ... ON CONFLICT``; a read-then-write fallback would race between writers."""


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, whatever the backend keeps.

    SQLite has no time zones: values are stored as naive UTC (so that text order is time order)
    and read back with UTC attached. Naive input is taken as UTC, the project's convention.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | str | None, dialect: Dialect) -> datetime | None:
        value = as_utc(value)
        if value is not None and dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_utc(value: datetime | str | None) -> datetime | None:
    """An aware UTC datetime from a datetime or an ISO 8601 string; naive means UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime or an ISO 8601 string, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class CarbonTaskTry(Base):
    """What one try of one task instance decided and, once it ran, emitted and saved."""

    __tablename__ = "carbon_task_try"

    dag_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    map_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    try_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String)
    region: Mapped[str | None] = mapped_column(String)
    source: Mapped[str | None] = mapped_column(String)
    signal: Mapped[str | None] = mapped_column(String)
    policy: Mapped[str | None] = mapped_column(String)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    planned_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String)
    expected_emissions_now_g: Mapped[float | None] = mapped_column(Float)
    expected_emissions_at_start_g: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delay_s: Mapped[float | None] = mapped_column(Float)
    intensity_g_per_kwh: Mapped[float | None] = mapped_column(Float)
    baseline_intensity_g_per_kwh: Mapped[float | None] = mapped_column(Float)
    energy_kwh: Mapped[float | None] = mapped_column(Float)
    solar_kwh: Mapped[float | None] = mapped_column(Float)
    grid_kwh: Mapped[float | None] = mapped_column(Float)
    emissions_g: Mapped[float | None] = mapped_column(Float)
    baseline_emissions_g: Mapped[float | None] = mapped_column(Float)
    saved_g: Mapped[float | None] = mapped_column(Float)
    estimated: Mapped[bool | None] = mapped_column(Boolean)
    served_by: Mapped[str | None] = mapped_column(String)
    failed_sources: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_carbon_task_try_state", "state"),
        Index("ix_carbon_task_try_dag_id_ready_at", "dag_id", "ready_at"),
    )


TABLE = CarbonTaskTry.__table__
KEY_COLUMNS = ("dag_id", "task_id", "run_id", "map_index", "try_number")
# Written by the decision only; a completion leaves them as they were.
DECISION_COLUMNS = ("decided_at", "planned_start", "expected_emissions_now_g", "expected_emissions_at_start_g")
# Known to both; the completion's value wins unless it has none.
SHARED_COLUMNS = ("region", "source", "signal", "policy", "ready_at", "deadline", "reason")
# Known to the completion only, from JobRecord.to_dict().
COMPLETION_COLUMNS = ("started_at", "ended_at", "delay_s", "intensity_g_per_kwh", "baseline_intensity_g_per_kwh",
                      "energy_kwh", "solar_kwh", "grid_kwh", "emissions_g", "baseline_emissions_g", "saved_g",
                      "estimated")
FLOAT_COLUMNS = tuple(name for name in COMPLETION_COLUMNS if name not in ("started_at", "ended_at", "estimated"))


@dataclass(frozen=True)
class TaskTryKey:
    """Identifies one try of one task instance, the store's primary key."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1


def safe_url(url: Any) -> str:
    """The URL as text with its password hidden, for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def _check_dialect(name: str, where: str) -> None:
    if name not in SUPPORTED_DIALECTS:
        raise UnsupportedDialectError(
            f"carbon metrics store {where}: dialect {name!r} is not supported (only {', '.join(SUPPORTED_DIALECTS)}),"
            " because writes must be atomic INSERT ... ON CONFLICT upserts"
        )


def upsert(dialect_name: str) -> Insert:
    """The dialect's ``INSERT`` with ``ON CONFLICT`` support, so concurrent writers never race."""
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(TABLE)
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(TABLE)
    _check_dialect(dialect_name, "upsert")
    raise AssertionError("unreachable")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL and a busy timeout, so a worker, a triggerer and the API server can share one file.

    Switching a new file to WAL needs an exclusive lock and SQLite reports "database is locked" at
    once, without waiting, when another process switches it at the same moment: retry until the
    busy timeout.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        give_up = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        while True:
            try:
                cursor.execute("PRAGMA journal_mode")
                if str(cursor.fetchone()[0]).lower() != "wal":
                    cursor.execute("PRAGMA journal_mode = WAL")
                return
            except Exception as error:  # the driver's OperationalError; this module does not import sqlite3
                if "locked" not in str(error) or time.monotonic() > give_up:
                    raise
                time.sleep(0.05)
    finally:
        cursor.close()


def decision_statement(dialect_name: str, key: TaskTryKey, *, region: str | None, source: str | None,
                       policy: str | None, ready_at: datetime | str | None, deadline: datetime | str | None,
                       decision: Mapping[str, Any], signal: str | None = None, served_by: str | None = None,
                       failed_sources: Iterable[str] = (), now: datetime | None = None, state: str = DEFERRED,
                       energy_kwh: float | None = None) -> Insert:
    """Upsert of the ``deferred`` (or, run at once, ``running``) row.

    A row already ``completed`` keeps its state and values and only gains the decision fields it
    lacked: a late or replayed decision must not undo a finished task. ``energy_kwh`` is the
    planned energy, so that a waiting row shows the intensity now (expected emissions / energy);
    the completion replaces it with the energy really used.
    """
    failed = list(failed_sources)
    values: dict[str, Any] = {
        **_key_values(key),
        "state": state,
        "region": _opt_str(region),
        "source": _opt_str(source),
        "signal": _opt_str(signal),
        "policy": _opt_str(policy),
        "ready_at": as_utc(ready_at),
        "deadline": as_utc(deadline),
        "reason": _opt_str(decision.get("reason")),
        "decided_at": as_utc(decision.get("now")),
        "planned_start": as_utc(decision.get("start")),
        "expected_emissions_now_g": _opt_float(decision.get("expected_emissions_now_g")),
        "expected_emissions_at_start_g": _opt_float(decision.get("expected_emissions_at_start_g")),
        "served_by": served_by,
        "failed_sources": failed,
        "updated_at": now or datetime.now(UTC),
    }
    if energy_kwh is not None:
        values["energy_kwh"] = _opt_float(energy_kwh)
    stmt = upsert(dialect_name).values(values)
    completed = TABLE.c.state == COMPLETED
    updated = [*SHARED_COLUMNS, *DECISION_COLUMNS]
    if energy_kwh is not None:
        updated.append("energy_kwh")
    if served_by is not None:
        updated.append("served_by")
    if failed:
        updated.append("failed_sources")
    set_: dict[str, ColumnElement[Any]] = {
        name: case((completed, func.coalesce(TABLE.c[name], stmt.excluded[name])), else_=stmt.excluded[name])
        for name in updated
    }
    set_["state"] = case((completed, TABLE.c.state), else_=stmt.excluded.state)
    set_["updated_at"] = stmt.excluded.updated_at
    return stmt.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_=set_)


def completion_statement(dialect_name: str, key: TaskTryKey, record: Mapping[str, Any], *,
                         signal: str | None = None, served_by: str | None = None,
                         failed_sources: Iterable[str] = (), now: datetime | None = None) -> Insert:
    """Upsert of the ``completed`` row from ``JobRecord.to_dict()``; writing it again rewrites the same row."""
    failed = list(failed_sources)
    values: dict[str, Any] = {
        **_key_values(key),
        "state": COMPLETED,
        "region": _opt_str(record.get("region")),
        "source": _opt_str(record.get("source")),
        "signal": _opt_str(signal if signal is not None else record.get("signal")),
        "policy": _opt_str(record.get("policy")),
        "ready_at": as_utc(record.get("ready_at")),
        "deadline": as_utc(record.get("deadline")),
        "reason": _opt_str(record.get("reason")),
        "started_at": as_utc(record.get("started_at")),
        "ended_at": as_utc(record.get("ended_at")),
        **{name: _opt_float(record.get(name)) for name in FLOAT_COLUMNS},
        "estimated": None if record.get("estimated") is None else bool(record.get("estimated")),
        "served_by": served_by,
        "failed_sources": failed,
        "updated_at": now or datetime.now(UTC),
    }
    stmt = upsert(dialect_name).values(values)
    set_: dict[str, ColumnElement[Any]] = {
        name: func.coalesce(stmt.excluded[name], TABLE.c[name]) for name in SHARED_COLUMNS
    }
    set_.update({name: stmt.excluded[name] for name in (*COMPLETION_COLUMNS, "state", "updated_at")})
    if served_by is not None:
        set_["served_by"] = stmt.excluded.served_by
    if failed:
        set_["failed_sources"] = stmt.excluded.failed_sources
    return stmt.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_=set_)


def _key_values(key: TaskTryKey) -> dict[str, Any]:
    return {"dag_id": key.dag_id, "task_id": key.task_id, "run_id": key.run_id,
            "map_index": int(key.map_index), "try_number": int(key.try_number)}


def _opt_str(value: Any) -> str | None:
    """None for a missing or empty value, so that it never overwrites a known one."""
    return None if value is None or value == "" else str(value)


def _opt_float(value: Any) -> float | None:
    """Plain floats only: database drivers refuse numpy scalars such as float32."""
    return None if value is None else float(value)


class MetricsStore:
    """The carbon metrics database: upserts for writers, plain dicts with aware UTC datetimes for readers."""

    def __init__(self, url: str, *, engine_kwargs: Mapping[str, Any] | None = None) -> None:
        parsed = make_url(url)
        _check_dialect(parsed.get_backend_name(), f"at {parsed.render_as_string(hide_password=True)}")
        kwargs = dict(engine_kwargs or {})
        kwargs.setdefault("pool_pre_ping", True)
        if parsed.get_backend_name() == "sqlite":
            connect_args = dict(kwargs.pop("connect_args", {}))
            connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
            kwargs["connect_args"] = connect_args
        engine = create_engine(parsed, **kwargs)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        self._init(engine)

    @classmethod
    def from_engine(cls, engine: Engine) -> MetricsStore:
        """Wrap an engine the caller configured (pool, connect args); the table is created if missing."""
        store = cls.__new__(cls)
        store._init(engine)
        return store

    def _init(self, engine: Engine) -> None:
        self.engine = engine
        self.safe_url = engine.url.render_as_string(hide_password=True)
        _check_dialect(engine.dialect.name, f"at {self.safe_url}")
        self._create_table()

    def _create_table(self) -> None:
        """Create the table once; two processes racing to create it is not an error."""
        try:
            Base.metadata.create_all(self.engine, checkfirst=True)
        except DBAPIError:
            if not inspect(self.engine).has_table(CarbonTaskTry.__tablename__):
                raise
            log.debug("carbon metrics table was created concurrently at %s", self.safe_url)

    def __repr__(self) -> str:
        return f"MetricsStore({self.safe_url!r})"

    def close(self) -> None:
        """Release the pooled connections (and the SQLite file handles)."""
        self.engine.dispose()

    def ping(self) -> None:
        """Run ``SELECT 1``: the cheapest proof that the database answers."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1")).scalar_one()

    def record_decision(self, key: TaskTryKey, *, region: str | None, source: str | None, policy: str | None,
                        ready_at: datetime | str | None, deadline: datetime | str | None,
                        decision: Mapping[str, Any], signal: str | None = None, served_by: str | None = None,
                        failed_sources: Iterable[str] = (), state: str = DEFERRED,
                        energy_kwh: float | None = None) -> None:
        """Record that this try decided to wait (``Decision.to_dict()``), so the UI shows deferred tasks.

        A try that runs at once is recorded as ``running``: its ready time still fixes the
        deadline of any retry.

        Idempotent, and never downgrades a ``completed`` row. ``served_by`` and a non-empty
        ``failed_sources`` replace what the row holds; when absent the row keeps its values.
        ``energy_kwh`` is the planned energy (the completion records the energy really used).
        """
        stmt = decision_statement(self.engine.dialect.name, key, region=region, source=source, policy=policy,
                                  ready_at=ready_at, deadline=deadline, decision=decision, signal=signal,
                                  served_by=served_by, failed_sources=failed_sources, state=state,
                                  energy_kwh=energy_kwh)
        with self.engine.begin() as connection:
            connection.execute(stmt)

    def record_completion(self, key: TaskTryKey, record: Mapping[str, Any], *, signal: str | None = None,
                          served_by: str | None = None, failed_sources: Iterable[str] = ()) -> None:
        """Record what this try emitted and saved (``JobRecord.to_dict()``); a retried write leaves one row.

        The decision's own fields (planned start, expected emissions) are kept.
        """
        stmt = completion_statement(self.engine.dialect.name, key, record, signal=signal, served_by=served_by,
                                    failed_sources=failed_sources)
        with self.engine.begin() as connection:
            connection.execute(stmt)

    def earliest_ready_at(self, dag_id: str, task_id: str, run_id: str, map_index: int | None) -> datetime | None:
        """When any try of this task instance first became ready (any mapped instance if ``map_index`` is None).

        Deadlines are computed from it, so that a retry never extends the deadline.
        """
        query = select(func.min(TABLE.c.ready_at)).where(
            TABLE.c.dag_id == dag_id, TABLE.c.task_id == task_id, TABLE.c.run_id == run_id
        )
        if map_index is not None:
            query = query.where(TABLE.c.map_index == map_index)
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one_or_none()

    def rows(self, *, dag_id: str | None = None, task_id: str | None = None, run_id: str | None = None,
             state: str | None = None) -> list[dict[str, Any]]:
        """Rows as plain dicts (aware UTC datetimes), in key order, for the UI and the simulator."""
        query = select(TABLE).order_by(*(TABLE.c[name] for name in KEY_COLUMNS))
        for name, value in (("dag_id", dag_id), ("task_id", task_id), ("run_id", run_id), ("state", state)):
            if value is not None:
                query = query.where(TABLE.c[name] == value)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]
