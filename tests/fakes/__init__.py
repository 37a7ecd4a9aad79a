"""Fakes of the outside world for tests: a real HTTP server playing the carbon-signal services, a clock, a sleep,
and the little of a task and its task instance that the carbon runtime reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass, field
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


@dataclass
class FakeTaskInstance:
    """What the runtime reads of a task instance, and the XComs it pushes (kept as XCom stores them: JSON)."""

    dag_id: str = "nightly"
    task_id: str = "summarize"
    run_id: str = "manual__1"
    map_index: int = -1
    try_number: int = 1
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = json.loads(json.dumps(value))


@dataclass
class FakeTask:
    """A carbon-aware task as the runtime sees it: its id, its given settings, and ``defer`` as BaseOperator has it."""

    task_id: str = "summarize"
    carbon_options: dict[str, Any] = field(default_factory=dict)
    dag: Any = None

    def defer(self, *, trigger: Any, method_name: str) -> None:
        from airflow.sdk.exceptions import TaskDeferred

        raise TaskDeferred(trigger=trigger, method_name=method_name)
