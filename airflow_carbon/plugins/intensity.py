"""The grid carbon intensity the Carbon charts draw, read from a task's source and cached for a few minutes.

The cache is keyed on normalised values only, so a query string cannot grow it nor make the server
read a source again: a bundled source is named by its region alone; a connection's source is read
for the regions the caller's tasks recorded with it, never for one the query string makes up; the
history is rounded up to one of a few lengths. The cache keeps its ``INTENSITY_CACHE_ENTRIES`` most
recently used readings, each with its own lock, and nothing else.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from airflow_carbon.clock import utcnow
from airflow_carbon.hooks.sources import load_first
from airflow_carbon.metrics import queries
from airflow_carbon.plugins.auth import CurrentUser, readable_dag_ids
from airflow_carbon.plugins.common import in_thread, query_instant, query_name, store_dependency
from airflow_carbon.plugins.models import IntensitySeries
from airflow_carbon.signals.series import from_epoch_s
from airflow_carbon.signals.source import Reading, SourceRef

router = APIRouter()

INTENSITY_CACHE_S = 300.0
#: Readings kept at most; the least recently used goes first.
INTENSITY_CACHE_ENTRIES = 64
INTENSITY_WINDOW = timedelta(hours=24)
MAX_INTENSITY_HISTORY = timedelta(days=7)
MAX_INTENSITY_SPAN = timedelta(days=10)
#: The history lengths a reading is made with: a chart's history is rounded up to the first that covers it.
HISTORY_LENGTHS = (INTENSITY_WINDOW + timedelta(hours=1), timedelta(days=3), MAX_INTENSITY_HISTORY + timedelta(hours=1))


def source_ref(source: str | None, region: str | None) -> SourceRef:
    """The source a chart asks for, as rows name it; with no source, the bundled data of ``region``.

    A bundled source is named in one spelling (``bundled:DE``, whatever the case and spaces). File
    sources are refused: a query string must not make the server read a file.
    """
    region = (region or "").strip()
    source = (source or "").strip()
    if not source:
        if not region:
            raise ValueError("give a source (bundled:<region> or conn:<connection id>) or a bundled region")
        return SourceRef.bundled(region.upper())
    ref = SourceRef(source, region)
    if ref.path is not None:
        raise ValueError(f"source {source!r}: file sources are not read on request; a chart can show bundled "
                         "data or a connection's source")
    if ref.conn_id is None:
        return SourceRef.bundled(ref.region.strip().upper())
    return ref


@dataclass
class _Entry:
    """One cache key's reading, and the lock that lets one request at a time load it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    loaded_at: float = 0.0
    reading: Reading | None = None


_intensity_cache: OrderedDict[tuple[str, str, float], _Entry] = OrderedDict()
_intensity_guard = threading.Lock()


def _entry(key: tuple[str, str, float]) -> _Entry:
    """The key's entry, now the most recently used; the least recently used ones beyond the bound are dropped.

    A dropped entry whose load is under way finishes it for the requests already waiting on its lock.
    """
    with _intensity_guard:
        entry = _intensity_cache.get(key)
        if entry is None:
            entry = _intensity_cache[key] = _Entry()
        _intensity_cache.move_to_end(key)
        while len(_intensity_cache) > INTENSITY_CACHE_ENTRIES:
            _intensity_cache.popitem(last=False)
        return entry


def history_length(history: timedelta) -> timedelta:
    """The first of ``HISTORY_LENGTHS`` that covers ``history`` and the hour being drawn."""
    needed = history + timedelta(hours=1)
    return next((length for length in HISTORY_LENGTHS if length >= needed), HISTORY_LENGTHS[-1])


def load_intensity(ref: SourceRef, now: datetime, history: timedelta) -> Reading:
    """``load_first`` for one source, cached for five minutes per source, region and history length.

    One load per key at a time: a page opened by many users at once reads the service once.
    """
    length = history_length(history)
    entry = _entry((ref.name, ref.region, length.total_seconds()))
    with entry.lock:
        if entry.reading is not None and time.monotonic() - entry.loaded_at < INTENSITY_CACHE_S:
            return entry.reading
        result = load_first([ref], now, length)
        if result.series is not None:  # a failure is not cached: the next request tries again
            entry.loaded_at, entry.reading = time.monotonic(), result
        return result


def clear_intensity_cache() -> None:
    with _intensity_guard:
        _intensity_cache.clear()


@router.get("/intensity", response_model=IntensitySeries, summary="Grid carbon intensity for a chart")
async def get_intensity(
    user: CurrentUser,
    source: Annotated[str | None, Query(description="bundled:<region> or conn:<connection id>, as rows name it")]
    = None,
    region: Annotated[str | None, Query(description="grid region: a bundled one, or for a connection one its "
                                                    "tasks recorded (the connection's own zone wins)")] = None,
    start: Annotated[str | None, Query(description="YYYY-MM-DD or ISO instant (default: a day ago)")] = None,
    end: Annotated[str | None, Query(description="YYYY-MM-DD or ISO instant (default: a day ahead)")] = None,
) -> dict[str, Any]:
    try:
        ref = source_ref(query_name(source, "source"), query_name(region, "region"))
    except ValueError as error:  # SourceError included
        message = str(error)
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            message if message.startswith(("source", "give a source")) else f"source: {message}"
                            ) from None
    now = utcnow()
    first = query_instant(start, "start") or now - INTENSITY_WINDOW
    last = query_instant(end, "end", day_end=True) or first + 2 * INTENSITY_WINDOW
    if last <= first or last - first > MAX_INTENSITY_SPAN:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"start must be before end, at most {MAX_INTENSITY_SPAN.days} days apart")
    if ref.conn_id is not None:
        dag_ids = await readable_dag_ids(user)
        store = await store_dependency()
        regions = await in_thread(queries.source_regions, store.engine, dag_ids, ref.name)
        if not regions:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"no task of a DAG you may read uses the source {ref.name!r}")
        if ref.region and ref.region not in regions:
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                f"region: {ref.region[:40]!r} is not a region the tasks on {ref.name} recorded "
                                f"({', '.join(sorted(regions)[:10])})")
    history = min(max(now - first, timedelta(0)), MAX_INTENSITY_HISTORY)
    reading = await in_thread(load_intensity, ref, now, history)
    series, failures = reading.series, list(reading.failed_sources)
    if series is None:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"no carbon signal from {ref.name}: {'; '.join(failures)}")
    part = series.between(first, last)
    return {
        "region": series.region, "source": reading.served_by or ref.name, "requested_source": ref.name,
        "period_s": series.period_s, "unit": series.unit, "kind": series.kind, "replayed": series.replayed,
        "estimated": series.estimated, "failed_sources": failures,
        "points": [(from_epoch_s(t), float(v)) for t, v in zip(part.start_epoch_s, part.values, strict=True)],
    }
