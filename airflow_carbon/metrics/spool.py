"""A local outbox for metrics-store writes that failed: kept on disk, written when the store answers again.

Pure (no Airflow), like the store. One JSON file per record, written atomically, named so that
sorting the names gives the order they were written in. Replaying applies them through the
store's idempotent upserts, so a file replayed twice (two processes on one host) leaves one row,
and a late decision never downgrades a completed row. The wall clock orders the names: a clock
stepped back can swap two records, which those same upserts make harmless.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from airflow_carbon.metrics.record import COMPLETED, DEFERRED, InvalidRecordError, TaskTryRecord
from airflow_carbon.metrics.store import MetricsStore

log = logging.getLogger(__name__)

#: Format 2 is ``{"format": 2, "record": <TaskTryRecord JSON>}``; format 1 files (one keyword argument of the
#: store's old ``record_decision``/``record_completion`` per key) are still read, so nothing spooled is lost.
FORMAT = 2
_sequence = itertools.count()


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


def record_json(record: TaskTryRecord) -> str:
    """A record as a spool file holds it, and as it is logged when it cannot be spooled.

    Saved as ``<anything>.json`` into a spool directory, a logged record is written by the next replay.
    """
    return json.dumps({"format": FORMAT, "record": record.to_json()}, sort_keys=True)


def parse_record(text: str) -> TaskTryRecord:
    """The record in a spooled file's text, of this format or the first; InvalidRecordError says what is wrong."""
    try:
        payload = json.loads(text)
    except ValueError as error:
        raise InvalidRecordError(f"not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidRecordError("not a JSON object")
    if payload.get("format") == 1:
        return TaskTryRecord.from_values(_format_1_values(payload))
    if payload.get("format") != FORMAT:
        raise InvalidRecordError(f"format {payload.get('format')!r} is neither {FORMAT} nor 1")
    return TaskTryRecord.from_json(payload.get("record"))


def _format_1_values(payload: dict[str, Any]) -> dict[str, Any]:
    """A format 1 file's fields as record fields: a ``decision`` held the planner's decision and the row's
    fields beside it; a ``completion`` the accounted record (whose ``source`` was the configured source)."""
    kind, key = payload.get("kind"), payload.get("key")
    if not isinstance(key, dict) or set(key) != {"dag_id", "task_id", "run_id", "map_index", "try_number"}:
        raise InvalidRecordError(f"key {key!r} is not dag_id, task_id, run_id, map_index, try_number")
    if kind == "decision":
        decision = payload.get("decision")
        if not isinstance(decision, dict):
            raise InvalidRecordError("the decision's 'decision' is not an object")
        values = {name: payload.get(name) for name in ("region", "source", "policy", "ready_at", "deadline",
                                                       "signal", "served_by", "energy_kwh")}
        values |= {"state": payload.get("state") or DEFERRED, "reason": decision.get("reason"),
                   "decided_at": decision.get("now"), "planned_start": decision.get("start"),
                   "expected_emissions_now_g": decision.get("expected_emissions_now_g"),
                   "expected_emissions_at_start_g": decision.get("expected_emissions_at_start_g")}
    elif kind == "completion":
        record = payload.get("record")
        if not isinstance(record, dict):
            raise InvalidRecordError("the completion's 'record' is not an object")
        values = {**record, "state": COMPLETED}
        values |= {name: payload[name] for name in ("signal", "served_by") if payload.get(name) is not None}
    else:
        raise InvalidRecordError(f"kind {kind!r} is neither 'decision' nor 'completion'")
    failed = payload.get("failed_sources") or values.get("failed_sources") or []
    return {**values, **key, "failed_sources": failed}


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

    def put(self, record: TaskTryRecord) -> Path:
        """Keep one record.

        Written to a temporary file in the same directory, then renamed: a reader never sees half a record.
        """
        kind = "completion" if record.finished else "decision"
        text = record_json(record)
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
        the rest. An entry that cannot be read (a directory, a file this user may not read), is no valid
        record, or whose values the store refuses, is renamed to ``*.bad`` and logged at ERROR; the replay
        goes on. Only the store's own errors count as the store not answering: a local ``OSError`` never does.
        """
        written = 0
        for path in self.pending():
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue  # another process on this host replayed it
            except OSError as error:
                self._set_aside(path, error, store, "cannot be read")
                continue
            try:
                store.write(parse_record(text))
            except Exception as error:
                if not _refused(error):
                    remaining = len(self.pending())
                    log.warning("carbon metrics spool: the store at %s did not answer (%s); %d record(s) stay in %s",
                                store.safe_url, describe_error(error, store.engine.url), remaining, self.directory)
                    return written, remaining
                self._set_aside(path, error, store, "is not a record the store can take")
                continue
            written += 1
            try:
                path.unlink(missing_ok=True)
            except OSError as error:  # written: a later replay writes it again, which its upsert makes harmless
                log.error("carbon metrics spool: %s was written to %s but cannot be removed (%s); it stays pending",
                          path, store.safe_url, describe_error(error, None))
        remaining = len(self.pending())
        if written:
            log.info("carbon metrics spool: wrote %d record(s) from %s to %s; %d still pending", written,
                     self.directory, store.safe_url, remaining)
        return written, remaining

    def _set_aside(self, path: Path, error: Exception, store: MetricsStore, why: str) -> None:
        """Rename the entry to ``*.bad`` so the next ones are written; left where it is if it cannot be renamed."""
        bad = path.with_suffix(".bad")
        try:
            path.rename(bad)
        except FileNotFoundError:
            return  # another process set it aside
        except OSError as rename_error:
            log.error("carbon metrics spool: %s %s (%s), and cannot be set aside (%s); the other records are "
                      "written, this one stays until it is moved", path, why, describe_error(error, store.engine.url),
                      describe_error(rename_error, None))
            return
        log.error("carbon metrics spool: %s %s (%s); set aside as %s", path, why,
                  describe_error(error, store.engine.url), bad)

    def earliest_ready_at(self, dag_id: str, task_id: str, run_id: str, map_index: int | None) -> datetime | None:
        """When any spooled try of this task instance became ready (any mapped instance if ``map_index`` is None).

        The same question as :meth:`MetricsStore.earliest_ready_at`, for while the store is down.
        """
        earliest: datetime | None = None
        for path in self.pending():
            try:
                record = parse_record(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, TypeError) as error:
                log.debug("carbon metrics spool: %s skipped: %s", path, error)
                continue
            ready_at = record.ready_at
            if (record.dag_id, record.task_id, record.run_id) != (dag_id, task_id, run_id) or ready_at is None:
                continue
            if map_index is not None and record.map_index != map_index:
                continue
            if earliest is None or ready_at < earliest:
                earliest = ready_at
        return earliest
