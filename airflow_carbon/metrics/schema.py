"""The metrics store's tables: the task try table typed from the record's schema, the site solar ledger's, and
what people decided over the planner (releases, eco-mode-off switches, budgets) with its audit trail.

They are what the store writes and the migrations' head.

Its own module, so that the store and its migrations both read it and neither imports the other's
module to get it. Pure SQLAlchemy, no Airflow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    literal_column,
)
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import TypeDecorator

from airflow_carbon.metrics.record import FIELD_NAMES, FIELD_PHASES, FIELD_TYPES, KEY_FIELDS
from airflow_carbon.units import parse_instant


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, whatever the backend keeps.

    SQLite has no time zones: values are stored as naive UTC (so that text order is time order)
    and read back with UTC attached. Naive input is taken as UTC, the project's convention.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | str | None, dialect: Dialect) -> datetime | None:
        value = None if value is None else parse_instant(value, naive_is_utc=True)
        if value is not None and dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else parse_instant(value, naive_is_utc=True)


def _column(name: str) -> Column[Any]:
    """The column of a record field, typed from the schema; the key's columns are the primary key."""
    kind = FIELD_TYPES[name]
    if FIELD_PHASES[name] == "key":
        return Column(name, String(250) if kind is str else Integer, primary_key=True)
    column_type = {str: String, int: Integer, float: Float, bool: Boolean, datetime: UTCDateTime,
                   list: JSON(none_as_null=True), dict: JSON(none_as_null=True)}[kind]
    return Column(name, column_type, nullable=name not in ("state", "updated_at"))


METADATA = MetaData()
TABLE = Table(
    "carbon_task_try",
    METADATA,
    *(_column(name) for name in FIELD_NAMES),
    Index("ix_carbon_task_try_state", "state"),
    Index("ix_carbon_task_try_dag_id_ready_at", "dag_id", "ready_at"),
    Index("ix_carbon_task_try_dag_id_task_id_ended_at", "dag_id", "task_id", "ended_at"),
)

#: One row per site: the row a writer of the site's solar ledger locks, so that writers of one site take turns.
SOLAR_SITE = Table(
    "carbon_solar_site",
    METADATA,
    Column("site", String(250), primary_key=True),
    Column("peak_kw", Float, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)
#: One row per try and slot of a site: the power it draws there, the solar planned for it, the solar it really had.
SOLAR_RESERVATION = Table(
    "carbon_solar_reservation",
    METADATA,
    Column("site", String(250), primary_key=True),
    Column("slot_start", UTCDateTime, primary_key=True),
    *(_column(name) for name in KEY_FIELDS),
    Column("draw_kw", Float, nullable=False),
    Column("reserved_kw", Float, nullable=False),
    Column("used_kw", Float, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_carbon_solar_reservation_try", *KEY_FIELDS),
)
#: The site's output per slot; ``basis`` is ``measured`` or ``forecast``, and a measured value is never overwritten
#: by a forecast.
SOLAR_OUTPUT = Table(
    "carbon_solar_output",
    METADATA,
    Column("site", String(250), primary_key=True),
    Column("slot_start", UTCDateTime, primary_key=True),
    Column("output_kw", Float, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


#: One row per try a person released: the trigger waiting for it fires at its next poll.
RELEASE = Table(
    "carbon_release",
    METADATA,
    *(_column(name) for name in KEY_FIELDS),
    Column("released_by", String(250), nullable=False),
    Column("released_at", UTCDateTime, nullable=False),
    Column("reason", String, nullable=True),
)
#: Carbon-awareness switched off, per DAG (``scope`` its id) or for every DAG (``scope`` ``*``).
ECO_SWITCH = Table(
    "carbon_eco_switch",
    METADATA,
    Column("scope", String(250), primary_key=True),
    Column("until", UTCDateTime, nullable=True),
    Column("windows", JSON(none_as_null=True), nullable=True),
    Column("set_by", String(250), nullable=False),
    Column("set_at", UTCDateTime, nullable=False),
    Column("reason", String, nullable=True),
)
#: A DAG's carbon budget; ``source`` says whether DAG code or a person (``api``) set it, and a person's wins.
BUDGET = Table(
    "carbon_budget",
    METADATA,
    Column("dag_id", String(250), primary_key=True),
    Column("grams", Float, nullable=False),
    Column("period", String(16), nullable=False),
    Column("strict", Boolean, nullable=False),
    Column("source", String(16), nullable=False),
    Column("set_by", String(250), nullable=False),
    Column("set_at", UTCDateTime, nullable=False),
    Column("reason", String, nullable=True),
)
#: One row per DAG and budget period it went over: whoever inserts it first tells (callback, log line), once.
BUDGET_ALERT = Table(
    "carbon_budget_alert",
    METADATA,
    Column("dag_id", String(250), primary_key=True),
    Column("period_start", UTCDateTime, primary_key=True),
    Column("spent_g", Float, nullable=False),
    Column("budget_g", Float, nullable=False),
    Column("alerted_at", UTCDateTime, nullable=False),
)
#: Who changed what and why: releases, eco-mode switches, budgets, budgets exceeded. ``dag_id`` NULL: every DAG.
AUDIT = Table(
    "carbon_audit",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(250), nullable=False),
    Column("action", String(32), nullable=False),
    Column("dag_id", String(250), nullable=True),
    Column("run_id", String(250), nullable=True),
    Column("task_id", String(250), nullable=True),
    Column("map_index", Integer, nullable=True),
    Column("reason", String, nullable=True),
    Column("detail", JSON(none_as_null=True), nullable=True),
    Index("ix_carbon_audit_dag_id_at", "dag_id", "at"),
)
#: One row per try of a task a ``CarbonAwareSensor`` gated: the energy it drew and its emissions then and had the sensor
#: not waited. The sensor's record claims no energy of its own; it sums these.
GATED_ENERGY = Table(
    "carbon_gated_energy",
    METADATA,
    *(_column(name) for name in KEY_FIELDS),
    Column("sensor_task_id", String(250), nullable=False),
    Column("sensor_map_index", Integer, nullable=False),
    Column("sensor_try_number", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=False),
    Column("energy_kwh", Float, nullable=False),
    Column("energy_method", String, nullable=False),
    Column("energy_scope", String, nullable=False),
    Column("emissions_g", Float, nullable=True),
    Column("baseline_emissions_g", Float, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("home_emissions_g", Float, nullable=True),
    Index("ix_carbon_gated_energy_sensor", "dag_id", "run_id", "sensor_task_id", "sensor_map_index",
          "sensor_try_number"),
)


def utc_day(column: ColumnElement[Any], dialect_name: str) -> ColumnElement[str]:
    """The UTC day of an instant as ``YYYY-MM-DD`` text (SQLite holds naive UTC, PostgreSQL timestamptz)."""
    # Literals, not bound parameters: the same expression must read the same in SELECT and GROUP BY.
    if dialect_name == "postgresql":
        return func.to_char(func.timezone(literal_column("'UTC'"), column), literal_column("'YYYY-MM-DD'"))
    return func.strftime(literal_column("'%Y-%m-%d'"), column)
