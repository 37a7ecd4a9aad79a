"""One service's HTTP: timeouts, retries (tenacity) honouring ``Retry-After``, a circuit breaker shared per service.

No Airflow here. Secrets are constructor arguments of the clients; they are never put in an error message or
a log line (``ServiceClient`` scrubs the ones it was given from every message it builds, and never quotes a
header or an HTML body).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Self, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from airflow_carbon.signals.services.errors import AuthError, BadResponse, CircuitOpenError, SignalServiceError

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpPolicy:
    """Timeouts, retries and the circuit breaker of one client.

    :param timeout_s: connect/read/write/pool timeout of every request.
    :param attempts: tries per call (1 = no retry) for 429, 500/502/503/504, timeouts and transport errors.
    :param backoff_s: first wait between tries, doubled each time (with jitter), at most ``max_backoff_s``.
    :param max_backoff_s: cap of any wait, ``Retry-After`` included.
    :param breaker_failures: consecutive failed calls (after retries) that open the circuit.
    :param breaker_reset_s: how long an open circuit fails fast before one trial call goes through.
    """

    timeout_s: float = 10.0
    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    breaker_failures: int = 5
    breaker_reset_s: float = 60.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.attempts < 1 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError(f"invalid HttpPolicy {self}")
        if self.breaker_failures < 1 or self.breaker_reset_s < 0:
            raise ValueError(f"invalid HttpPolicy {self}")


DEFAULT_POLICY = HttpPolicy()


class CircuitBreaker:
    """Fails fast after ``failures`` consecutive failed calls, for ``reset_s``; then lets one trial call through.

    States: ``closed`` (calls go through), ``open`` (calls raise ``CircuitOpenError`` without a request),
    ``half-open`` (one trial call is in flight; others fail fast; its success closes the circuit, its
    failure opens it again). A ``threading.Lock`` guards the state and is never held across an ``await``,
    so one breaker serves threads and event loops alike.
    """

    def __init__(self, key: str, *, failures: int = 5, reset_s: float = 60.0, clock: Clock = time.monotonic):
        self.key, self.failures, self.reset_s, self.clock = key, failures, reset_s, clock
        self._lock = threading.Lock()
        self._state = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == "open" and self.clock() - self._opened_at >= self.reset_s:
                return "half-open"
            return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive

    def before_call(self, service: str) -> None:
        """Raises ``CircuitOpenError`` unless a call may go through now."""
        with self._lock:
            if self._state == "closed":
                return
            if self._state == "open":
                waited = self.clock() - self._opened_at
                if waited < self.reset_s:
                    raise CircuitOpenError(
                        f"{service}: circuit open after {self._consecutive} consecutive failures; "
                        f"no request sent, next try in {self.reset_s - waited:.0f} s",
                        service=service, retryable=True)
                self._state = "half-open"
            if self._trial:
                raise CircuitOpenError(f"{service}: circuit half-open, a trial call is in flight; no request sent",
                                       service=service, retryable=True)
            self._trial = True

    def record_success(self) -> None:
        with self._lock:
            self._state, self._consecutive, self._trial = "closed", 0, False

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._state == "half-open" or self._consecutive >= self.failures:
                if self._state != "open":
                    log.warning("circuit %s opens for %.0f s after %d consecutive failures",
                                self.key, self.reset_s, self._consecutive)
                self._state, self._opened_at = "open", self.clock()
            self._trial = False

    def release(self) -> None:
        """A call ended without a verdict (cancelled): let the next one be the trial."""
        with self._lock:
            self._trial = False


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(key: str, policy: HttpPolicy = DEFAULT_POLICY, clock: Clock = time.monotonic) -> CircuitBreaker:
    """The process-wide breaker of ``key`` (service + base URL): every client of a service shares it.

    The first caller's policy and clock make the breaker; later callers get the same one.
    """
    with _breakers_lock:
        if key not in _breakers:
            _breakers[key] = CircuitBreaker(key, failures=policy.breaker_failures, reset_s=policy.breaker_reset_s,
                                            clock=clock)
        return _breakers[key]


def reset_breakers() -> None:
    """Forget every breaker (tests)."""
    with _breakers_lock:
        _breakers.clear()


def retry_after_s(value: str | None, *, now: Clock = time.time) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _short_reason(response: httpx.Response) -> str:
    """A short reason from a JSON error body (``message``, ``error``, ``error.message``), for people only.

    Decisions are made on the status code, never on this text; HTML and other bodies are not quoted.
    """
    if "json" not in response.headers.get("content-type", ""):
        return response.reason_phrase or ""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or ""
    reason: Any = None
    if isinstance(body, dict):
        reason = body.get("message") or body.get("error")
        if isinstance(reason, dict):
            reason = reason.get("message")
    if not isinstance(reason, str):
        return response.reason_phrase or ""
    reason = " ".join(reason.split())
    return reason[:160] + ("..." if len(reason) > 160 else "")


class _TryAgain(Exception):
    """One try failed in a way another may not: the error to raise once the tries are spent, and the wait asked."""

    def __init__(self, error: SignalServiceError, retry_after: float | None = None):
        super().__init__(error.message)
        self.error, self.retry_after = error, retry_after


class ServiceClient:
    """One service's HTTP: a single ``httpx.AsyncClient``, timeouts, retries with backoff, a circuit breaker.

    :param service: the service's name in errors and logs.
    :param base_url: scheme and host (and an optional path prefix).
    :param policy: timeouts, retries, breaker thresholds.
    :param clock: monotonic seconds, for the breaker (tests pass a fake one).
    :param sleep: the wait between tries (tests pass one that records instead of sleeping).
    :param secrets: strings scrubbed from every error message (passwords, tokens).

    ``requests`` counts the HTTP requests sent; ``delays`` lists every wait between tries.
    """

    def __init__(self, service: str, base_url: str, *, policy: HttpPolicy = DEFAULT_POLICY,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep, secrets: Iterable[str | None] = ()):
        self.service, self.base_url, self.policy, self._sleep = service, base_url.rstrip("/"), policy, sleep
        self.breaker = breaker_for(f"{service} {self.base_url}", policy, clock)
        self._secrets = {secret for secret in secrets if secret}
        self._backoff = wait_exponential(multiplier=policy.backoff_s, max=policy.max_backoff_s)
        self.requests = 0
        self.delays: list[float] = []
        self._http = self._new_http()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=self.policy.timeout_s, trust_env=False)

    def add_secret(self, secret: str | None) -> None:
        if secret:
            self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _http_for_this_loop(self) -> httpx.AsyncClient:
        """The one AsyncClient; a new one only after ``aclose`` or on another event loop than the last one.

        Pooled connections belong to the loop that opened them: code that drives one client from several
        loops (``run_sync`` per call) should ``aclose`` it before its loop ends, else those sockets leak.
        """
        loop = asyncio.get_running_loop()
        if self._http.is_closed or (self._loop is not None and self._loop is not loop):
            self._http = self._new_http()
        self._loop = loop
        return self._http

    async def aclose(self) -> None:
        """Release the connections (on the loop that used them); a later call opens a new pool."""
        if self._loop is None or self._loop is asyncio.get_running_loop():
            await self._http.aclose()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _error(self, cls: type[SignalServiceError], path: str, reason: str, *, status: int | None = None,
               retryable: bool = False) -> SignalServiceError:
        where = f"GET {path}" + (f" -> HTTP {status}" if status is not None else "")
        message = self.scrub(f"{self.service}: {where}: {reason}" if reason else f"{self.service}: {where}")
        if cls is BadResponse:
            return BadResponse(message, service=self.service, path=path, status=status)
        return cls(message, service=self.service, status=status, retryable=retryable, path=path)

    def _wait(self, state: RetryCallState) -> float:
        """The service's ``Retry-After`` (capped), else exponential backoff with jitter."""
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _TryAgain) and failure.retry_after is not None:
            return min(failure.retry_after, self.policy.max_backoff_s)
        return self._backoff(state) * random.uniform(0.5, 1.0)

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None,
                       headers: Mapping[str, str] | None = None, *, auth: httpx.Auth | tuple[str, str] | None = None,
                       errors: Mapping[int, type[SignalServiceError]] | None = None) -> Any:
        """GET ``path`` and decode its JSON, or raise a ``SignalServiceError`` saying what failed.

        :param errors: status -> error class for non-retryable answers (e.g. ``{400: ScopeError}``).
        :raises CircuitOpenError: without a request, when the service failed too often lately.
        :raises AuthError: on 401/403 (not retried here).
        :raises BadResponse: on a body that is not JSON.
        :raises SignalServiceError: ``retryable`` after the tries are spent on 429/5xx/timeouts/transport
            errors; not retryable on any other 4xx.
        """
        self.breaker.before_call(self.service)
        try:
            result = await self._get_json(path, params, headers, auth, errors or {})
        except SignalServiceError as error:
            # the service is down or talking nonsense -> failure; a deliberate 4xx means it is up.
            if error.retryable or isinstance(error, BadResponse):
                self.breaker.record_failure()
            else:
                self.breaker.record_success()
            raise
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.record_success()
        return result

    async def _get_json(self, path: str, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None,
                        auth: httpx.Auth | tuple[str, str] | None,
                        errors: Mapping[int, type[SignalServiceError]]) -> Any:
        def note(state: RetryCallState) -> None:
            delay = state.upcoming_sleep
            self.delays.append(delay)
            failure = state.outcome.exception() if state.outcome else None
            log.info("%s: retrying GET %s in %.2f s (%s)", self.service, path, delay, failure)

        retrying = AsyncRetrying(stop=stop_after_attempt(self.policy.attempts), wait=self._wait,
                                 retry=retry_if_exception_type(_TryAgain), sleep=self._sleep, before_sleep=note,
                                 reraise=True)
        try:
            return await retrying(self._try, self._http_for_this_loop(), path, params, headers, auth, errors)
        except _TryAgain as spent:
            last = spent.error
        if self.policy.attempts > 1:
            last.message = f"{last.message} (after {self.policy.attempts} attempts)"
            last.args = (last.message,)
        raise last

    async def _try(self, http: httpx.AsyncClient, path: str, params: Mapping[str, Any] | None,
                   headers: Mapping[str, str] | None, auth: httpx.Auth | tuple[str, str] | None,
                   errors: Mapping[int, type[SignalServiceError]]) -> Any:
        """One request: its JSON, a ``SignalServiceError`` that ends the call, or ``_TryAgain``."""
        self.requests += 1
        try:
            response = await http.get(path, params=params, headers=headers, auth=auth)
        except httpx.TimeoutException:
            raise _TryAgain(self._error(SignalServiceError, path, f"timed out after {self.policy.timeout_s:g} s",
                                        retryable=True)) from None
        except httpx.TransportError as error:
            raise _TryAgain(self._error(SignalServiceError, path, f"transport error ({type(error).__name__})",
                                        retryable=True)) from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                return json.loads(response.content)
            except ValueError:
                raise self._error(BadResponse, path, "the body is not valid JSON", status=status) from None
        reason = _short_reason(response)
        if status in RETRY_STATUSES:
            raise _TryAgain(self._error(SignalServiceError, path, reason, status=status, retryable=True),
                            retry_after_s(response.headers.get("retry-after")))
        if status in errors:
            raise self._error(errors[status], path, reason, status=status)
        if status in (401, 403):
            raise self._error(AuthError, path, reason or "credentials refused", status=status)
        raise self._error(SignalServiceError, path, reason, status=status)


class ServiceApi:
    """What the three service clients share around their ``ServiceClient``: a request count and closing."""

    http: ServiceClient

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.http.base_url!r})"

    @property
    def requests(self) -> int:
        return self.http.requests

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code (hooks, CLI, a task on a worker).

    :raises RuntimeError: when called from a running event loop, where it would block the loop: await instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError("run_sync() was called from a running event loop; await the coroutine instead "
                       "(blocking here would stall every other task on the loop)")
