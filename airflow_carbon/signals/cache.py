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
#: Entries older than this are dropped now and then, so keys that change (deadlines, horizons) do not pile up
#: in a triggerer that runs for months; a dropped entry is only loaded again. Longer than ``STALE_AFTER_S``,
#: the oldest read a trigger falls back on.
PRUNE_AFTER_S = 2 * 3600.0
#: Stores between two prunings.
PRUNE_EVERY = 1024


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
        self._stores = 0

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
            self._store(key, value)
            return value
        finally:
            del self._in_flight[key]

    def fresh(self, key: Hashable, max_age_s: float) -> T | None:
        """The value for ``key`` if one younger than ``max_age_s`` is kept, without awaiting: the path most
        calls of 10,000 waiting triggers take, so it creates no task and no future."""
        entry = self._entries.get(key)
        return entry.value if entry is not None and self._clock() - entry.loaded_at < max_age_s else None

    def remember(self, key: Hashable, make: Callable[[], T], max_age_s: float) -> T:
        """``get`` for a value made synchronously: the same work done once for every caller with the same key."""
        kept = self.fresh(key, max_age_s)
        if kept is not None:
            return kept
        value = make()
        self._store(key, value)
        return value

    def _store(self, key: Hashable, value: T) -> None:
        now = self._clock()
        self._entries[key] = _Entry(value, now)
        self._stores += 1
        if self._stores % PRUNE_EVERY == 0:
            self._entries = {k: e for k, e in self._entries.items() if now - e.loaded_at <= PRUNE_AFTER_S}

    def last_good(self, key: Hashable) -> tuple[T, float] | None:
        """The last value loaded for ``key`` and its age in seconds, for a fallback when a load fails."""
        entry = self._entries.get(key)
        return None if entry is None else (entry.value, self._clock() - entry.loaded_at)


def _seen(future: asyncio.Future) -> None:
    """Mark a failed load's error as seen: every caller may have stopped waiting (a deadline came) before it failed."""
    if not future.cancelled():
        future.exception()


def per_loop(make: Callable[[], T]) -> Callable[[], T]:
    """A getter of one ``make()`` per running event loop: what every trigger of one triggerer process shares."""
    made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get() -> T:
        loop = asyncio.get_running_loop()
        if loop not in made:
            made[loop] = make()
        return made[loop]

    return get


#: The cache every trigger on this event loop (one triggerer process) shares.
shared_cache: Callable[[], SingleFlightCache] = per_loop(SingleFlightCache)
