"""The grid carbon intensity the Carbon charts draw, read from a task's source and cached for a few minutes."""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from airflow_carbon.clock import utcnow
from airflow_carbon.hooks.sources import load_first
from airflow_carbon.metrics import queries
from airflow_carbon.plugins.auth import CurrentUser, readable_dag_ids
from airflow_carbon.plugins.common import in_thread, query_instant, store_dependency
from airflow_carbon.plugins.models import IntensitySeries
from airflow_carbon.signals.series import from_epoch_s
from airflow_carbon.signals.source import Reading, SourceRef

router = APIRouter()

INTENSITY_CACHE_S = 300.0
INTENSITY_WINDOW = timedelta(hours=24)
MAX_INTENSITY_HISTORY = timedelta(days=7)
MAX_INTENSITY_SPAN = timedelta(days=10)


def source_ref(source: str | None, region: str | None) -> SourceRef:
    """The source a chart asks for, as rows name it; with no source, the bundled data of ``region``.

    File sources are refused: a query string must not make the server read a file.
    """
    region = (region or "").strip()
    if not source:
        if not region:
            raise ValueError("give a source (bundled:<region> or conn:<connection id>) or a bundled region")
        return SourceRef.bundled(region)
    ref = SourceRef(source, region)
    if ref.path is not None:
        raise ValueError(f"source {source!r}: file sources are not read on request; a chart can show bundled "
                         "data or a connection's source")
    return ref


_intensity_cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
_intensity_locks: dict[tuple[Any, ...], threading.Lock] = {}
_intensity_guard = threading.Lock()


def load_intensity(ref: SourceRef, now: datetime, history: timedelta) -> Reading:
    """``load_first`` for one source, cached for five minutes per source, region and hours of history.

    One load per key at a time: a page opened by many users at once reads the service once.
    """
    hours = max(1, math.ceil(history.total_seconds() / 3600) + 1)
    key = (ref.name, ref.region, hours)
    with _intensity_guard:
        lock = _intensity_locks.setdefault(key, threading.Lock())
    with lock:
        cached = _intensity_cache.get(key)
        if cached and time.monotonic() - cached[0] < INTENSITY_CACHE_S:
            return cached[1]
        result = load_first([ref], now, timedelta(hours=hours))
        with _intensity_guard:
            for old in [k for k, (at, _) in _intensity_cache.items() if time.monotonic() - at >= INTENSITY_CACHE_S]:
                del _intensity_cache[old]
            if result.series is not None:  # a failure is not cached: the next request tries again
                _intensity_cache[key] = (time.monotonic(), result)
        return result


def clear_intensity_cache() -> None:
    with _intensity_guard:
        _intensity_cache.clear()


@router.get("/intensity", response_model=IntensitySeries, summary="Grid carbon intensity for a chart")
async def get_intensity(
    user: CurrentUser,
    source: Annotated[str | None, Query(description="bundled:<region> or conn:<connection id>, as rows name it")]
    = None,
    region: Annotated[str | None, Query(description="grid region")] = None,
    start: Annotated[str | None, Query(description="YYYY-MM-DD or ISO instant (default: a day ago)")] = None,
    end: Annotated[str | None, Query(description="YYYY-MM-DD or ISO instant (default: a day ahead)")] = None,
) -> dict[str, Any]:
    try:
        ref = source_ref(source, region)
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    if ref.conn_id is not None:
        dag_ids = await readable_dag_ids(user)
        store = await store_dependency()
        if not await in_thread(queries.source_in_use, store.engine, dag_ids, ref.name):
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"no task of a DAG you may read uses the source {ref.name!r}")
    now = utcnow()
    first = query_instant(start, "start") or now - INTENSITY_WINDOW
    last = query_instant(end, "end", day_end=True) or first + 2 * INTENSITY_WINDOW
    if last <= first or last - first > MAX_INTENSITY_SPAN:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"start must be before end, at most {MAX_INTENSITY_SPAN.days} days apart")
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
