"""A real HTTP server on 127.0.0.1 playing WattTime v3, Electricity Maps (v3/v4) and the UK Carbon Intensity API.

    with FakeSignalServer() as server:
        client = WattTimeClient(server.watttime_username, server.watttime_password, base_url=server.base_url)
        ...
        assert server.count("/login") == 1

It answers from the example files in ``tests/fakes/api`` (synthetic values in the documented shapes,
``/work/shared/api/README.md``), with times rewritten: forecasts start at the current period (now
floored to 5 min for WattTime, 1 h for Electricity Maps, 30 min for the UK - or at ``{from}`` for the
UK), range endpoints cover the range asked, repeating the example curve. It checks auth like the
real services: WattTime ``/login`` with HTTP Basic issues tokens that expire after ``token_ttl_s``,
data endpoints want ``Authorization: Bearer``; Electricity Maps wants the ``auth-token`` header.

Every request is recorded in ``server.requests``. Faults: ``fail`` (any status/body/headers/delay for
the next ``times`` requests whose path starts with a prefix; ``times=None`` = until ``clear_faults``),
``flap`` (up, down, up... counted in requests),
``slow``, ``malformed``, ``truncate`` (a forecast that ends early, or is empty),
``expire_tokens``, ``watttime_units``, ``watttime_regions`` (the account's scope), ``em_forecast_access``.
``green_window`` makes WattTime's curve a step (dirty, then clean at a given instant, or a given time after
the first forecast request, so a test's window starts from the task's own decision) in points seconds apart.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import LoopbackServer, RecordedRequest

API_DIR = Path(__file__).parent / "api"

WATTTIME_USERNAME = "fake-wt-user"
WATTTIME_PASSWORD = "fake-wt-pass-Q7xZ9"
EM_TOKEN = "fake-em-token-K3vP2"

Response = tuple[int, Any, dict[str, str]]


def _load(name: str) -> Any:
    text = (API_DIR / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _floor(epoch_s: float, period_s: int) -> int:
    return int(epoch_s // period_s * period_s)


def _ceil(epoch_s: float, period_s: int) -> int:
    return -int(-epoch_s // period_s * period_s)


def wt_time(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def em_time(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def uk_time(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%MZ")


@dataclass
class Fault:
    path_prefix: str
    status: int | None  # None: answer normally, after delay_s
    times: int | None  # None: every matching request until clear_faults()
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content_type: str | None = None
    up: int = 0  # > 0: a flap, counted from the first matching request: ``up`` answered, then ``times`` failed
    seen: int = 0  # matching requests so far (flaps only)


class _BadRequest(Exception):
    def __init__(self, status: int, body: Any):
        self.status, self.body = status, body


class FakeSignalServer(LoopbackServer):
    """The three services on one port. Context manager; ``start()``/``stop()`` for longer-lived use.

    :param watttime_username: / :param watttime_password: what ``/login`` accepts.
    :param em_token: the Electricity Maps ``auth-token`` accepted.
    :param token_ttl_s: how long a WattTime token is honoured (real time).
    :param now: wall-clock seconds the "current period" is taken from.
    """

    thread_name = "fake-signal-server"
    json_content_type = "application/json"

    def __init__(self, *, watttime_username: str = WATTTIME_USERNAME, watttime_password: str = WATTTIME_PASSWORD,
                 em_token: str = EM_TOKEN, token_ttl_s: float = 1800.0, now: Callable[[], float] = time.time):
        self.watttime_username, self.watttime_password, self.em_token = watttime_username, watttime_password, em_token
        self.token_ttl_s, self.now = token_ttl_s, now
        self.watttime_units = "lbs_co2_per_mwh"
        self.watttime_regions = {"CAISO_NORTH"}
        self.em_forecast_access = True
        self.em_zone = "DE"  # the zone lat/lon resolve to
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._truncate: dict[str, int] = {}
        self._green: tuple[float, int, float, float, int] | None = None
        self._green_after_first_s: float | None = None  # green_window(after_first_request_s=...) not anchored yet
        self._tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.t = {  # the example answers
            name: _load(name) for name in (
                "watttime/login_200.json", "watttime/login_403.html", "watttime/forecast_200.json",
                "watttime/historical_200.json", "watttime/forecast_400_scope.json",
                "watttime/region_from_loc_200.json", "watttime/region_from_loc_no_coverage.json",
                "watttime/signal_index_200.json", "electricitymaps/latest_200.json",
                "electricitymaps/history_200.json", "electricitymaps/forecast_200.json",
                "electricitymaps/past_range_200.json", "electricitymaps/error_401.json",
                "ukgrid/intensity_fw48h_200.json", "ukgrid/regional_postcode_fw48h_200.json",
                "ukgrid/error_400.json")}

    # ------------------------------------------------------------------------------------------ inspection
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, path_prefix: str = "/") -> int:
        """How many requests had a path starting with ``path_prefix``."""
        return sum(request.path.startswith(path_prefix) for request in self.requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ------------------------------------------------------------------------------------------ faults
    def fail(self, path_prefix: str, status: int | None = 500, *, times: int | None = 1, body: Any = None,
             headers: dict[str, str] | None = None, delay_s: float = 0.0, content_type: str | None = None) -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status`` and ``body`` (after ``delay_s``).

        ``body`` may be a dict/list (sent as JSON), a str or bytes (sent as is); default ``{"error": ...}``.
        ``status=None`` answers normally after ``delay_s``. Also serves any custom 200 body. Prefixes match
        plainly: ``/v3/forecast`` also matches ``/v3/forecast/historical``.
        """
        with self._lock:
            self._faults.append(Fault(path_prefix, status, times, body, dict(headers or {}), delay_s, content_type))

    def flap(self, path_prefix: str, status: int = 503, *, up: int = 1, down: int = 1) -> None:
        """Answer ``up`` requests, fail the next ``down``, and so on, until cleared.

        Counted in requests from the first one under ``path_prefix``, not by the clock, so which reads fail
        does not depend on how fast the machine is: with ``down`` equal to a client's tries per read, every
        other read fails as a whole.
        """
        if up < 1 or down < 1:
            raise ValueError(f"a flap needs up >= 1 and down >= 1, got {up} and {down}")
        with self._lock:
            self._faults.append(Fault(path_prefix, status, down, up=up))

    def green_window(self, green_at_s: float | None = None, *, after_first_request_s: float | None = None,
                     period_s: int = 5, dirty: float = 900.0, clean: float = 300.0,
                     horizon_s: int = 3 * 3600) -> None:
        """WattTime forecasts and history as ``dirty`` lbs/MWh until the green instant, ``clean`` after.

        The green instant is ``green_at_s`` (epoch), or ``after_first_request_s`` after the first
        ``/v3/forecast`` request from now on: a task's wait then starts at its own first decision,
        however long it took to get there (``green_at_s`` says when it turned out to be). Points are
        ``period_s`` apart (stated in ``meta.data_point_period_seconds``), so a test can wait seconds,
        not the real service's 5 minutes, for a window. Neither goes back to the example curve.
        """
        if green_at_s is not None and after_first_request_s is not None:
            raise ValueError("give green_at_s or after_first_request_s, not both")
        with self._lock:
            self._green_after_first_s = after_first_request_s
            if green_at_s is None and after_first_request_s is None:
                self._green = None
            else:  # until the first request, the green instant is as far away as the curve reaches
                start_s = self.now() + horizon_s if green_at_s is None else float(green_at_s)
                self._green = (start_s, period_s, dirty, clean, horizon_s)

    @property
    def green_at_s(self) -> float | None:
        """The green instant of ``green_window`` (epoch); None before the first request it waits for."""
        with self._lock:
            return None if self._green is None or self._green_after_first_s is not None else self._green[0]

    def slow(self, path_prefix: str, delay_s: float, *, times: int | None = 1) -> None:
        """Answer normally, but only after ``delay_s`` (longer than the client's timeout: a timeout)."""
        self.fail(path_prefix, None, times=times, delay_s=delay_s)

    def malformed(self, path_prefix: str, *, times: int | None = 1) -> None:
        """Answer 200 with a body that is not JSON though it says so."""
        self.fail(path_prefix, 200, times=times, body='{"data": [{"point_time": ', content_type="application/json")

    def truncate(self, path_prefix: str, points: int | None) -> None:
        """Keep only the first ``points`` points of forecasts under ``path_prefix`` (0: empty; None: undo)."""
        with self._lock:
            if points is None:
                self._truncate.pop(path_prefix, None)
            else:
                self._truncate[path_prefix] = points

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._truncate.clear()

    def expire_tokens(self) -> None:
        """Every WattTime token issued so far is refused from now on (401), as after its 30 minutes."""
        with self._lock:
            self._tokens.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.up and path.startswith(fault.path_prefix):
                    fault.seen += 1
                    if (fault.seen - 1) % (fault.up + fault.times) < fault.up:
                        continue
                    return fault
                if path.startswith(fault.path_prefix) and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _cut(self, path: str, items: list[Any]) -> list[Any]:
        with self._lock:
            for prefix, points in self._truncate.items():
                if path.startswith(prefix):
                    return items[:points]
        return items

    # ------------------------------------------------------------------------------------------ dispatch
    def handle(self, method: str, target: str, headers: dict[str, str]) -> Response:
        url = urlsplit(target)
        path = url.path
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        with self._lock:
            self._requests.append(RecordedRequest(method, path, query, headers))
            if self._green_after_first_s is not None and path == "/v3/forecast":
                self._green = (self.now() + self._green_after_first_s, *self._green[1:])
                self._green_after_first_s = None
        fault = self._take_fault(path)
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.status is not None:
                body = fault.body if fault.body is not None else {"error": f"injected {fault.status}"}
                extra = dict(fault.headers)
                if fault.content_type:
                    extra["Content-Type"] = fault.content_type
                return fault.status, body, extra
        try:
            if path == "/login":
                return self._login(headers)
            if m := re.fullmatch(r"/(v\d+)/carbon-intensity/([a-z-]+)", path):
                return self._electricitymaps(m.group(2), query, headers)
            if path.startswith("/v3/"):
                return self._watttime(path, query, headers)
            if path.startswith(("/intensity/", "/regional/")):
                return self._ukgrid(path)
        except _BadRequest as error:
            return error.status, error.body, {}
        except ValueError as error:  # a query parameter that is not a number
            return 400, {"error": f"invalid query parameters: {error}"}, {}
        return 404, {"error": f"no such endpoint: {path}"}, {}

    # ------------------------------------------------------------------------------------------ WattTime
    def _login(self, headers: dict[str, str]) -> Response:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            user = password = ""
        if scheme.lower() != "basic" or (user, password) != (self.watttime_username, self.watttime_password):
            return 403, self.t["watttime/login_403.html"], {"Content-Type": "text/html"}
        head, _, tail = self.t["watttime/login_200.json"]["token"].partition(".")
        token = f"{head}.{secrets.token_hex(12)}.{tail.rpartition('.')[2]}"
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_s
            self.tokens_issued += 1
        return 200, {"token": token}, {}

    def _watttime(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Response:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        with self._lock:
            valid = scheme.lower() == "bearer" and self._tokens.get(token, 0.0) > time.monotonic()
        if not valid:
            return 401, {"error": "Unauthorized: invalid or expired token"}, {}
        if path == "/v3/region-from-loc":
            return self._region_from_loc(query)
        region = query.get("region", "")
        if region not in self.watttime_regions:
            return 400, self.t["watttime/forecast_400_scope.json"], {}
        horizon = int(query.get("horizon_hours", "24"))
        if path == "/v3/forecast":
            if not 0 <= horizon <= 72:
                raise _BadRequest(400, {"error": "horizon_hours must be in 0..72"})
            if self._green is not None:
                return 200, self._green_body(path, self.now(), None, forecast=True), {}
            start = _floor(self.now(), 300)
            return 200, self._wt_body(path, start, max(1, horizon * 12), anchored=False), {}
        if path == "/v3/signal-index":
            body = copy.deepcopy(self.t["watttime/signal_index_200.json"])
            body["data"][0]["point_time"] = wt_time(_floor(self.now(), 300))
            body["meta"]["region"] = region
            return 200, body, {}
        start, end = self._range(query, "start", "end")
        if path == "/v3/historical":
            if end - start > 30 * 86400:
                raise _BadRequest(400, {"error": "Invalid query parameters", "message": "at most 30 days a request"})
            if self._green is not None:
                return 200, self._green_body(path, start, end, forecast=False), {}
            first = _ceil(start, 300)
            return 200, self._wt_body(path, first, (end - first) // 300 + 1, anchored=True, forecast=False), {}
        if path == "/v3/forecast/historical":
            if end - start > 86400:
                raise _BadRequest(400, {"error": "Invalid query parameters", "message": "at most 1 day a request"})
            issued = range(_ceil(start, 3600), end + 1, 3600)
            data = [{"generated_at": wt_time(t), "forecast": self._wt_body(path, t, max(1, horizon * 12),
                                                                           anchored=True)["data"]} for t in issued]
            meta = {**self.t["watttime/forecast_200.json"]["meta"], "units": self.watttime_units, "region": region}
            meta.pop("generated_at", None)
            return 200, {"data": data, "meta": meta}, {}
        return 404, {"error": f"no such endpoint: {path}"}, {}

    def _wt_body(self, path: str, start: int, count: int, *, anchored: bool, forecast: bool = True) -> dict[str, Any]:
        """``count`` 5-minute points from ``start``; the example curve from its first point, or by time of day."""
        template = self.t["watttime/forecast_200.json" if forecast else "watttime/historical_200.json"]
        values = [point["value"] for point in template["data"]]
        offset = (start - _epoch(template["data"][0]["point_time"])) // 300 if anchored else 0
        data = [{"point_time": wt_time(start + 300 * k), "value": values[(offset + k) % len(values)]}
                for k in range(count)]
        meta = {**template["meta"], "units": self.watttime_units}
        if forecast:
            meta["generated_at"] = wt_time(start)
        return {"data": self._cut(path, data), "meta": meta}

    def _green_body(self, path: str, start: float, end: float | None, *, forecast: bool) -> dict[str, Any]:
        """The ``green_window`` curve: a forecast from the current period, or history over [start, end]."""
        green_at_s, period_s, dirty, clean, horizon_s = self._green
        first = _floor(start, period_s) if forecast else _ceil(start, period_s)
        last = first + horizon_s if end is None else end
        data = [{"point_time": wt_time(t), "value": clean if t >= green_at_s else dirty}
                for t in range(first, int(last) + 1, period_s)]
        template = self.t["watttime/forecast_200.json" if forecast else "watttime/historical_200.json"]
        meta = {**template["meta"], "units": self.watttime_units, "data_point_period_seconds": period_s}
        if forecast:
            meta["generated_at"] = wt_time(first)
        return {"data": self._cut(path, data), "meta": meta}

    def _region_from_loc(self, query: dict[str, str]) -> Response:
        try:
            latitude, longitude = float(query["latitude"]), float(query["longitude"])
        except (KeyError, ValueError):
            raise _BadRequest(400, {"error": "latitude and longitude are required"}) from None
        if 32.0 <= latitude <= 42.5 and -125.0 <= longitude <= -114.0:
            return 200, {**self.t["watttime/region_from_loc_200.json"], "signal_type": query.get("signal_type")}, {}
        body = {**self.t["watttime/region_from_loc_no_coverage.json"], "latitude": query["latitude"],
                "longitude": query["longitude"]}
        return 404, body, {}

    def _range(self, query: dict[str, str], start_key: str, end_key: str) -> tuple[int, int]:
        try:
            start, end = _epoch(query[start_key]), _epoch(query[end_key])
        except (KeyError, ValueError):
            raise _BadRequest(400, {"error": f"{start_key} and {end_key} must be ISO 8601 times"}) from None
        if end < start:
            raise _BadRequest(400, {"error": f"{end_key} is before {start_key}"})
        return start, end

    # ------------------------------------------------------------------------------------------ Electricity Maps
    def _electricitymaps(self, endpoint: str, query: dict[str, str], headers: dict[str, str]) -> Response:
        if headers.get("auth-token") != self.em_token:
            return 401, self.t["electricitymaps/error_401.json"], {}
        if "zone" in query:
            zone = query["zone"]
        elif "lat" in query and "lon" in query:
            zone = self.em_zone
        else:
            raise _BadRequest(400, {"status": 400, "message": "zone or lat and lon are required"})
        factor = query.get("emissionFactorType", "lifecycle")
        hour = _floor(self.now(), 3600)
        path = f"/carbon-intensity/{endpoint}"

        def items(template: str, key: str, start: int, count: int, anchored: bool) -> list[dict[str, Any]]:
            rows = self.t[template][key]
            rows = rows[:24] if template.endswith("forecast_200.json") else rows  # its last point repeats its first
            offset = (start - _epoch(rows[0]["datetime"])) // 3600 if anchored else 0
            out = []
            for k in range(count):
                row = dict(rows[(offset + k) % len(rows)], datetime=em_time(start + 3600 * k))
                if "zone" in row:
                    row.update(zone=zone, emissionFactorType=factor)
                out.append(row)
            return out

        if endpoint == "latest":
            return 200, {**self.t["electricitymaps/latest_200.json"], "zone": zone, "datetime": em_time(hour),
                         "emissionFactorType": factor}, {}
        if endpoint == "history":
            return 200, {"zone": zone, "history": items("electricitymaps/history_200.json", "history",
                                                         hour - 24 * 3600, 24, False)}, {}
        if endpoint == "forecast":
            if not self.em_forecast_access:
                return 401, self.t["electricitymaps/error_401.json"], {}
            horizon = int(query.get("horizonHours", "24"))
            if horizon not in (6, 24, 48, 72):
                raise _BadRequest(400, {"status": 400, "message": "horizonHours must be 6, 24, 48 or 72"})
            forecast = items("electricitymaps/forecast_200.json", "forecast", hour, horizon + 1, False)
            return 200, {"zone": zone, "forecast": self._cut(path, forecast),
                         "updatedAt": em_time(hour)}, {}
        if endpoint == "past-range":
            start, end = self._range(query, "start", "end")
            if end - start > 10 * 86400:
                raise _BadRequest(400, {"status": 400, "message": "at most 10 days a request"})
            first = _ceil(start, 3600)
            count = max(0, _ceil(end, 3600) - first) // 3600  # end excluded
            return 200, {"zone": zone, "data": items("electricitymaps/past_range_200.json", "data", first, count,
                                                     True)}, {}
        return 404, {"status": 404, "message": f"no such endpoint: {endpoint}"}, {}

    # ------------------------------------------------------------------------------------------ UK
    def _ukgrid(self, path: str) -> Response:
        m = re.fullmatch(r"(/regional)?/intensity/([^/]+)/fw48h(?:/(postcode|regionid)/([^/]+))?", path)
        if not m or bool(m.group(1)) != bool(m.group(3)):
            return 404, {"error": {"code": "404 Not Found", "message": "no such endpoint"}}, {}
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z", m.group(2)):
            raise _BadRequest(400, self.t["ukgrid/error_400.json"])
        start = _floor(_epoch(m.group(2)), 1800)

        def periods(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = [dict(rows[k % len(rows)], **{"from": uk_time(start + 1800 * k),
                                                "to": uk_time(start + 1800 * (k + 1))}) for k in range(96)]
            return self._cut(path, out)

        if not m.group(1):
            return 200, {"data": periods(self.t["ukgrid/intensity_fw48h_200.json"]["data"])}, {}
        region = copy.deepcopy(self.t["ukgrid/regional_postcode_fw48h_200.json"]["data"][0])
        if m.group(3) == "postcode":
            if not re.fullmatch(r"[A-Z]{1,2}[0-9][A-Z0-9]?", m.group(4)):
                raise _BadRequest(400, {"error": {"code": "400 Bad Request", "message": "Please enter a valid "
                                                  "outward postcode i.e. RG10"}})
            region["postcode"] = m.group(4)
        else:
            if not m.group(4).isdigit() or not 1 <= int(m.group(4)) <= 17:
                raise _BadRequest(400, {"error": {"code": "400 Bad Request", "message": "Please enter a valid "
                                                  "region id between 1 and 17"}})
            region.pop("postcode", None)
            region["regionid"] = int(m.group(4))
        region["data"] = periods(region["data"])
        return 200, {"data": [region]}, {}
