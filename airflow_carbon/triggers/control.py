"""What people decide reaches the waiting triggers: one poll of the metrics store per triggerer, for all of them.

A release or an eco-mode-off switch is a row in the store (``metrics/control``). Every ``POLL_INTERVAL_S`` the
triggerer reads them in one query, wakes the triggers told to run, writes the plans its triggers made since the
last poll in one transaction, and reports how many tasks wait. A store that does not answer only delays what
people asked: every trigger still wakes at its own plan and deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from airflow_carbon import stats
from airflow_carbon.clock import utcnow
from airflow_carbon.control import Override
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics.control import NO_CONTROL, ControlState, control_state, write_plans
from airflow_carbon.metrics.record import TaskTryKey
from airflow_carbon.metrics.store import MetricsStore
from airflow_carbon.planning import Decision
from airflow_carbon.signals.cache import per_loop

log = logging.getLogger(__name__)

#: How often a triggerer reads releases and switches: a released task starts within this, plus a turn of pacing.
POLL_INTERVAL_S = 10.0


@dataclass
class Waiting:
    """One trigger's place in the watch: a poll that finds its try told to run sets ``told`` and ends its nap."""

    region: str | None
    told: bool = False
    _wake: asyncio.Future[None] | None = None

    async def nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if told: one future and one timer, as ``asyncio.sleep`` has."""
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = loop.call_later(seconds, _resolve, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    def tell(self) -> None:
        self.told = True
        if self._wake is not None:
            _resolve(self._wake)


@dataclass
class ControlWatch:
    """The releases and switches of one metrics store, as this triggerer last read them, and who waits on them."""

    conn_id: str
    state: ControlState = NO_CONTROL
    polls: int = 0
    _waiting: dict[TaskTryKey, Waiting] = field(default_factory=dict)
    _counts: Counter[tuple[str, str, str | None]] = field(default_factory=Counter)
    _plans: dict[TaskTryKey, dict[str, Any]] = field(default_factory=dict)
    _written: dict[TaskTryKey, tuple[Any, ...]] = field(default_factory=dict)
    _poller: asyncio.Task[None] | None = None
    _failing: bool = False

    def join(self, key: TaskTryKey, region: str | None) -> Waiting:
        """Wait on the polls: the poll that finds this try told to run tells its ``Waiting``."""
        if key not in self._waiting:
            self._counts[key.dag_id, key.task_id, region] += 1
        self._waiting[key] = waiting = Waiting(region)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        return waiting

    def leave(self, key: TaskTryKey) -> None:
        waiting = self._waiting.pop(key, None)
        self._written.pop(key, None)
        if waiting is not None:
            count_key = (key.dag_id, key.task_id, waiting.region)
            self._counts[count_key] -= 1
            if self._counts[count_key] <= 0:
                del self._counts[count_key]

    def override(self, key: TaskTryKey, now: datetime) -> Override | None:
        return self.state.override(key, now)

    def report(self, key: TaskTryKey, decision: Decision) -> None:
        """The try's current plan, written to its row at the next poll with every other trigger's; a plan that
        did not change since it was written is not written again (``decided_at`` is when it was first made)."""
        plan = (decision.start, decision.expected_emissions_now_g, decision.expected_emissions_at_start_g)
        if self._written.get(key) == plan:
            return
        self._written[key] = plan
        self._plans[key] = {**asdict(key), "decided_at": decision.now, "planned_start": decision.start,
                            "expected_emissions_now_g": decision.expected_emissions_now_g,
                            "expected_emissions_at_start_g": decision.expected_emissions_at_start_g}

    async def _poll(self) -> None:
        hook = CarbonMetricsHook(self.conn_id)
        while self._waiting:
            plans, self._plans = self._plans, {}
            try:
                store = await hook.aget_store()
                self.state = await asyncio.to_thread(_exchange, store, list(plans.values()))
            except Exception as error:
                self._plans = plans | self._plans  # written at the next poll that reaches the store
                if not self._failing:
                    log.warning("carbon: reading releases and eco-mode switches from %s failed (%s); waiting tasks "
                                "keep their plans and deadlines, and it is tried again every %.0f s", hook.where(),
                                hook.describe_error(error), POLL_INTERVAL_S)
                self._failing = True
            else:
                if self._failing:
                    log.info("carbon: %s answers again", hook.where())
                self._failing = False
                self.polls += 1
                self._wake_told()
            self._report_waiting()
            await asyncio.sleep(POLL_INTERVAL_S)
        self._report_waiting()

    def _wake_told(self) -> None:
        """Tell the released tries, and every try while a switch holds; with neither, touch no trigger."""
        now, state = utcnow(), self.state
        if state.switches:
            told = (key for key in self._waiting if state.override(key, now) is not None)
        else:
            told = (key for key in state.releases if key in self._waiting)
        for key in told:
            if not self._waiting[key].told:
                self._waiting[key].tell()

    def _report_waiting(self) -> None:
        stats.tasks_waiting(self._counts)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _exchange(store: MetricsStore, plans: list[dict[str, Any]]) -> ControlState:
    write_plans(store.engine, plans, utcnow())
    return control_state(store.engine)


_watches: Callable[[], dict[str, ControlWatch]] = per_loop(dict)


def control_watch(conn_id: str) -> ControlWatch:
    """This event loop's watch of the store behind ``conn_id``: one poll for all the triggers that use it."""
    watches = _watches()
    if conn_id not in watches:
        watches[conn_id] = ControlWatch(conn_id)
    return watches[conn_id]
