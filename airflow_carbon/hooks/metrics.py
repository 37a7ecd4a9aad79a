"""The Airflow glue of the metrics store: find its database through a connection, write without ever failing a task.

A write the store does not take after its retries is kept in this host's spool
(``<AIRFLOW_HOME>/carbon_spool/<hash>/``) and written by the next successful write to that store,
or by ``airflow-carbon metrics --flush``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from sqlalchemy import URL, make_url
from tenacity import Retrying, stop_after_attempt, wait_exponential

from airflow_carbon.hooks.sources import aconnection_extra
from airflow_carbon.metrics.record import TaskTryRecord
from airflow_carbon.metrics.spool import Spool, describe_error, record_json
from airflow_carbon.metrics.store import MetricsStore, safe_url

# A stdlib logger rather than the hook's structlog one: Airflow routes stdlib records into the
# task log, and they reach pytest's caplog outside a task too.
log = logging.getLogger(__name__)

SQLITE_FILE_NAME = "carbon_metrics.db"
SPOOL_DIR_NAME = "carbon_spool"
SPOOL_NOTE_NAME = "store.txt"

_stores: dict[str, MetricsStore] = {}
_stores_lock = threading.Lock()


def airflow_home() -> str:
    """AIRFLOW_HOME resolved the way the task SDK resolves it (``~/airflow`` by default, variables expanded)."""
    from airflow.sdk.configuration import get_sdk_expansion_variables

    return get_sdk_expansion_variables()["AIRFLOW_HOME"]


def default_sqlite_url() -> str:
    """The store used when no connection is configured: a SQLite file under AIRFLOW_HOME."""
    home = airflow_home()
    os.makedirs(home, exist_ok=True)
    return URL.create("sqlite", database=os.path.join(home, SQLITE_FILE_NAME)).render_as_string(hide_password=False)


def spool_directory(url: str) -> Path:
    """This host's spool for the store at ``url``, named by a hash of the URL without its password.

    So no secret, nor anything to guess one from, reaches the disk, and a password change keeps the spool.
    """
    digest = hashlib.sha256(safe_url(url).encode("utf-8")).hexdigest()[:16]
    return Path(airflow_home()) / SPOOL_DIR_NAME / digest


def url_from_connection(conn: Any, extra: Mapping[str, Any]) -> str:
    """A SQLAlchemy URL from an Airflow connection: ``extra["sqlalchemy_url"]`` wins, else the connection's fields.

    Airflow's ``get_uri()`` percent-quotes a SQLite path (``sqlite:///%2Ftmp%2Fx.db``), keeps the
    ``postgres`` scheme SQLAlchemy no longer accepts, and puts a SQLite path in ``host`` (JSON form)
    or ``schema`` (URI form); these are fixed here.
    """
    if extra.get("sqlalchemy_url"):
        return _fix_scheme(make_url(str(extra["sqlalchemy_url"]))).render_as_string(hide_password=False)
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        path = conn.host or conn.schema
        if not path:
            raise ValueError(f"connection {conn.conn_id!r}: a SQLite connection needs the database file path in host")
        return URL.create("sqlite", database=path).render_as_string(hide_password=False)
    if conn_type in ("", "carbon_metrics", "carbon-metrics"):
        raise ValueError(f"connection {conn.conn_id!r}: set extra 'sqlalchemy_url' (or use a postgres or sqlite"
                         " connection type) to say where the carbon metrics store is")
    url = _fix_scheme(make_url(conn.get_uri()))
    if "__extra__" in url.query:  # a nested extra Airflow could not flatten into the query: not a DBAPI option
        url = url.difference_update_query(["__extra__"])
    return url.render_as_string(hide_password=False)


def _fix_scheme(url: URL) -> URL:
    """``postgres://`` (Airflow's and Heroku's spelling) is ``postgresql://`` to SQLAlchemy 1.4+."""
    backend, _, driver = url.drivername.partition("+")
    if backend == "postgres":
        return url.set(drivername="postgresql" + (f"+{driver}" if driver else ""))
    return url


_told_fallbacks: set[str] = set()


class CarbonMetricsHook(BaseHook):
    """Reach the carbon metrics store through an Airflow connection.

    Writes retry with backoff and, if the store stays unreachable, keep the record in this host's
    spool, log at ERROR and return False: recording emissions must never fail the task whose
    emissions they are, and a store that is down for a while must not lose them. Each successful
    write then replays the spool.

    :param carbon_metrics_conn_id: connection holding the store's URL (extra ``sqlalchemy_url``,
        or a ``postgres``/``sqlite`` connection); when it does not exist, a SQLite file
        ``carbon_metrics.db`` under AIRFLOW_HOME is used.
    :param attempts: tries per write.
    :param retry_wait_s: first wait between tries; it doubles each time.
    """

    conn_name_attr = "carbon_metrics_conn_id"
    default_conn_name = "carbon_metrics_default"
    conn_type = "carbon_metrics"
    hook_name = "Carbon metrics store"

    def __init__(self, carbon_metrics_conn_id: str = default_conn_name, *, attempts: int = 3,
                 retry_wait_s: float = 0.5) -> None:
        super().__init__()
        self.carbon_metrics_conn_id = carbon_metrics_conn_id
        self.attempts = max(1, attempts)
        self.retry_wait_s = retry_wait_s
        self._url: str | None = None

    # -- where the store is -------------------------------------------------------------------------

    def url(self) -> str:
        """The store's SQLAlchemy URL (it may hold a password: never log it, log ``safe_url(...)``)."""
        if self._url is None:
            try:
                conn = self.get_connection(self.carbon_metrics_conn_id)
            except AirflowNotFoundException:
                self._url = self._fallback_url()
            else:
                self._url = url_from_connection(conn, conn.extra_dejson)
        return self._url

    def _fallback_url(self) -> str:
        """The SQLite default, said once per process at INFO: it is the documented default, not a fault, yet inside
        a task the SDK also reports a transient Execution API failure as "not found", so the line names it."""
        if self.carbon_metrics_conn_id != self.default_conn_name:
            raise AirflowNotFoundException(f"carbon metrics connection {self.carbon_metrics_conn_id!r} is not defined")
        url = default_sqlite_url()
        if url not in _told_fallbacks:
            _told_fallbacks.add(url)
            log.info("carbon metrics: no connection %r, so the documented default store is used: %s",
                     self.carbon_metrics_conn_id, url)
        return url

    def get_store(self) -> MetricsStore:
        """The store for this connection, one per URL in the process (engines pool connections)."""
        return self._store_for(self.url())

    async def aget_store(self) -> MetricsStore:
        """``get_store`` for a trigger: the connection is read without blocking the event loop."""
        if self._url is None:
            try:
                conn = await BaseHook.aget_connection(self.carbon_metrics_conn_id)
            except AirflowNotFoundException:
                self._url = self._fallback_url()
            else:
                self._url = url_from_connection(conn, await aconnection_extra(conn))
        return await asyncio.to_thread(self._store_for, self._url)

    def get_conn(self) -> MetricsStore:
        return self.get_store()

    @staticmethod
    def _store_for(url: str) -> MetricsStore:
        with _stores_lock:
            store = _stores.get(url)
            if store is None:
                store = _stores[url] = MetricsStore(url)
            return store

    @classmethod
    def reset_store_cache(cls) -> None:
        """Dispose of the cached stores (tests, or after a fork)."""
        with _stores_lock:
            for store in _stores.values():
                store.close()
            _stores.clear()

    # -- writes that never raise --------------------------------------------------------------------

    def write(self, record: TaskTryRecord) -> bool:
        """Upsert a try's record (see :meth:`MetricsStore.write`); False, logged and spooled, if the store failed."""
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.retry_wait_s, min=self.retry_wait_s, max=30),
            before_sleep=lambda state: log.warning(
                "carbon metrics: writing the %s record of %s to %s failed (attempt %d of %d): %s", record.state,
                record.key, self.where(), state.attempt_number, self.attempts,
                self.describe_error(state.outcome.exception() if state.outcome else None),
            ),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    store = self.get_store()
                    store.write(record)
        except Exception as error:
            self._keep(record, error)
            return False
        self._replay_spool(store)
        return True

    # -- the spool: records kept on this host while the store is down -------------------------------

    def spool(self) -> Spool:
        """This host's spool for this connection's store."""
        return Spool(spool_directory(self.url()))

    def _keep(self, record: TaskTryRecord, error: Exception) -> None:
        """Spool a record the store did not take, loudly; without a spool, log the whole record at ERROR."""
        kind, key, text = record.state, record.key, record_json(record)
        if self._url is None:  # the connection itself is wrong: there is no store to keep the record for
            log.error("carbon metrics: could not write the %s record of %s to %s after %d attempts (%s); record: %s",
                      kind, key, self.where(), self.attempts, self.describe_error(error), text)
            return
        try:
            spool = self.spool()
            path = spool.put(record)
            note = spool.directory / SPOOL_NOTE_NAME
            if not note.exists():
                note.write_text(safe_url(self._url) + "\n", encoding="utf-8")
        except Exception as spool_error:
            log.error("carbon metrics: could not write the %s record of %s to %s after %d attempts (%s), nor keep it "
                      "in this host's spool (%s); record: %s", kind, key, self.where(), self.attempts,
                      self.describe_error(error), self.describe_error(spool_error), text)
            return
        flush = "airflow-carbon metrics --flush"
        if self.carbon_metrics_conn_id != self.default_conn_name:
            flush += f" --conn-id {self.carbon_metrics_conn_id}"
        log.error("carbon metrics: the store at %s was unreachable after %d attempts (%s): the %s record of %s is kept"
                  " in %s and will be written when the store answers again (or with `%s` on this host); record: %s",
                  self.where(), self.attempts, self.describe_error(error), kind, key, path, flush, text)

    def _replay_spool(self, store: MetricsStore) -> None:
        """Write what this host kept for the store, now that it answers; never raises into the write."""
        try:
            spool = self.spool()
            if spool.pending():
                spool.replay(store)
        except Exception as error:
            log.warning("carbon metrics: replaying this host's spool for %s failed: %s", self.where(),
                        self.describe_error(error))

    def spooled_ready_at(self, dag_id: str, task_id: str, run_id: str, map_index: int | None) -> datetime | None:
        """:meth:`MetricsStore.earliest_ready_at` over the records this host kept and has not written yet.

        None, never an error, when there are none or they cannot be read.
        """
        try:
            spool = self.spool()
        except Exception:  # no store URL, so no spool; reading the store has said why
            return None
        try:
            return spool.earliest_ready_at(dag_id, task_id, run_id, map_index)
        except Exception as error:
            log.warning("carbon metrics: this host's spool for %s is unreadable: %s", self.where(),
                        self.describe_error(error))
            return None

    # -- diagnostics --------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Open the store (creating its table if needed) and run ``SELECT 1``."""
        try:
            store = self.get_store()
            store.ping()
        except Exception as error:
            return False, f"Cannot reach the carbon metrics store at {self.where()}: {self.describe_error(error)}"
        return True, f"Connected to the carbon metrics store at {store.safe_url}"

    def where(self) -> str:
        """The store's URL without its password, or the connection id if the URL is not known yet."""
        return safe_url(self._url) if self._url else f"connection {self.carbon_metrics_conn_id!r}"

    def describe_error(self, error: BaseException | None) -> str:
        """``Type: message`` with the URL's password blanked out: driver messages may echo a DSN."""
        return describe_error(error, self._url)
