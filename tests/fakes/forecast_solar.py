"""A real HTTP server on 127.0.0.1 playing Forecast.Solar's ``estimate`` (https://doc.forecast.solar/api:estimate).

    with FakeForecastSolar() as server:
        client = ForecastSolarClient(FS_API_KEY, base_url=server.base_url)
        server.sunny(start, end, kw=3.0)      # from now on, say 3 kW in [start, end) and 0 kW elsewhere
        ...
        assert server.count() == 1

Routes: ``/estimate/:lat/:lon/:dec/:az/:kwp`` (public) and ``/:apikey/estimate/...``; a key that is not
16 letters and digits is a 400, another key than ``api_key`` a 401, as the docs say. The answer covers
today and tomorrow in ``timezone`` (the site's local days), in the documented shape (``result.watts``,
``watt_hours_period``, ``watt_hours``, ``watt_hours_day``; ``message.info``, ``message.ratelimit``) with the
``X-Ratelimit-*`` headers; ``?time=`` picks the timestamps' format (``utc``, ``iso8601``, ``seconds``, or by
default local ``YYYY-MM-DD hh:mm:ss``).

Power: by default a plausible day, a sine from sunrise to sunset (``sunrise``/``sunset``, local hours) at
``clear_sky`` of the plane's kWp, with points at sunrise, every whole hour and sunset, as the public plan
answers. Once ``sunny`` windows are set, points are ``step_s`` apart over the whole of both days (the sun
is where the test says, whatever the hour it runs at), plus a point on each edge of a window and one a
second before it: ``kw`` inside a window, 0 outside every window.

Faults: ``fail`` (any status, body, headers or delay for the next ``times`` requests; ``times=None`` until
``clear_faults``), ``rate_limited`` (429 with ``X-Ratelimit-Retry-At`` some seconds on), ``slow``,
``malformed``. Every request is recorded in ``requests``, its path as sent (key included).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from tests.fakes.loopback import LoopbackServer, RecordedRequest

FS_API_KEY = "FakeFsKey0123456"
_KEY = re.compile(r"[A-Za-z0-9]{16}")
_NUMBER = r"-?\d+(?:\.\d+)?"
_ROUTE = re.compile(rf"/(?:(?P<key>[^/]+)/)?estimate/(?P<lat>{_NUMBER})/(?P<lon>{_NUMBER})/(?P<dec>{_NUMBER})/"
                    rf"(?P<az>{_NUMBER})/(?P<kwp>{_NUMBER})")


@dataclass
class Fault:
    status: int | None  # None: answer normally, after delay_s
    times: int | None  # None: until clear_faults()
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content_type: str | None = None
    retry_in_s: float | None = None  # a 429's X-Ratelimit-Retry-At, from the moment it answers


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    kw: float


def _error(status: int, text: str, **extra: Any) -> tuple[int, Any, dict[str, str]]:
    return status, {"result": None, "message": {"code": status, "type": "error", "text": text, **extra}}, {}


class FakeForecastSolar(LoopbackServer):
    """Forecast.Solar on one port. Context manager; ``start()``/``stop()`` for longer-lived use.

    :param api_key: the personal key accepted in the path (the public path needs none).
    :param timezone: the site's time zone, stated in ``message.info.timezone``.
    :param now: wall-clock seconds "today" and the rate limit's instants are taken from.
    :param sunrise: / :param sunset: local hours of the default day curve.
    :param clear_sky: the default curve's peak as a share of the plane's kWp.
    :param step_s: the points' spacing once ``sunny`` windows are set.
    :param limit: calls an hour stated in ``message.ratelimit`` (not enforced: use ``rate_limited``).
    """

    thread_name = "fake-forecast-solar"
    json_content_type = "application/json; charset=utf-8"

    def __init__(self, *, api_key: str = FS_API_KEY, timezone: str = "Europe/Berlin",
                 now: Callable[[], float] = time.time, sunrise: float = 5.2, sunset: float = 21.45,
                 clear_sky: float = 0.8, step_s: int = 900, limit: int = 12):
        self.api_key, self.timezone, self.now = api_key, timezone, now
        self.sunrise, self.sunset, self.clear_sky, self.step_s, self.limit = sunrise, sunset, clear_sky, step_s, limit
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._windows: list[Window] = []
        self._anchored: tuple[float, float, float] | None = None
        self._anchored_window: tuple[float, float] | None = None

    # ------------------------------------------------------------------------------------------ inspection
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, path_part: str = "/estimate/") -> int:
        """How many requests had ``path_part`` in their path."""
        return sum(path_part in request.path for request in self.requests)

    # ------------------------------------------------------------------------------------------ the sun
    def sunny(self, start: datetime | float, end: datetime | float, kw: float) -> None:
        """Report ``kw`` (the whole site's kW) at points in ``[start, end)``; points outside every window say 0."""
        start_s = start.timestamp() if isinstance(start, datetime) else float(start)
        end_s = end.timestamp() if isinstance(end, datetime) else float(end)
        if end_s <= start_s or kw < 0:
            raise ValueError(f"a window needs start < end and kw >= 0, got {start}, {end}, {kw}")
        with self._lock:
            self._windows.append(Window(start_s, end_s, kw))

    def sunny_after_first_request(self, delay_s: float, duration_s: float, kw: float) -> None:
        """A window that opens ``delay_s`` after the first estimate request (on a whole minute, the points' grid),
        so a test's sun is anchored to the first decision of the task that asks, not to when the test began."""
        with self._lock:
            self._anchored = (delay_s, duration_s, kw)

    def sun_window(self) -> tuple[float, float] | None:
        """The window ``sunny_after_first_request`` opened (epoch seconds), or None before the first request."""
        with self._lock:
            return self._anchored_window

    def _anchor(self) -> None:
        with self._lock:
            if self._anchored is None or self._anchored_window is not None:
                return
            delay_s, duration_s, kw = self._anchored
            start_s = -(-(self.now() + delay_s) // 60) * 60
            self._anchored_window = (start_s, start_s + duration_s)
            self._windows.append(Window(start_s, start_s + duration_s, kw))

    def clear_sun(self) -> None:
        """Back to the default day curve."""
        with self._lock:
            self._windows.clear()

    # ------------------------------------------------------------------------------------------ faults
    def fail(self, status: int | None = 500, *, times: int | None = 1, body: Any = None,
             headers: dict[str, str] | None = None, delay_s: float = 0.0, content_type: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` and ``body`` (dict: JSON; str/bytes: as is) after
        ``delay_s``; ``status=None`` answers normally after ``delay_s``."""
        with self._lock:
            self._faults.append(Fault(status, times, body, dict(headers or {}), delay_s, content_type))

    def rate_limited(self, retry_in_s: float, *, times: int | None = 1) -> None:
        """429, as when the calls of the period are spent: ``X-Ratelimit-Retry-At`` ``retry_in_s`` from the answer."""
        with self._lock:
            self._faults.append(Fault(429, times, retry_in_s=retry_in_s))

    def slow(self, delay_s: float, *, times: int | None = 1) -> None:
        self.fail(None, times=times, delay_s=delay_s)

    def malformed(self, *, times: int | None = 1) -> None:
        """200 with a body that is not JSON though it says so."""
        self.fail(200, times=times, body='{"result": {"watts": {"2024-06-01 ', content_type="application/json")

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times is None or fault.times > 0:
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    # ------------------------------------------------------------------------------------------ answers
    def handle(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        url = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        with self._lock:
            self._requests.append(RecordedRequest(method, url.path, query, headers))
        fault = self._take_fault()
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.retry_in_s is not None:
                retry_at = datetime.fromtimestamp(self.now() + fault.retry_in_s, ZoneInfo(self.timezone))
                text = retry_at.isoformat(timespec="seconds")
                status, body, extra = _error(429, "Rate limit for API calls reached.",
                                             ratelimit={"period": 3600, "limit": self.limit, "retry-at": text})
                return status, body, {"X-Ratelimit-Retry-At": text, "X-Ratelimit-Limit": str(self.limit),
                                      "X-Ratelimit-Period": "3600"}
            if fault.status is not None:
                body = fault.body if fault.body is not None else _error(fault.status, "injected")[1]
                extra = dict(fault.headers)
                if fault.content_type:
                    extra["Content-Type"] = fault.content_type
                return fault.status, body, extra
        match = _ROUTE.fullmatch(url.path)
        if match is None:
            return 404, "<html><body>Page not found</body></html>", {}
        key = match.group("key")
        if key is not None and not _KEY.fullmatch(key):
            return _error(400, "Malformed API key")
        if key is not None and key != self.api_key:
            return _error(401, "Invalid API key")
        lat, lon, dec, az, kwp = (float(match.group(name)) for name in ("lat", "lon", "dec", "az", "kwp"))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180 and 0 <= dec <= 90 and -180 <= az <= 180 and kwp > 0):
            return _error(422, "Invalid plane parameters")
        self._anchor()
        return self._estimate(lat, lon, kwp, query.get("time", ""))

    def _estimate(self, lat: float, lon: float, kwp: float, time_format: str) -> tuple[int, Any, dict[str, str]]:
        zone = ZoneInfo(self.timezone)
        now = datetime.fromtimestamp(self.now(), zone)
        days = [now.date(), now.date() + timedelta(days=1)]
        with self._lock:
            windows = list(self._windows)
        points = [point for day in days for point in (self._window_points(day, zone, windows) if windows
                                                      else self._day_points(day, zone, kwp))]
        watts, period, cumulative, per_day = {}, {}, {}, {}
        previous: tuple[float, float] | None = None
        for at_s, w in points:
            key = self._format(at_s, zone, time_format)
            day = datetime.fromtimestamp(at_s, zone).date().isoformat()
            same_day = previous is not None and datetime.fromtimestamp(previous[0], zone).date().isoformat() == day
            energy = (w + previous[1]) / 2 * (at_s - previous[0]) / 3600 if same_day else 0.0
            watts[key] = round(w)
            period[key] = round(energy)
            per_day[day] = per_day.get(day, 0) + energy
            cumulative[key] = round(per_day[day])
            previous = (at_s, w)
        body = {
            "result": {"watts": watts, "watt_hours_period": period, "watt_hours": cumulative,
                       "watt_hours_day": {day: round(wh) for day, wh in per_day.items()}},
            "message": {"code": 0, "type": "success", "text": "",
                        "info": {"latitude": lat, "longitude": lon, "distance": 0, "place": "Fake place",
                                 "timezone": self.timezone, "time": now.isoformat(timespec="seconds"),
                                 "time_utc": now.astimezone(UTC).isoformat(timespec="seconds")},
                        "ratelimit": {"zone": "IP 127.0.0.1", "period": 3600, "limit": self.limit,
                                      "remaining": max(self.limit - self.count(), 0)}}}
        headers = {"X-Ratelimit-Limit": str(self.limit), "X-Ratelimit-Period": "3600",
                   "X-Ratelimit-Remaining": str(body["message"]["ratelimit"]["remaining"])}
        return 200, body, headers

    def _day_points(self, day: date, zone: ZoneInfo, kwp: float) -> list[tuple[float, float]]:
        """Sunrise, the whole hours between, sunset: a sine of the day's light."""
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
        rise_s, set_s = midnight + round(self.sunrise * 60) * 60, midnight + round(self.sunset * 60) * 60
        hours = [midnight + 3600 * h for h in range(24) if rise_s < midnight + 3600 * h < set_s]
        return [(at_s, kwp * 1000 * self.clear_sky * math.sin(math.pi * (at_s - rise_s) / (set_s - rise_s)))
                for at_s in [rise_s, *hours, set_s]]

    def _window_points(self, day: date, zone: ZoneInfo, windows: list[Window]) -> list[tuple[float, float]]:
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
        after = day + timedelta(days=1)
        end_s = datetime(after.year, after.month, after.day, tzinfo=zone).timestamp()
        def watts_at(at_s: float) -> float:
            return 1000 * next((w.kw for w in windows if w.start_s <= at_s < w.end_s), 0.0)

        instants = set(range(int(midnight), int(end_s), self.step_s))
        # A point a second before each edge too, so the sun comes at the edge and not on a ramp from the point before.
        instants |= {int(at_s) for w in windows for edge in (w.start_s, w.end_s) for at_s in (edge - 1, edge)
                     if midnight <= at_s < end_s}
        return [(at_s, watts_at(at_s)) for at_s in sorted(instants)]

    @staticmethod
    def _format(at_s: float, zone: ZoneInfo, time_format: str) -> str:
        instant = datetime.fromtimestamp(at_s, zone)
        if time_format == "utc":
            return instant.astimezone(UTC).isoformat(timespec="seconds")
        if time_format == "iso8601":
            return instant.isoformat(timespec="seconds")
        if time_format == "seconds":
            return str(int(at_s))
        return instant.strftime("%Y-%m-%d %H:%M:%S")
