"""The metrics store's schema under Alembic, run from code: users need no ``alembic.ini``.

Revisions live in ``versions/``: ``0001`` is the schema ``create_all`` made before migrations
existed, each later one a change. Adding a record field is a field in ``record.py`` plus a new
revision here whose ``down_revision`` is the last head; ``tests/metrics/test_migrations.py`` checks
that the head's schema is ``schema.TABLE``. A revision copies what it needs (names, mappings) and
imports nothing from the package, because that code may change after the revision shipped.

The version is kept in ``carbon_alembic_version``, so that a store sharing a database with
Airflow never touches Airflow's ``alembic_version``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError

from airflow_carbon.errors import CarbonError

log = logging.getLogger(__name__)

VERSION_TABLE = "carbon_alembic_version"
#: The revision of a store made by ``create_all`` before migrations existed: its table has no version.
UNVERSIONED_REVISION = "0001"
#: The table every store has had since the first release.
TASK_TRY_TABLE = "carbon_task_try"
#: PostgreSQL advisory lock key of this store's upgrades; Airflow's own locks are 1 and 2.
ADVISORY_LOCK_KEY = zlib.crc32(b"airflow_carbon.metrics.migrations")
#: How long an upgrade waits for PostgreSQL's lock (SQLite waits for its busy timeout), and how many times.
LOCK_WAIT_S = 300
LOCK_ATTEMPTS = 2

#: Alembic's ``op`` and ``context`` are module globals: one upgrade at a time in a process, whatever the database.
_in_process = threading.Lock()


class MigrationError(CarbonError):
    """The store's schema could not be brought to the version this code needs."""


class StoreTooNewError(MigrationError):
    """The store was upgraded by a newer airflow-carbon: this code must not write to it."""


class Upgrade(NamedTuple):
    """Where an upgrade started (None: there was no store) and where it ended."""

    from_revision: str | None
    to_revision: str

    @property
    def changed(self) -> bool:
        return self.from_revision != self.to_revision


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for this folder, running on ``connection`` (see ``env.py``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The revision of the schema this code reads and writes."""
    revision = _script().get_current_head()
    assert revision is not None, "migrations/versions holds no revision"
    return revision


def current_revision(connection: Connection) -> str | None:
    """The store's revision: None when it has no version table (new, or made before migrations)."""
    revisions = _version_rows(connection) if inspect(connection).has_table(VERSION_TABLE) else []
    return _single(revisions) if revisions else None


def upgrade(engine: Engine) -> Upgrade:
    """Bring the store's schema to ``head()``; concurrent callers wait for each other and none fails.

    A store already at head costs one query. A new store gets the current schema at once (as Airflow
    creates its own database: ``create_all`` then stamp); a store made before migrations is stamped
    ``0001`` and upgraded. A store at a revision this code does not know raises ``StoreTooNewError``
    before anything is written.
    """
    target = head()
    try:
        with engine.connect() as connection:
            revisions = _version_rows(connection)
    except DBAPIError:  # no version table yet: the locked path finds out what there is
        revisions = []
    if revisions == [target]:
        return Upgrade(target, target)
    _check_known(revisions, engine)
    for _attempt in range(LOCK_ATTEMPTS):
        try:
            with _in_process, _locked(engine) as connection:
                return _upgrade_locked(connection, target)
        except OperationalError as error:
            if not _is_lock_timeout(error):
                raise
            last_error = error
        # Another process held the store for the whole wait: it may have upgraded it meanwhile.
        with engine.connect() as connection:
            if current_revision(connection) == target:
                return Upgrade(target, target)
    raise MigrationError(
        f"carbon metrics store at {engine.url.render_as_string(hide_password=True)}: another process held it "
        f"through {LOCK_ATTEMPTS} waits for its lock ({last_error.orig}); once it is free, run "
        "`airflow-carbon metrics --upgrade`") from last_error


def _version_rows(connection: Connection) -> list[str]:
    """The version table's rows; raises the driver's error when the table does not exist."""
    return list(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def _single(revisions: list[str]) -> str:
    if len(revisions) > 1:
        raise MigrationError(f"{VERSION_TABLE} names several revisions ({', '.join(sorted(revisions))}); "
                             "this store's history has branches no release of airflow-carbon made")
    return revisions[0]


def _check_known(revisions: list[str], engine: Engine) -> None:
    unknown = [revision for revision in revisions if revision not in _known_revisions()]
    if unknown:
        raise StoreTooNewError(
            f"carbon metrics store at {engine.url.render_as_string(hide_password=True)} is at schema revision "
            f"{unknown[0]!r}, which this airflow-carbon does not know (it knows up to {head()!r}): a newer "
            "airflow-carbon upgraded it. Upgrade airflow-carbon here too; nothing was written to the store.")


@functools.cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _script().walk_revisions())


def _upgrade_locked(connection: Connection, target: str) -> Upgrade:
    """Under the lock: look again (another process may have finished), then do what is left."""
    cfg = config(connection)
    start = current_revision(connection)
    if start is None:
        if not inspect(connection).has_table(TASK_TRY_TABLE):
            from airflow_carbon.metrics.schema import METADATA

            METADATA.create_all(connection)
            command.stamp(cfg, target)
            log.info("carbon metrics store created at schema revision %s", target)
            return Upgrade(None, target)
        command.stamp(cfg, UNVERSIONED_REVISION)
        start = UNVERSIONED_REVISION
    _check_known([start], connection.engine)
    if start != target:
        command.upgrade(cfg, target)
        log.info("carbon metrics store upgraded from schema revision %s to %s", start, target)
    return Upgrade(start, target)


@contextlib.contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """One transaction that holds the store's upgrade lock, committed when the block ends.

    PostgreSQL: a transaction-level advisory lock, released by the commit, and its DDL is
    transactional. SQLite: ``BEGIN IMMEDIATE`` takes the write lock up front (waiting up to the busy
    timeout), so that the check and the change are one transaction; the driver's own transaction
    handling is off for it (``AUTOCOMMIT``), since it would not put DDL in the transaction.
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("SELECT set_config('lock_timeout', :wait, true)"), {"wait": f"{LOCK_WAIT_S}s"})
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            yield connection
        return
    with engine.connect() as plain:
        connection = plain.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.exec_driver_sql("ROLLBACK")
            raise
        connection.exec_driver_sql("COMMIT")


def _is_lock_timeout(error: OperationalError) -> bool:
    """SQLite's "database is locked" after its busy timeout, or PostgreSQL's lock_timeout."""
    message = str(error.orig).lower()
    return "locked" in message or "lock timeout" in message


__all__ = [
    "VERSION_TABLE",
    "MigrationError",
    "StoreTooNewError",
    "Upgrade",
    "config",
    "current_revision",
    "head",
    "upgrade",
]
