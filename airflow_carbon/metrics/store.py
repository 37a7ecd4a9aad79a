"""One row per task try in a database of its own, written by workers and triggers, read by the UI and the simulator.

Pure SQLAlchemy 2: this module never imports Airflow, because task and trigger processes in
Airflow 3 cannot reach Airflow's metadata database, and the readers (UI plugin, simulator) should
not need a running Airflow to open the store. Its columns are the fields of ``TaskTryRecord``;
its schema is brought up to date by the Alembic migrations in ``metrics/migrations``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Engine,
    Table,
    case,
    create_engine,
    event,
    func,
    make_url,
    select,
    text,
)
from sqlalchemy.sql import ColumnElement, Insert

from airflow_carbon.accounting.energy import metered
from airflow_carbon.clock import utcnow
from airflow_carbon.errors import CarbonError
from airflow_carbon.metrics.record import (
    COMPLETED,
    FIELD_TYPES,
    FINISHED_STATES,
    KEY_FIELDS,
    TaskTryRecord,
    phase_fields,
)
from airflow_carbon.metrics.schema import TABLE
from airflow_carbon.planning.expectation import NO_HISTORY, History
from airflow_carbon.units import parse_instant

if TYPE_CHECKING:
    from airflow_carbon.metrics.migrations import Upgrade

log = logging.getLogger(__name__)

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
SQLITE_BUSY_TIMEOUT_S = 30.0


class UnsupportedDialectError(CarbonError, ValueError):
    """The store upserts with ``INSERT ... ON CONFLICT``; a read-then-write fallback would race between writers."""


KEY_COLUMNS = KEY_FIELDS
#: Written by a decision, and by a completion where it knows them.
DECISION_COLUMNS = phase_fields("shared", "decision")
#: Written by a completion only, which rewrites them.
COMPLETION_COLUMNS = phase_fields("completion")
LIST_FIELDS = tuple(name for name, kind in FIELD_TYPES.items() if kind is list)


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


def upsert(dialect_name: str, table: Table = TABLE) -> Insert:
    """The dialect's ``INSERT`` into ``table`` with ``ON CONFLICT`` support, so concurrent writers never race."""
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
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


def write_statement(dialect_name: str, record: TaskTryRecord, now: datetime | None = None) -> Insert:
    """The upsert of one record; writing it again leaves the same row.

    A decision (``deferred``, ``running``) never takes a finished row back: that row keeps its state
    and values and only gains the fields it lacked. A completion (``completed``, ``failed``) writes its
    own fields and keeps the decision's (planned start, expected emissions). A missing value (None,
    no failed sources) never overwrites a known one.
    """
    completion = COMPLETION_COLUMNS if record.finished else ()
    values = {name: _bindable(getattr(record, name)) for name in (*KEY_COLUMNS, "state", *DECISION_COLUMNS,
                                                                  *completion)}
    values["updated_at"] = now or utcnow()
    stmt = upsert(dialect_name).values(values)
    new, old = stmt.excluded, TABLE.c
    finished = old.state.in_(FINISHED_STATES)
    set_: dict[str, ColumnElement[Any]] = {}
    for name in DECISION_COLUMNS:
        known_first = func.coalesce(new[name], old[name])
        set_[name] = known_first if record.finished else case((finished, func.coalesce(old[name], new[name])),
                                                              else_=known_first)
    set_.update({name: new[name] for name in completion})
    set_["state"] = new.state if record.finished else case((finished, old.state), else_=new.state)
    set_["updated_at"] = new.updated_at
    return stmt.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_=set_)


def _bindable(value: Any) -> Any:
    """What every driver takes: plain floats (never numpy scalars), None for an empty text or list."""
    if value == "" or value == []:
        return None
    if isinstance(value, float) or callable(getattr(value, "item", None)):
        return float(value)
    return value


class MetricsStore:
    """The carbon metrics database: upserts of records for writers, plain dicts with aware UTC datetimes for readers.

    Opening it brings its schema up to date (``upgrade=False`` leaves that to ``airflow-carbon metrics
    --upgrade``, for deployments whose database user may not change tables).
    """

    def __init__(self, url: str, *, engine_kwargs: Mapping[str, Any] | None = None, upgrade: bool = True) -> None:
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
        self._init(engine, upgrade)

    @classmethod
    def from_engine(cls, engine: Engine, *, upgrade: bool = True) -> MetricsStore:
        """Wrap an engine the caller configured (pool, connect args)."""
        store = cls.__new__(cls)
        store._init(engine, upgrade)
        return store

    def _init(self, engine: Engine, upgrade: bool) -> None:
        self.engine = engine
        self.safe_url = engine.url.render_as_string(hide_password=True)
        _check_dialect(engine.dialect.name, f"at {self.safe_url}")
        if upgrade:
            self.upgrade()

    def upgrade(self) -> Upgrade:
        """Bring the schema to the current version; a store already there is left alone."""
        from airflow_carbon.metrics.migrations import upgrade

        return upgrade(self.engine)

    def __repr__(self) -> str:
        return f"MetricsStore({self.safe_url!r})"

    def close(self) -> None:
        """Release the pooled connections (and the SQLite file handles)."""
        self.engine.dispose()

    def ping(self) -> None:
        """Run ``SELECT 1``: the cheapest proof that the database answers."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1")).scalar_one()

    def write(self, record: TaskTryRecord) -> None:
        """Upsert one try's record (see ``write_statement``): idempotent, and a decision never undoes a completion."""
        with self.engine.begin() as connection:
            connection.execute(write_statement(self.engine.dialect.name, record))

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
            value = connection.execute(query).scalar_one_or_none()
        return None if value is None else parse_instant(value, naive_is_utc=True)

    def history(self, dag_id: str, task_id: str, tries: int) -> History:
        """What the last ``tries`` completed tries of a task (mapped instances pooled) ran for and drew.

        Only a metered energy (``accounting.energy.METERED_METHODS``) is learned from, as IT energy: a try's
        ``energy_kwh`` over its ``pue``.
        """
        if tries <= 0:
            return NO_HISTORY
        query = (select(TABLE.c.started_at, TABLE.c.ended_at, TABLE.c.energy_kwh, TABLE.c.pue, TABLE.c.energy_method)
                 .where(TABLE.c.dag_id == dag_id, TABLE.c.task_id == task_id, TABLE.c.state == COMPLETED,
                        TABLE.c.started_at.is_not(None), TABLE.c.ended_at.is_not(None))
                 .order_by(TABLE.c.ended_at.desc()).limit(tries))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        durations_s = tuple((parse_instant(row.ended_at, naive_is_utc=True)
                             - parse_instant(row.started_at, naive_is_utc=True)).total_seconds() for row in rows)
        energies_kwh = tuple(row.energy_kwh / (row.pue or 1.0) for row in rows
                             if row.energy_kwh is not None and row.energy_method and metered(row.energy_method))
        return History(durations_s, energies_kwh)

    def rows(self, *, dag_id: str | None = None, task_id: str | None = None, run_id: str | None = None,
             state: str | None = None) -> list[dict[str, Any]]:
        """Rows as plain dicts (aware UTC datetimes, no failed source as ``[]``), in key order."""
        query = select(TABLE).order_by(*(TABLE.c[name] for name in KEY_COLUMNS))
        for name, value in (("dag_id", dag_id), ("task_id", task_id), ("run_id", run_id), ("state", state)):
            if value is not None:
                query = query.where(TABLE.c[name] == value)
        with self.engine.connect() as connection:
            return [row_dict(row) for row in connection.execute(query).mappings()]

    def records(self, **where: str | None) -> list[TaskTryRecord]:
        """``rows`` as records."""
        return [TaskTryRecord.from_values(row) for row in self.rows(**where)]


def row_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as the record schema reads: a list field (``failed_sources``, ``energy_notes``) a list, never NULL."""
    values = dict(row)
    for name in LIST_FIELDS:
        if name in values and values[name] is None:
            values[name] = []
    return values
