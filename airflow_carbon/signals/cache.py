"""One read per source and region, however many waiting tasks ask: a shared, single-flight cache.

Thousands of deferred tasks in one triggerer share a handful of series. The first caller
for a key starts the read (a coroutine: blocking reads go to a thread); every caller that
arrives while it runs awaits the same future; the result is reused while it is fresh. A
failed read is not cached, and callers may fall back to the last good value.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    value: T
    loaded_at: float


class SingleFlightCache(Generic[T]):
    """Values by key, at most one load per key at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[Hashable, _Entry[T]] = {}
        self._in_flight: dict[Hashable, asyncio.Future[T]] = {}
        self.loads = 0

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]], max_age_s: float) -> T:
        """A value for ``key`` younger than ``max_age_s``, loading it once for all concurrent callers."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.loaded_at < max_age_s:
            return entry.value
        future = self._in_flight.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_task(self._load(key, load))
            future.add_done_callback(_seen)
            self._in_flight[key] = future
        return await asyncio.shield(future)

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        try:
            self.loads += 1
            value = await load()
            self._entries[key] = _Entry(value, self._clock())
            return value
        finally:
            del self._in_flight[key]

    def last_good(self, key: Hashable) -> tuple[T, float] | None:
        """The last value loaded for ``key`` and its age in seconds, for a fallback when a load fails."""
        entry = self._entries.get(key)
        return None if entry is None else (entry.value, self._clock() - entry.loaded_at)


def _seen(future: asyncio.Future) -> None:
    """Mark a failed load's error as seen: every caller may have stopped waiting (a deadline came) before it failed."""
    if not future.cancelled():
        future.exception()


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SingleFlightCache] = weakref.WeakKeyDictionary()


def shared_cache() -> SingleFlightCache:
    """The cache every trigger on this event loop (one triggerer process) shares."""
    loop = asyncio.get_running_loop()
    cache = _per_loop.get(loop)
    if cache is None:
        cache = _per_loop[loop] = SingleFlightCache()
    return cache
