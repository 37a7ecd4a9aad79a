"""Pacing the triggers of one triggerer, so that thousands waking at one instant do not stall its event loop.

Tasks planned on one forecast wake together: at a refresh, and when the window they all chose opens. Each
wake costs a fraction of a millisecond of planning and bookkeeping, and asyncio runs every task that is due
in one turn of its loop, so 10,000 of them would hold the loop for seconds, and every other trigger of the
triggerer with it. The pacer hands out turns from a bucket that a timer fills every ``WINDOW_S``: as many as
``BURST_S`` of work holds at the cost that wakes really took. A timer runs once per turn of the loop at most,
so no turn of the loop runs more than a bucket of wakes; the others wait in order for the next fill.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from airflow_carbon.signals.cache import per_loop

#: The work on the wakes' account that one turn of the loop may hold.
BURST_S = 0.01
#: How often the bucket is filled while wakes wait.
WINDOW_S = 0.01
#: What a wake is expected to cost before any was measured, and the weight of each new measurement.
FIRST_COST_S = 0.0002
COST_WEIGHT = 0.2
#: A sample that also counts other tasks run while the wake awaited a read counts no more than this.
MAX_SAMPLE_S = 0.005
#: A wake with less than this left before its deadline does not queue: a deadline is never paced past.
NO_QUEUE_WITHIN_S = 30.0


class Pacer:
    """Turns for the wakes of one event loop's triggers: at most a bucket of ``BURST_S`` of work per fill."""

    def __init__(self) -> None:
        self.cost_s = FIRST_COST_S
        self._tokens = self.bucket
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._filling: asyncio.TimerHandle | None = None

    @property
    def bucket(self) -> int:
        return max(1, int(BURST_S / self.cost_s))

    async def turn(self, max_wait_s: float) -> None:
        """Go on at once while the bucket holds a turn, else wait in order for a fill (never near a deadline)."""
        if (not self._waiting and self._tokens > 0) or max_wait_s < NO_QUEUE_WITHIN_S:
            self._tokens -= 1
            self._fill_later()
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        self._fill_later()
        await turn

    def spent(self, cpu_s: float) -> None:
        """The CPU one wake's work took, so the bucket holds what ``BURST_S`` of such work is."""
        self.cost_s += COST_WEIGHT * (min(max(cpu_s, 1e-6), MAX_SAMPLE_S) - self.cost_s)

    def _fill_later(self) -> None:
        if self._filling is None:
            self._filling = asyncio.get_running_loop().call_later(WINDOW_S, self._fill)

    def _fill(self) -> None:
        self._filling = None
        self._tokens = self.bucket
        while self._waiting and self._tokens > 0:
            turn = self._waiting.popleft()
            if not turn.done():  # a cancelled trigger left its place
                turn.set_result(None)
                self._tokens -= 1
        if self._waiting or self._tokens < self.bucket:
            self._fill_later()


#: The pacer every trigger on this event loop (one triggerer process) shares.
loop_pacer: Callable[[], Pacer] = per_loop(Pacer)
