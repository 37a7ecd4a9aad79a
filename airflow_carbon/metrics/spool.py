"""A local outbox for metrics-store writes that failed: kept on disk, written when the store answers again.

Pure (no Airflow), like the store. One JSON file per record, written atomically, named so that
sorting the names gives the order they were written in. Replaying applies them through the
store's idempotent upserts, so a file replayed twice (two processes on one host) leaves one row,
and a late decision never downgrades a completed row. The wall clock orders the names: a clock
stepped back can swap two records, which those same upserts make harmless.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from airflow_carbon.metrics.store import MetricsStore, TaskTryKey, as_utc

log = logging.getLogger(__name__)

FORMAT = 1
WRITERS = {"decision": "record_decision", "completion": "record_completion"}  # the store's method for each kind
PAYLOADS = {"decision": "decision", "completion": "record"}  # the field holding the decision's or record's dict
KEY_FIELDS = ("dag_id", "task_id", "run_id", "map_index", "try_number")
_sequence = itertools.count()


class InvalidRecordError(ValueError):
    """A spooled file that is not a record the store can take."""


def describe_error(error: BaseException | None, url: Any) -> str:
    """``Type: message`` with the URL's password blanked out: driver messages may echo a DSN."""
    text = f"{type(error).__name__}: {error}"
    try:
        password = make_url(url).password if url else None
    except Exception:
        password = None
    if password:
        for secret in {str(password), quote(str(password), safe=""), quote_plus(str(password))}:
            text = text.replace(secret, "***")
    return text


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if callable(getattr(value, "item", None)):  # numpy scalars
        return value.item()
    return str(value)


def record_json(kind: str, key: TaskTryKey, fields: Mapping[str, Any]) -> str:
    """A record as one JSON object, what a spool file holds and what is logged when it cannot be spooled.

    Saved as ``<anything>.json`` into a spool directory, a logged record is written by the next replay.
    """
    return json.dumps({"format": FORMAT, "kind": kind, "key": asdict(key), **fields}, default=_json_default,
                      sort_keys=True)


def _keyword_arguments(method: Any) -> tuple[set[str], set[str]]:
    """The keyword arguments a store writer takes: (all of them, the required ones)."""
    parameters = list(inspect.signature(method).parameters.values())[2:]  # after self and key
    return {p.name for p in parameters}, {p.name for p in parameters if p.default is inspect.Parameter.empty}


FIELDS = {kind: _keyword_arguments(getattr(MetricsStore, name)) for kind, name in WRITERS.items()}


def _parse(text: str) -> tuple[str, TaskTryKey, dict[str, Any]]:
    """(kind, key, fields) from a spooled file's text, or InvalidRecordError saying what is wrong."""
    try:
        payload = json.loads(text)
    except ValueError as error:
        raise InvalidRecordError(f"not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidRecordError("not a JSON object")
    if payload.get("format") != FORMAT:
        raise InvalidRecordError(f"format {payload.get('format')!r} is not {FORMAT}")
    kind, key = payload.get("kind"), payload.get("key")
    fields = {name: value for name, value in payload.items() if name not in ("format", "kind", "key")}
    if kind not in WRITERS:
        raise InvalidRecordError(f"kind {kind!r} is neither 'decision' nor 'completion'")
    if not isinstance(key, dict) or set(key) != set(KEY_FIELDS):
        raise InvalidRecordError(f"key {key!r} is not {', '.join(KEY_FIELDS)}")
    if not all(isinstance(key[name], str) for name in KEY_FIELDS[:3]) or not all(
            isinstance(key[name], int) and not isinstance(key[name], bool) for name in KEY_FIELDS[3:]):
        raise InvalidRecordError(f"key {key!r} has a value of the wrong type")
    allowed, required = FIELDS[kind]
    if not required <= set(fields) <= allowed:
        raise InvalidRecordError(f"fields {sorted(fields)} are not the {kind} fields (required: {sorted(required)},"
                                 f" allowed: {sorted(allowed)})")
    if not isinstance(fields[PAYLOADS[kind]], dict):
        raise InvalidRecordError(f"the {kind}'s {PAYLOADS[kind]!r} is not an object")
    return kind, TaskTryKey(**key), fields


def _refused(error: Exception) -> bool:
    """The store answered and refused the record's values (it would again), rather than not answering."""
    if isinstance(error, IntegrityError | DataError):
        return True
    if isinstance(error, StatementError) and not isinstance(error, DBAPIError):
        return True  # a value the column types could not bind
    return isinstance(error, ValueError | TypeError | KeyError)


class Spool:
    """The outbox of one metrics store on this host: one directory of JSON records.

    :param directory: where the records are; created by the first :meth:`put`.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    def put(self, kind: str, key: TaskTryKey, fields: Mapping[str, Any]) -> Path:
        """Keep one record; ``fields`` are the keyword arguments of the store's ``record_<kind>``.

        Written to a temporary file in the same directory, then renamed: a reader never sees half a record.
        """
        if kind not in WRITERS:
            raise ValueError(f"kind {kind!r} is neither 'decision' nor 'completion'")
        allowed, required = FIELDS[kind]
        if not required <= set(fields) <= allowed:
            raise ValueError(f"fields {sorted(fields)} are not the {kind} fields")
        text = record_json(kind, key, fields)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{time.time_ns():020d}-{os.getpid()}-{next(_sequence):06d}-{kind}.json"
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._sync_directory()
        return path

    def _sync_directory(self) -> None:
        """Make the rename itself durable; some file systems cannot, and the record is written either way."""
        with contextlib.suppress(OSError):
            descriptor = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def pending(self) -> list[Path]:
        """The records not yet written, oldest first (an empty list when the directory does not exist)."""
        return sorted(self.directory.glob("*.json"))

    def replay(self, store: MetricsStore) -> tuple[int, int]:
        """Write the records in order and remove each once written; (written, still pending).

        Stops at the first the store does not take because it does not answer, keeping that one and
        the rest. A file that is no valid record, or whose values the store refuses, is renamed to
        ``*.bad`` and logged at ERROR; the replay goes on.
        """
        written = 0
        for path in self.pending():
            try:
                kind, key, fields = _parse(path.read_text(encoding="utf-8"))
                getattr(store, WRITERS[kind])(key, **fields)
            except FileNotFoundError:
                continue  # another process on this host replayed it
            except Exception as error:
                if not _refused(error):
                    remaining = len(self.pending())
                    log.warning("carbon metrics spool: the store at %s did not answer (%s); %d record(s) stay in %s",
                                store.safe_url, describe_error(error, store.engine.url), remaining, self.directory)
                    return written, remaining
                self._set_aside(path, error, store)
                continue
            path.unlink(missing_ok=True)
            written += 1
        remaining = len(self.pending())
        if written:
            log.info("carbon metrics spool: wrote %d record(s) from %s to %s; %d still pending", written,
                     self.directory, store.safe_url, remaining)
        return written, remaining

    def _set_aside(self, path: Path, error: Exception, store: MetricsStore) -> None:
        bad = path.with_suffix(".bad")
        try:
            path.rename(bad)
        except FileNotFoundError:
            return  # another process set it aside
        log.error("carbon metrics spool: %s is not a record the store can take (%s); set aside as %s", path,
                  describe_error(error, store.engine.url), bad)

    def earliest_ready_at(self, dag_id: str, task_id: str, run_id: str, map_index: int | None) -> datetime | None:
        """When any spooled try of this task instance became ready (any mapped instance if ``map_index`` is None).

        The same question as :meth:`MetricsStore.earliest_ready_at`, for while the store is down.
        """
        earliest: datetime | None = None
        for path in self.pending():
            try:
                kind, key, fields = _parse(path.read_text(encoding="utf-8"))
                ready_at = as_utc(fields.get("ready_at") if kind == "decision" else fields["record"].get("ready_at"))
            except (OSError, ValueError, TypeError) as error:
                log.debug("carbon metrics spool: %s skipped: %s", path, error)
                continue
            if (key.dag_id, key.task_id, key.run_id) != (dag_id, task_id, run_id) or ready_at is None:
                continue
            if map_index is not None and key.map_index != map_index:
                continue
            if earliest is None or ready_at < earliest:
                earliest = ready_at
        return earliest
