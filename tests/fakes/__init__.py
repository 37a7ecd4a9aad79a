"""Fakes of the outside world for tests: a real HTTP server playing the carbon-signal services, a clock, a sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class FakeClock:
    """A monotonic clock that moves only when told: ``clock.advance(60)``."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """An ``asyncio.sleep`` stand-in that records the waits asked for and does not wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


def run_closing(coro: Coroutine[Any, Any, T], clients: list[Any]) -> T:
    """Run ``coro`` in a new event loop and ``aclose`` every client before that loop ends (no leaked sockets)."""

    async def main() -> T:
        try:
            return await coro
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(main())


MADE: list[Any] = []  # the clients a test made, closed at the end of every event loop it runs


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``run_closing`` over the clients the current test registered in ``MADE``."""
    return run_closing(coro, MADE)
