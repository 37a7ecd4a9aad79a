"""What every part of the Carbon API shares: the metrics store it reads, threads for blocking work, query parsing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, status

from airflow_carbon.metrics.queries import FIRST_DAY, LAST_DAY
from airflow_carbon.metrics.store import MetricsStore
from airflow_carbon.units import parse_instant

R = TypeVar("R")

STORE_CACHE_S = 60.0


async def in_thread(function: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Database work and the simulator block: the API server's event loop must not wait on them."""
    return await asyncio.to_thread(function, *args, **kwargs)


# -- the store ----------------------------------------------------------------------------------

_store_cache: dict[str, tuple[float, MetricsStore]] = {}
_store_lock = threading.Lock()


def metrics_store() -> MetricsStore:
    """The store of ``carbon_metrics_default``; the connection is looked up again after a minute."""
    with _store_lock:
        cached = _store_cache.get("store")
        if cached and time.monotonic() - cached[0] < STORE_CACHE_S:
            return cached[1]
    from airflow_carbon.hooks.metrics import CarbonMetricsHook

    store = CarbonMetricsHook().get_store()
    with _store_lock:
        _store_cache["store"] = (time.monotonic(), store)
    return store


def reset_store_cache() -> None:
    with _store_lock:
        _store_cache.clear()


async def store_dependency() -> MetricsStore:
    try:
        return await in_thread(metrics_store)
    except Exception as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"carbon metrics store unavailable: {type(error).__name__}: {error}") from None


Store = Annotated[MetricsStore, Depends(store_dependency)]


# -- query values -------------------------------------------------------------------------------

#: The longest name a query may give: Airflow's own limit for DAG, task, run and connection ids.
MAX_NAME_LENGTH = 250


def query_name(text: str | None, field: str) -> str | None:
    """A DAG, task or run id, a region or a source from a query string or path, stripped; None when empty.

    What no row can hold is a 400 rather than a query: a NUL (PostgreSQL refuses it in any string) or
    more than ``MAX_NAME_LENGTH`` characters.
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    if "\x00" in text or len(text) > MAX_NAME_LENGTH:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{field}: not a name of at most {MAX_NAME_LENGTH} "
                                                         f"characters without NUL: {text[:40]!r}")
    return text


def query_instant(text: str | None, field: str, *, day_end: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` day or an ISO 8601 instant (naive is UTC) from 1900 to 2199; empty means not given.

    A day is its first instant, or with ``day_end`` the first instant after it: a day given as an
    end is included. The range keeps every window the routes draw around it inside ``datetime``'s.
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        value = parse_instant(text, naive_is_utc=True)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"{field}: not a date or an ISO 8601 instant: {text[:40]!r}") from None
    if not FIRST_DAY <= value.date() <= LAST_DAY:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{field}: {text[:40]!r} is not between "
                                                         f"{FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}")
    if day_end and len(text) == len("YYYY-MM-DD"):
        value += timedelta(days=1)
    return value


#: Airflow's map index is a 32-bit integer column; -1 means not mapped.
MAX_MAP_INDEX = 2**31 - 1


def parse_map_index(text: str | None) -> int:
    """``-1`` when absent or left as the UI's literal ``{MAP_INDEX}`` (it fills it on mapped tasks only)."""
    if text is None or not text.strip() or "MAP_INDEX" in text:
        return -1
    try:
        index = int(text)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"map_index: not an integer: {text[:40]!r}") from None
    if not -1 <= index <= MAX_MAP_INDEX:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"map_index: {text[:40]!r} is not between -1 and "
                                                         f"{MAX_MAP_INDEX}")
    return index
