"""What every carbon-signal web service client shares: errors, retries, a circuit breaker, shape checks.

No Airflow here: httpx, numpy and the standard library only. Secrets are constructor arguments of
the clients; they are never put in an error message or a log line (``ServiceClient`` scrubs the
ones it was given from every message it builds, and never quotes a header or an HTML body).
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
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

import httpx
import numpy as np

from airflow_carbon.signals.series import INTENSITY_UNIT, Kind, Series

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


# --------------------------------------------------------------------------------------------- errors
class SignalServiceError(Exception):
    """A carbon-signal service did not give a usable answer.

    :param message: says what failed: service, endpoint path, status, a short reason. Never a secret.
    :param service: ``watttime``, ``electricitymaps``, ``ukgrid``.
    :param status: the HTTP status, None when there was no answer (timeout, connection refused).
    :param retryable: trying again later may succeed (timeouts, 429, 5xx, an open circuit).
    """

    def __init__(self, message: str, *, service: str, status: int | None = None, retryable: bool = False,
                 path: str | None = None):
        super().__init__(message)
        self.message, self.service, self.status, self.retryable, self.path = message, service, status, retryable, path

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only arguments: pickle by state (process pools, logs)
        return _restore_error, (type(self), self.args, self.__dict__)


def _restore_error(cls: type[SignalServiceError], args: tuple[Any, ...], state: dict[str, Any]) -> SignalServiceError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class AuthError(SignalServiceError):
    """Credentials refused (HTTP 401/403)."""


class ScopeError(SignalServiceError):
    """The account may not read this region or signal (WattTime 400 "Invalid scope", no coverage)."""


class ForecastNotAvailable(SignalServiceError):
    """The account's plan has no forecast access (Electricity Maps free tier)."""


class CircuitOpenError(SignalServiceError):
    """The service failed too often lately; no request was sent."""


class BadResponse(SignalServiceError):
    """An answer that is not what the docs say: malformed JSON, a wrong shape, unexpected units.

    :param field: the offending field, e.g. ``meta.units`` or ``data[3].value``.
    """

    def __init__(self, message: str, *, service: str, path: str | None = None, field: str | None = None,
                 status: int | None = None):
        super().__init__(message, service=service, status=status, retryable=False, path=path)
        self.field = field


# --------------------------------------------------------------------------------------------- policy
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


# --------------------------------------------------------------------------------------------- breaker
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


# --------------------------------------------------------------------------------------------- client
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

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        policy = self.policy
        if response is not None and (after := retry_after_s(response.headers.get("retry-after"))) is not None:
            return min(after, policy.max_backoff_s)
        return min(policy.max_backoff_s, policy.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)

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
        http = self._http_for_this_loop()
        last: SignalServiceError | None = None
        for attempt in range(self.policy.attempts):
            response: httpx.Response | None = None
            self.requests += 1
            try:
                response = await http.get(path, params=params, headers=headers, auth=auth)
            except httpx.TimeoutException:
                last = self._error(SignalServiceError, path, f"timed out after {self.policy.timeout_s:g} s",
                                   retryable=True)
            except httpx.TransportError as error:
                last = self._error(SignalServiceError, path, f"transport error ({type(error).__name__})",
                                   retryable=True)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        return json.loads(response.content)
                    except ValueError:
                        raise self._error(BadResponse, path, "the body is not valid JSON", status=status) from None
                reason = _short_reason(response)
                if status in RETRY_STATUSES:
                    last = self._error(SignalServiceError, path, reason, status=status, retryable=True)
                elif status in errors:
                    raise self._error(errors[status], path, reason, status=status)
                elif status in (401, 403):
                    raise self._error(AuthError, path, reason or "credentials refused", status=status)
                else:
                    raise self._error(SignalServiceError, path, reason, status=status)
            if attempt + 1 < self.policy.attempts:
                delay = self._backoff(attempt, response)
                self.delays.append(delay)
                log.info("%s: retrying GET %s in %.2f s (%s)", self.service, path, delay, last)
                await self._sleep(delay)
        assert last is not None
        if self.policy.attempts > 1:
            last.message = f"{last.message} (after {self.policy.attempts} attempts)"
            last.args = (last.message,)
        raise last


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


# --------------------------------------------------------------------------------------------- shapes
class Shape:
    """Checks an answer's shape; every failure is a ``BadResponse`` naming the field."""

    def __init__(self, service: str, path: str):
        self.service, self.path = service, path

    def fail(self, field: str, reason: str) -> BadResponse:
        return BadResponse(f"{self.service}: GET {self.path}: {field} {reason}", service=self.service,
                           path=self.path, field=field)

    def obj(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, f"should be an object, got {type(value).__name__}")
        return value

    def items(self, value: Any, field: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(field, f"should be a list, got {type(value).__name__}")
        return value

    def key(self, mapping: dict[str, Any], key: str, field: str) -> Any:
        if key not in mapping:
            raise self.fail(f"{field}.{key}" if field else key, "is missing")
        return mapping[key]

    def text(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(field, f"should be a non-empty string, got {value!r:.40}")
        return value

    def instant(self, value: Any, field: str) -> int:
        """Epoch seconds of an ISO 8601 time with a timezone (``Z``, ``+00:00``, ``.000Z``)."""
        if not isinstance(value, str):
            raise self.fail(field, f"should be an ISO 8601 time, got {value!r:.40}")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self.fail(field, f"is not an ISO 8601 time: {value!r:.40}") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise self.fail(field, f"has no timezone: {value!r:.40}")
        return int(parsed.timestamp())

    def number(self, value: Any, field: str) -> float:
        """A finite, non-negative number."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(field, f"should be a number, got {value!r:.40}")
        if not math.isfinite(value) or value < 0:
            raise self.fail(field, f"should be finite and not negative, got {value!r}")
        return float(value)

    def flag(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(field, f"should be true or false, got {value!r:.40}")
        return value


@dataclass
class Points:
    """Instants (epoch s) and values read from an answer, with the field name of each instant for errors."""

    starts: list[int]
    values: list[float]
    fields: list[str]

    @classmethod
    def empty(cls) -> Points:
        return cls([], [], [])

    def add(self, start: int, value: float, field: str) -> None:
        self.starts.append(start)
        self.values.append(value)
        self.fields.append(field)

    def extend_unique(self, other: Points) -> None:
        """Append ``other``'s points at instants not already held (chunks may share a boundary)."""
        seen = set(self.starts)
        for start, value, field in zip(other.starts, other.values, other.fields, strict=True):
            if start not in seen:
                seen.add(start)
                self.add(start, value, field)


def build_series(points: Points, shape: Shape, *, period_s: int | None, region: str, kind: Kind, source: str,
                 estimated: bool = False, allow_empty: bool = False) -> Series:
    """An evenly spaced series from ``points``, or a ``BadResponse`` naming the first point out of step.

    :param period_s: the period each value holds; None infers it from the first two points.
    """
    if not points.starts and not allow_empty:
        raise shape.fail(points.fields[0] if points.fields else "data", "is empty: no points in the answer")
    order = sorted(range(len(points.starts)), key=points.starts.__getitem__)
    starts = [points.starts[i] for i in order]
    values = [points.values[i] for i in order]
    fields = [points.fields[i] for i in order]
    if period_s is None:
        if len(starts) < 2:
            raise shape.fail(fields[0] if fields else "data", "is a single point whose period is unknown")
        period_s = starts[1] - starts[0]
    if period_s <= 0:
        raise shape.fail(fields[1] if len(fields) > 1 else "data", "repeats an instant")
    for i in range(1, len(starts)):
        step = starts[i] - starts[i - 1]
        if step != period_s:
            what = "repeats an instant" if step == 0 else (
                f"is {step} s after the previous point, expected {period_s} s"
                + (" (a gap)" if step > period_s else ""))
            raise shape.fail(fields[i], what)
    return Series(np.asarray(starts, dtype=np.int64), np.asarray(values, dtype=np.float64), period_s, region,
                  INTENSITY_UNIT, kind, source, False, estimated)


# --------------------------------------------------------------------------------------------- time
def aware_utc(instant: datetime, name: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} {instant.isoformat()} has no timezone; pass an aware (UTC) datetime")
    return instant.astimezone(UTC)


def chunks(start: datetime, end: datetime, most: timedelta) -> list[tuple[datetime, datetime]]:
    """``[start, end]`` cut into consecutive pieces of at most ``most`` (each piece's end is the next's start)."""
    start, end = aware_utc(start, "start"), aware_utc(end, "end")
    if end <= start:
        raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    pieces = []
    while start < end:
        stop = min(start + most, end)
        pieces.append((start, stop))
        start = stop
    return pieces


def floor_epoch(epoch_s: float, period_s: int) -> int:
    return int(epoch_s // period_s * period_s)


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
