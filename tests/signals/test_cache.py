"""The single-flight cache: one read per key for every concurrent waiter, reused while fresh."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from airflow_carbon.signals.cache import SingleFlightCache, shared_cache


def test_the_cache_loads_once_per_key_for_all_callers_and_refreshes_when_stale():
    clock = [0.0]
    threads: list[int] = []
    release = threading.Event()

    def load() -> str:
        threads.append(threading.get_ident())
        release.wait(5)
        return f"value {len(threads)}"

    def in_thread():
        return asyncio.to_thread(load)

    async def scenario():
        cache = SingleFlightCache(clock=lambda: clock[0])
        waiting = [asyncio.create_task(cache.get("DE", in_thread, max_age_s=300)) for _ in range(50)]
        await asyncio.sleep(0.05)
        release.set()
        first = await asyncio.gather(*waiting)
        cached = await cache.get("DE", in_thread, max_age_s=300)
        clock[0] = 301
        refreshed = await cache.get("DE", in_thread, max_age_s=300)
        return first, cached, refreshed, cache.loads

    first, cached, refreshed, loads = asyncio.run(scenario())
    assert set(first) == {"value 1"} and cached == "value 1" and refreshed == "value 2" and loads == 2


def test_keys_are_loaded_and_aged_apart():
    clock = [0.0]

    async def scenario():
        cache = SingleFlightCache(clock=lambda: clock[0])
        de = await cache.get("DE", _returning("DE 1"), max_age_s=60)
        clock[0] = 30
        fr = await cache.get("FR", _returning("FR 1"), max_age_s=60)
        clock[0] = 70  # DE is 70 s old, FR 40 s
        return de, fr, await cache.get("DE", _returning("DE 2"), 60), await cache.get("FR", _returning("FR 2"), 60)

    assert asyncio.run(scenario()) == ("DE 1", "FR 1", "DE 2", "FR 1")


def test_last_good_is_the_last_value_loaded_with_its_age():
    clock = [100.0]

    async def scenario():
        cache = SingleFlightCache(clock=lambda: clock[0])
        before = cache.last_good("DE")
        await cache.get("DE", _returning("forecast"), max_age_s=60)
        clock[0] = 145
        return before, cache.last_good("DE")

    assert asyncio.run(scenario()) == (None, ("forecast", 45.0))


def test_a_failed_load_is_not_cached_but_the_last_good_value_is_kept():
    outcomes = iter(["good", RuntimeError("service down"), "good again"])

    async def load() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def scenario():
        cache = SingleFlightCache(clock=lambda: 0.0)
        assert await cache.get("k", load, max_age_s=-1) == "good"
        with pytest.raises(RuntimeError, match="service down"):
            await cache.get("k", load, max_age_s=-1)
        kept = cache.last_good("k")
        return kept, await cache.get("k", load, max_age_s=-1), cache.loads

    assert asyncio.run(scenario()) == (("good", 0.0), "good again", 3)


def test_every_waiter_of_a_failed_load_gets_its_error_and_the_next_call_loads_again():
    async def scenario():
        gate, calls = asyncio.Event(), []

        async def failing() -> str:
            calls.append("failing")
            await gate.wait()
            raise RuntimeError("HTTP 503")

        cache = SingleFlightCache()
        waiting = [asyncio.create_task(cache.get("DE", failing, max_age_s=60)) for _ in range(10)]
        await asyncio.sleep(0)
        gate.set()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        after = await cache.get("DE", _returning("recovered"), max_age_s=60)
        return calls, outcomes, after, cache.last_good("DE")[0]

    calls, outcomes, after, last_good = asyncio.run(scenario())
    assert calls == ["failing"]
    assert len(outcomes) == 10 and all(isinstance(o, RuntimeError) and str(o) == "HTTP 503" for o in outcomes)
    assert after == last_good == "recovered"


def test_a_load_that_fails_after_every_waiter_gave_up_does_not_log_an_unretrieved_error():
    """A trigger's deadline may cancel its wait; the read it started still ends, and its error must be seen."""
    unhandled: list[dict] = []

    async def scenario():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: unhandled.append(context))
        gate, started = asyncio.Event(), asyncio.Event()

        async def failing() -> str:
            started.set()
            await gate.wait()
            raise RuntimeError("late failure")

        cache = SingleFlightCache()
        waiter = asyncio.create_task(cache.get("DE", failing, max_age_s=60))
        await started.wait()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.set()
        for _ in range(10):  # let the load finish and its callbacks run
            await asyncio.sleep(0)
        gc.collect()
        return cache.loads, cache.last_good("DE")

    assert asyncio.run(scenario()) == (1, None)
    assert not unhandled, [context.get("message") for context in unhandled]


def test_the_shared_cache_is_one_per_event_loop():
    async def twice():
        return shared_cache(), shared_cache()

    first, again = asyncio.run(twice())
    other, _ = asyncio.run(twice())
    assert first is again and other is not first


def _returning(value: str):
    async def load() -> str:
        return value

    return load
