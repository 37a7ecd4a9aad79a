"""Turns for thousands of wakes at one instant: a bucket's worth at once, the rest in order, a bucket per fill."""

from __future__ import annotations

import asyncio

import pytest

from airflow_carbon.triggers.pacing import BURST_S, MAX_SAMPLE_S, NO_QUEUE_WITHIN_S, Pacer, loop_pacer


def test_wakes_at_one_instant_run_a_bucket_per_turn_of_the_loop_in_the_order_they_came():
    async def wake_all() -> tuple[list[int], int, int]:
        pacer = Pacer()
        pacer.cost_s = BURST_S / 50  # a bucket holds 50 wakes
        order: list[int] = []
        iterations = 0
        done = asyncio.Event()

        async def count_turns() -> None:  # how many turns of the loop the 1,000 wakes were spread over
            nonlocal iterations
            while not done.is_set():
                iterations += 1
                await asyncio.sleep(0)

        async def wake(index: int) -> None:
            await pacer.turn(max_wait_s=3600.0)
            order.append(index)

        counter = asyncio.create_task(count_turns())
        await asyncio.gather(*(wake(i) for i in range(1000)))
        done.set()
        await counter
        return order, iterations, pacer.bucket

    order, iterations, bucket = asyncio.run(wake_all())
    assert bucket == 50 and order == list(range(1000))
    assert iterations >= 1000 // bucket - 1  # at most a bucket ran in any one turn of the loop


def test_a_wake_near_its_deadline_never_queues():
    async def crowded() -> bool:
        pacer = Pacer()
        pacer.cost_s = BURST_S  # a bucket of one
        await pacer.turn(max_wait_s=3600.0)  # takes the only turn
        late = asyncio.create_task(pacer.turn(max_wait_s=NO_QUEUE_WITHIN_S - 1))
        await asyncio.sleep(0)
        return late.done()

    assert asyncio.run(crowded())


def test_the_expected_cost_follows_what_wakes_took_and_one_slow_sample_is_capped():
    pacer = Pacer()
    for _ in range(100):
        pacer.spent(0.001)
    assert pacer.cost_s == pytest.approx(0.001, rel=1e-3) and pacer.bucket == round(BURST_S / 0.001)
    pacer.spent(30.0)  # a wake that awaited a slow read counts no more than the cap
    assert pacer.cost_s <= 0.001 + 0.2 * MAX_SAMPLE_S


def test_one_pacer_per_event_loop():
    async def two() -> tuple[Pacer, Pacer]:
        return loop_pacer(), loop_pacer()

    first, again = asyncio.run(two())
    assert first is again and asyncio.run(two())[0] is not first
