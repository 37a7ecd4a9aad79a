"""Forecast.Solar: a PV plane's expected output for today and the next day(s), from the weather forecast.

API (https://doc.forecast.solar/api:estimate, https://doc.forecast.solar/api): ``GET /estimate/:lat/:lon/:dec/:az/:kwp``
(public: 12 calls an hour per IP), or ``/:apikey/estimate/...`` with a personal key. The answer::

    {"result": {"watts": {"2024-06-01T03:52:00+00:00": 0, "2024-06-01T04:00:00+00:00": 31, ...},
                "watt_hours_period": {...}, "watt_hours": {...}, "watt_hours_day": {"2024-06-01": 23114, ...}},
     "message": {"code": 0, "type": "success", "text": "",
                 "info": {"latitude": 52.52, "longitude": 13.4, "place": "...", "timezone": "Europe/Berlin", ...},
                 "ratelimit": {"period": 3600, "limit": 12, "remaining": 11}}}

``watts`` is the power at each instant, from sunrise to sunset of each local day, at irregular instants
(sunrise and sunset, then the plan's step). We ask for ``?time=utc``; times without an offset (the default
format, in the site's local time) are read in ``message.info.timezone``. A 429 carries
``X-Ratelimit-Retry-At`` (https://doc.forecast.solar/facing429), an ISO 8601 instant before which every
call extends the ban: a short wait is waited, a long one fails at once and no request is sent before it.

The API key sits in the URL path. It is added on the wire only (``_KeyInPath``): error messages, httpx's
request log and the circuit breaker's key see the path without it, and it is scrubbed from messages besides.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import numpy as np

from airflow_carbon.signals.series import SOLAR_UNIT, Series
from airflow_carbon.signals.services.errors import SignalServiceError
from airflow_carbon.signals.services.http import DEFAULT_POLICY, Clock, HttpPolicy, ServiceClient, Sleep
from airflow_carbon.signals.services.shapes import Shape

DEFAULT_BASE_URL = "https://api.forecast.solar"
SOURCE = "forecastsolar"
#: The series' period for the API's answers (hourly or every 15 to 30 minutes); finer points get a finer one.
PERIOD_S = 900
#: Points further apart than this have a night between them (the public plan's daytime step is 1 h).
NIGHT_GAP_S = 2 * 3600
_SAMPLE_S = 60
_API_KEY = re.compile(r"[A-Za-z0-9]+")


def plane_path(lat: float, lon: float, dec: float, az: float, kwp: float) -> str:
    """``/estimate/:lat/:lon/:dec/:az/:kwp`` for one plane; out-of-range values are a ``ValueError``.

    Latitude and longitude are sent to 4 decimals (the API's precision, about 10 m), declination and azimuth
    as whole degrees (azimuth -180..180: -90 east, 0 south, 90 west).
    """
    for name, value, low, high in (("latitude", lat, -90, 90), ("longitude", lon, -180, 180),
                                   ("declination", dec, 0, 90), ("azimuth", az, -180, 180)):
        if not isinstance(value, int | float) or not low <= value <= high:
            raise ValueError(f"{SOURCE}: {name} must be a number from {low} to {high}, got {value!r}")
    if not isinstance(kwp, int | float) or not math.isfinite(kwp) or kwp <= 0:
        raise ValueError(f"{SOURCE}: kwp must be a number above 0 (the modules' peak power in kW), got {kwp!r}")
    return f"/estimate/{lat:.4f}/{lon:.4f}/{round(dec)}/{round(az)}/{kwp:g}"


def _instant_s(text: str, zone: ZoneInfo, shape: Shape, field: str) -> int:
    """Epoch seconds of a ``watts`` key: epoch seconds, ISO 8601 with an offset, or local time in ``zone``."""
    if text.isdigit():
        return int(text)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise shape.fail(field, "is not a time (ISO 8601 or epoch seconds)") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=zone)
    return int(instant.timestamp())


def period_for(instants_s: np.ndarray) -> int:
    """The grid a forecast is resampled on: ``PERIOD_S``, or finer (5 or 1 minute) when the points are finer.

    The public plan answers hourly, the paid ones every 15 to 30 minutes: their curve is kept at 15 minutes.
    The typical step counts (the median), not the shortest: sunrise and sunset fall between the hours.
    """
    gaps_s = np.diff(np.unique(instants_s))
    step_s = float(np.median(gaps_s)) if gaps_s.size else PERIOD_S
    return max((period_s for period_s in (_SAMPLE_S, 300, PERIOD_S) if period_s <= step_s), default=_SAMPLE_S)


def even_power_kw(instants_s: np.ndarray, power_kw: np.ndarray, zone: ZoneInfo,
                  period_s: int = PERIOD_S) -> tuple[np.ndarray, np.ndarray]:
    """Irregular power points onto a grid of ``period_s``: the period starts and each period's mean kW.

    Points at most ``NIGHT_GAP_S`` apart are joined by a straight line (the power between two readings), and
    each period's value is that line's time-weighted mean over the period, sampled every minute at the
    minutes' midpoints (exact for the API's whole-minute instants). Outside the points, and across a longer
    gap, it is night: 0 kW. The grid spans the local days the points fall on, midnight to midnight in
    ``zone``, so the hours before the first sunrise and after the last sunset are known to be 0 kW.
    """
    order = np.argsort(instants_s, kind="stable")
    at_s, kw = instants_s[order].astype(np.int64), power_kw[order].astype(np.float64)
    first_day = datetime.fromtimestamp(int(at_s[0]), zone).date()
    last_day = datetime.fromtimestamp(int(at_s[-1]), zone).date()
    begin_s = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone).timestamp())
    after = last_day + timedelta(days=1)
    end_s = int(datetime(after.year, after.month, after.day, tzinfo=zone).timestamp())
    begin_s, end_s = begin_s // period_s * period_s, -(-end_s // period_s) * period_s
    samples_s = begin_s + _SAMPLE_S // 2 + _SAMPLE_S * np.arange((end_s - begin_s) // _SAMPLE_S, dtype=np.int64)
    right = np.searchsorted(at_s, samples_s, side="right")  # at_s[right - 1] <= sample < at_s[right]
    inside = (right > 0) & (right < len(at_s))
    left, right = np.clip(right - 1, 0, len(at_s) - 1), np.clip(right, 0, len(at_s) - 1)
    inside &= (at_s[right] - at_s[left]) <= NIGHT_GAP_S
    values = np.where(inside, np.interp(samples_s, at_s, kw), 0.0)
    per_period = period_s // _SAMPLE_S
    starts_s = begin_s + period_s * np.arange((end_s - begin_s) // period_s, dtype=np.int64)
    return starts_s, values.reshape(-1, per_period).mean(axis=1)


def parse_estimate(body: Any, path: str, region: str) -> Series:
    """The ``estimate`` answer as an evenly spaced kW forecast (see ``even_power_kw``), or a ``BadResponse``
    naming the field that is not what the docs say."""
    shape = Shape(SOURCE, path)
    body = shape.obj(body, "body")
    result = shape.obj(shape.key(body, "result", ""), "result")
    watts = shape.obj(shape.key(result, "watts", "result"), "result.watts")
    message = shape.obj(shape.key(body, "message", ""), "message")
    info = shape.obj(shape.key(message, "info", "message"), "message.info")
    zone_name = shape.text(shape.key(info, "timezone", "message.info"), "message.info.timezone")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise shape.fail("message.info.timezone", f"is not a known time zone: {zone_name!r:.40}") from None
    if not watts:
        raise shape.fail("result.watts", "is empty: no points in the answer")
    instants_s = np.empty(len(watts), dtype=np.int64)
    power_kw = np.empty(len(watts), dtype=np.float64)
    for i, (key, value) in enumerate(watts.items()):
        field = f"result.watts[{key!r:.40}]"
        instants_s[i] = _instant_s(key, zone, shape, field)
        power_kw[i] = shape.number(value, field) / 1000.0
    if len(np.unique(instants_s)) != len(instants_s):
        raise shape.fail("result.watts", "names one instant twice")
    period_s = period_for(instants_s)
    starts_s, values = even_power_kw(instants_s, power_kw, zone, period_s)
    return Series(starts_s, values, period_s, region, SOLAR_UNIT, "forecast", SOURCE)


def retry_at_s(value: str | None) -> float | None:
    """``X-Ratelimit-Retry-At`` (ISO 8601; UTC when it has no offset) as epoch seconds; None when absent or bad."""
    if not value:
        return None
    try:
        instant = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).timestamp()


class _KeyInPath(httpx.AsyncBaseTransport):
    """Sends each request with the API key inserted after the base URL's path, leaving httpx's own request alone."""

    def __init__(self, key: str | None, prefix: str):
        self._key, self._prefix, self._inner = key, prefix.rstrip("/"), httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._key:
            return await self._inner.handle_async_request(request)
        rest = request.url.path[len(self._prefix):]
        keyed = httpx.Request(request.method, request.url.copy_with(path=f"{self._prefix}/{self._key}{rest}"),
                              headers=request.headers, stream=request.stream, extensions=request.extensions)
        return await self._inner.handle_async_request(keyed)

    async def aclose(self) -> None:
        await self._inner.aclose()


class ForecastSolarClient(ServiceClient):
    """Async client of Forecast.Solar's ``estimate``: one PV plane's forecast as kW.

    :param api_key: a personal key (letters and digits), or None for the public API.
    :param base_url: override for tests or a proxy.
    :param policy: timeouts, retries, circuit breaker; a 429 asking to wait longer than ``max_backoff_s``
        is not retried.
    :param clock: monotonic seconds, for the breaker.
    :param sleep: the wait between retries.
    :param wall: epoch seconds now, to read the ``X-Ratelimit-Retry-At`` instant against.

    ``ratelimit`` holds the last answer's ``message.ratelimit`` (calls left in the period).
    """

    def __init__(self, api_key: str | None = None, *, base_url: str = DEFAULT_BASE_URL,
                 policy: HttpPolicy = DEFAULT_POLICY, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
                 wall: Clock = time.time):
        if api_key and not _API_KEY.fullmatch(api_key):
            raise ValueError(f"{SOURCE}: the API key should be letters and digits only; check the connection's "
                             "password")
        self._api_key, self._wall = api_key or None, wall
        self._limited_until: float | None = None
        self.ratelimit: dict[str, Any] = {}
        super().__init__(SOURCE, base_url, policy=policy, clock=clock, sleep=sleep, secrets=[api_key])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, keyed={self._api_key is not None})"

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=self.policy.timeout_s, trust_env=False,
                                 transport=_KeyInPath(self._api_key, httpx.URL(self.base_url).path),
                                 event_hooks={"response": [self._on_rate_limit]})

    async def _on_rate_limit(self, response: httpx.Response) -> None:
        """A 429's ``X-Ratelimit-Retry-At`` becomes the ``Retry-After`` that the retries honour, or, when it is
        further off than a retry may wait, an error now: every call before it would extend the ban."""
        if response.status_code != 429:
            return
        until = retry_at_s(response.headers.get("x-ratelimit-retry-at"))
        if until is None:
            return
        self._limited_until = until
        wait_s = until - self._wall()
        if wait_s <= self.policy.max_backoff_s:
            response.headers["Retry-After"] = f"{max(wait_s, 0.0):.3f}"
            return
        raise self._error(SignalServiceError, response.request.url.path,
                          f"rate limit reached; no call before {self._until_text()}", status=429, retryable=True)

    def _until_text(self) -> str:
        return datetime.fromtimestamp(self._limited_until or 0.0, UTC).isoformat(timespec="seconds")

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None,
                       headers: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        """``ServiceClient.get_json``, but no request while a 429 told us to wait (it would extend the ban)."""
        if self._limited_until is not None and self._wall() < self._limited_until:
            raise self._error(SignalServiceError, path, f"rate limited until {self._until_text()}; no request sent",
                              retryable=True)
        return await super().get_json(path, params, headers, **kwargs)

    async def estimate(self, lat: float, lon: float, dec: float, az: float, kwp: float) -> Series:
        """One plane's output in kW, every ``PERIOD_S`` over the local days the answer covers (today and the
        next day(s), by plan), 0 kW at night; region ``"<lat>,<lon>"``."""
        path = plane_path(lat, lon, dec, az, kwp)
        body = await self.get_json(path, {"time": "utc"}, {"Accept": "application/json"})
        message = body.get("message") if isinstance(body, dict) else None
        if isinstance(message, dict) and isinstance(message.get("ratelimit"), dict):
            self.ratelimit = dict(message["ratelimit"])
        return parse_estimate(body, path, f"{lat:.4f},{lon:.4f}")


__all__ = ["DEFAULT_BASE_URL", "PERIOD_S", "ForecastSolarClient", "even_power_kw", "parse_estimate", "plane_path",
           "retry_at_s"]
