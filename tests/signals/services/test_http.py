"""The shared HTTP client: retries, Retry-After, timeouts, errors, the circuit breaker, run_sync."""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from email.utils import formatdate

import pytest

from airflow_carbon.signals.services.errors import AuthError, BadResponse, CircuitOpenError, SignalServiceError
from airflow_carbon.signals.services.http import (
    CircuitBreaker,
    HttpPolicy,
    ServiceClient,
    breaker_for,
    retry_after_s,
    run_sync,
)
from tests.fakes import MADE, FakeClock, RecordingSleep, run
from tests.fakes.signal_server import FakeSignalServer

NOW = 1780315650.0  # 2026-06-01T12:07:30Z
PATH = "/intensity/2026-06-01T12:00Z/fw48h"  # the UK endpoint needs no auth: plain HTTP behaviour


@pytest.fixture
def server():
    with FakeSignalServer(now=lambda: NOW) as fake:
        yield fake


def make_client(base_url: str, *, clock: FakeClock | None = None, sleep: RecordingSleep | None = None,
                secrets: tuple[str, ...] = (), **policy: float) -> ServiceClient:
    settings = {"timeout_s": 2.0, "attempts": 3, "backoff_s": 0.01, "max_backoff_s": 30.0, **policy}
    client = ServiceClient("test", base_url, policy=HttpPolicy(**settings), clock=clock or FakeClock(),
                         sleep=sleep or RecordingSleep(), secrets=secrets)
    MADE.append(client)
    return client


def test_policy_defaults_and_validation():
    policy = HttpPolicy()
    assert (policy.timeout_s, policy.attempts, policy.backoff_s, policy.max_backoff_s) == (10.0, 3, 0.5, 30.0)
    assert (policy.breaker_failures, policy.breaker_reset_s) == (5, 60.0)
    with pytest.raises(ValueError):
        HttpPolicy(attempts=0)


def test_retries_server_errors_then_succeeds(server):
    server.fail("/intensity/", 500, times=1)
    server.fail("/intensity/", 503, times=1)
    sleep = RecordingSleep()
    client = make_client(server.base_url, sleep=sleep)
    body = run(client.get_json(PATH))
    assert len(body["data"]) == 96
    assert client.requests == 3 and server.count("/intensity/") == 3
    assert len(sleep.calls) == 2 and all(0 < delay <= 0.04 for delay in sleep.calls)
    assert client.breaker.state == "closed"


def test_retry_after_seconds_is_the_wait(server):
    server.fail("/intensity/", 429, times=1, headers={"Retry-After": "1"})
    sleep = RecordingSleep()
    client = make_client(server.base_url, sleep=sleep)
    run(client.get_json(PATH))
    assert sleep.calls == [1.0] and client.delays == [1.0]
    assert server.count("/intensity/") == 2


def test_retry_after_http_date_and_cap(server):
    server.fail("/intensity/", 503, times=1, headers={"Retry-After": formatdate(time.time() + 20, usegmt=True)})
    server.fail("/intensity/", 429, times=1, headers={"Retry-After": "3600"})
    sleep = RecordingSleep()
    client = make_client(server.base_url, sleep=sleep, max_backoff_s=25.0)
    run(client.get_json(PATH))
    assert 10 < sleep.calls[0] <= 20  # the date, as seconds from now
    assert sleep.calls[1] == 25.0  # capped by max_backoff_s


@pytest.mark.parametrize(("value", "expected"), [("7", 7.0), ("0", 0.0), ("soon", None), ("", None), (None, None),
                                                  ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_parsing(value, expected):
    assert retry_after_s(value) == expected


def test_retries_exhausted_is_a_retryable_error(server):
    server.fail("/intensity/", 502, times=None)
    client = make_client(server.base_url)
    with pytest.raises(SignalServiceError) as caught:
        run(client.get_json(PATH))
    error = caught.value
    assert error.retryable and error.status == 502 and error.service == "test"
    assert PATH in str(error) and "502" in str(error) and "3 attempts" in str(error)
    assert server.count("/intensity/") == 3


def test_slow_answer_times_out_and_is_retried(server):
    server.slow("/intensity/", 1.5, times=None)
    client = make_client(server.base_url, timeout_s=0.2, attempts=2)
    with pytest.raises(SignalServiceError) as caught:
        run(client.get_json(PATH))
    assert caught.value.retryable and caught.value.status is None and "timed out" in str(caught.value)
    assert server.count("/intensity/") == 2 and client.requests == 2


def test_connection_refused_is_retried():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}", attempts=2)
    with pytest.raises(SignalServiceError) as caught:
        run(client.get_json(PATH))
    assert caught.value.retryable and caught.value.status is None and client.requests == 2


def test_malformed_json_is_bad_response_and_not_retried(server):
    server.malformed("/intensity/")
    client = make_client(server.base_url)
    with pytest.raises(BadResponse, match="not valid JSON"):
        run(client.get_json(PATH))
    assert server.count("/intensity/") == 1


@pytest.mark.parametrize(("status", "error_type"), [(401, AuthError), (403, AuthError), (404, SignalServiceError),
                                                    (400, SignalServiceError)])
def test_client_errors_are_not_retried(server, status, error_type):
    server.fail("/intensity/", status, times=None)
    client = make_client(server.base_url)
    with pytest.raises(error_type) as caught:
        run(client.get_json(PATH))
    assert type(caught.value) is error_type and caught.value.status == status and not caught.value.retryable
    assert server.count("/intensity/") == 1


def test_status_decides_not_the_body(server):
    # a 200 whose text reads like an error is data; a 503 whose text reads like success is retried
    server.fail("/intensity/", 503, times=1, body={"message": "OK, all fine"})
    server.fail("/intensity/", 200, times=1, body={"error": "Internal error", "data": []})
    client = make_client(server.base_url)
    assert run(client.get_json(PATH)) == {"error": "Internal error", "data": []}


def test_errors_never_hold_secrets_or_html(server):
    secret = "s3cr3t-value-in-body"
    server.fail("/intensity/", 400, times=1, body={"message": f"bad key {secret}"})
    server.fail("/intensity/", 500, times=None, body="<html><body>nginx oops</body></html>")
    client = make_client(server.base_url, secrets=(secret,), attempts=1)
    with pytest.raises(SignalServiceError) as first:
        run(client.get_json(PATH))
    assert secret not in str(first.value) and "***" in str(first.value)
    with pytest.raises(SignalServiceError) as second:
        run(client.get_json(PATH))
    assert "nginx" not in str(second.value) and "<html" not in str(second.value)


def test_circuit_opens_fails_fast_then_half_opens(server):
    clock = FakeClock()
    server.fail("/intensity/", 503, times=None)
    client = make_client(server.base_url, clock=clock, attempts=2, breaker_failures=2, breaker_reset_s=60.0)
    for _ in range(2):
        with pytest.raises(SignalServiceError):
            run(client.get_json(PATH))
    assert client.breaker.state == "open" and server.count("/intensity/") == 4
    with pytest.raises(CircuitOpenError) as caught:
        run(client.get_json(PATH))
    assert caught.value.retryable and server.count("/intensity/") == 4 and client.requests == 4
    clock.advance(59)
    with pytest.raises(CircuitOpenError):
        run(client.get_json(PATH))
    assert server.count("/intensity/") == 4
    server.clear_faults()
    clock.advance(1)
    assert client.breaker.state == "half-open"
    assert len(run(client.get_json(PATH))["data"]) == 96
    assert client.breaker.state == "closed" and server.count("/intensity/") == 5


def test_circuit_is_shared_by_clients_of_the_same_service_and_url(server):
    clock = FakeClock()
    server.fail("/intensity/", 500, times=None)
    first = make_client(server.base_url, clock=clock, attempts=1, breaker_failures=1)
    with pytest.raises(SignalServiceError):
        run(first.get_json(PATH))
    second = make_client(server.base_url, clock=clock, attempts=1, breaker_failures=1)
    with pytest.raises(CircuitOpenError):
        run(second.get_json(PATH))
    assert server.count("/intensity/") == 1
    assert breaker_for(f"test {server.base_url}") is first.breaker is second.breaker
    assert breaker_for("other http://x") is not first.breaker


def test_deliberate_client_errors_do_not_open_the_circuit(server):
    server.fail("/intensity/", 404, times=None)
    client = make_client(server.base_url, attempts=1, breaker_failures=2)
    for _ in range(4):
        with pytest.raises(SignalServiceError):
            run(client.get_json(PATH))
    assert client.breaker.state == "closed" and server.count("/intensity/") == 4


def test_breaker_half_open_lets_one_trial_through():
    clock = FakeClock()
    breaker = CircuitBreaker("k", failures=3, reset_s=10, clock=clock)
    for _ in range(3):
        breaker.before_call("svc")
        breaker.record_failure()
    with pytest.raises(CircuitOpenError):
        breaker.before_call("svc")
    clock.advance(10)
    breaker.before_call("svc")  # the trial
    with pytest.raises(CircuitOpenError, match="trial"):
        breaker.before_call("svc")
    breaker.record_failure()  # the trial failed: open again, for another reset_s
    assert breaker.state == "open"
    clock.advance(9.9)
    with pytest.raises(CircuitOpenError):
        breaker.before_call("svc")
    clock.advance(0.1)
    breaker.before_call("svc")
    breaker.release()  # the trial was cancelled: the next call may try
    breaker.before_call("svc")
    breaker.record_success()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0


def test_breaker_counts_from_many_threads():
    breaker = CircuitBreaker("k", failures=10**9, reset_s=1)
    threads = [threading.Thread(target=lambda: [breaker.record_failure() for _ in range(2000)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.consecutive_failures == 16000 and breaker.state == "closed"


def test_cancelled_call_releases_the_half_open_trial(server):
    clock = FakeClock()
    client = make_client(server.base_url, clock=clock, attempts=1, breaker_failures=1, breaker_reset_s=5)
    client.breaker.record_failure()
    clock.advance(5)
    server.slow("/intensity/", 1.0)

    async def cancel_the_trial():
        task = asyncio.ensure_future(client.get_json(PATH))
        while server.count("/intensity/") == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await client.get_json(PATH)  # the next call is the trial, not refused

    assert len(run(cancel_the_trial())["data"]) == 96
    assert client.breaker.state == "closed"


def test_run_sync_from_sync_code_one_loop_after_another(server):
    client = make_client(server.base_url)

    async def get_then_close():
        try:
            return await client.get_json(PATH)
        finally:
            await client.aclose()

    assert len(run_sync(get_then_close())["data"]) == 96
    assert len(run_sync(get_then_close())["data"]) == 96  # a new loop, a new pool: the client still works
    assert client.requests == 2


def test_run_sync_refuses_inside_a_running_loop():
    async def inner() -> int:
        return 1

    async def outer():
        coro = inner()
        with pytest.raises(RuntimeError, match="running event loop"):
            run_sync(coro)
        return inspect.getcoroutinestate(coro)

    assert asyncio.run(outer()) == inspect.CORO_CLOSED
