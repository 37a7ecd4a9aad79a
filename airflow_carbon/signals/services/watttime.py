"""WattTime v3: marginal (``co2_moer``) or average (``co2_aoer``) emissions, forecasts up to 72 h, 5-minute points.

Shapes: the example answers in ``tests/fakes/api/watttime``. Values arrive in lbs CO2 per MWh
and leave as gCO2/kWh (x 0.453592). The login token lives 30 minutes; it is reused until shortly
before then, and renewed once if a data endpoint refuses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from airflow_carbon.signals.series import Series
from airflow_carbon.signals.services.errors import AuthError, ScopeError
from airflow_carbon.signals.services.http import DEFAULT_POLICY, Clock, HttpPolicy, ServiceApi, ServiceClient, Sleep
from airflow_carbon.signals.services.shapes import Points, Shape, build_series, chunks

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.watttime.org"
LBS_PER_MWH_TO_G_PER_KWH = 0.453592
EXPECTED_UNITS = "lbs_co2_per_mwh"
SIGNAL_DESCRIPTIONS = {"co2_moer": "marginal", "co2_aoer": "average"}
"""Signals this client turns into gCO2/kWh, and what kind of emissions rate each is."""

TOKEN_LIFETIME_S = 30 * 60
TOKEN_MARGIN_S = 120
HISTORICAL_CHUNK = timedelta(days=30)
DEFAULT_PERIOD_S = 300


def _check_signal(signal_type: str) -> None:
    if signal_type not in SIGNAL_DESCRIPTIONS:
        raise ValueError(f"watttime: signal_type {signal_type!r} is not one of {sorted(SIGNAL_DESCRIPTIONS)}")


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat()


class WattTimeClient(ServiceApi):
    """Async WattTime v3 client. Use as ``async with WattTimeClient(user, password) as client: ...``.

    :param username: the WattTime account.
    :param password: its password; used only for ``/login`` (HTTP Basic), never logged or put in an error.
    :param base_url: override for tests or a proxy.
    :param policy: timeouts, retries, circuit breaker.
    :param clock: monotonic seconds, for the token's lifetime and the breaker.
    :param sleep: the wait between retries.
    """

    service = "watttime"

    def __init__(self, username: str, password: str, *, base_url: str = DEFAULT_BASE_URL,
                 policy: HttpPolicy = DEFAULT_POLICY, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        if not username or not password:
            raise ValueError("watttime: a username and a password are required")
        self._username, self._password, self._clock = username, password, clock
        self.http = ServiceClient(self.service, base_url, policy=policy, clock=clock, sleep=sleep, secrets=(password,))
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self.logins = 0


    # ---------------------------------------------------------------------------------------- auth
    def _login_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def login(self) -> str:
        """A fresh token from ``GET /login`` (HTTP Basic)."""
        try:
            body = await self.http.get_json("/login", auth=httpx.BasicAuth(self._username, self._password))
        except AuthError as error:
            raise AuthError(f"watttime: login refused ({error.status})", service=self.service, status=error.status,
                            path="/login") from None
        shape = Shape(self.service, "/login")
        token = shape.text(shape.key(shape.obj(body, "body"), "token", ""), "token")
        self.http.add_secret(token)
        self._token, self._token_expires = token, self._clock() + TOKEN_LIFETIME_S - TOKEN_MARGIN_S
        self.logins += 1
        return token

    async def _valid_token(self, refused: str | None = None) -> str:
        """The current token, logging in when there is none, it is about to expire, or it is ``refused``."""
        async with self._login_lock():
            if self._token is None or self._clock() >= self._token_expires or self._token == refused:
                return await self.login()
            return self._token

    async def _get(self, path: str, params: dict[str, Any], errors: dict[int, type] | None = None) -> Any:
        errors = {400: ScopeError, **(errors or {})}
        token = await self._valid_token()
        try:
            return await self.http.get_json(path, params, {"Authorization": f"Bearer {token}"}, errors=errors)
        except AuthError:
            log.info("watttime: GET %s refused the token; logging in again", path)
        token = await self._valid_token(refused=token)  # another call may have renewed it already
        return await self.http.get_json(path, params, {"Authorization": f"Bearer {token}"}, errors=errors)

    # ---------------------------------------------------------------------------------------- parsing
    def _points(self, shape: Shape, data: Any, field: str, factor: float) -> Points:
        points = Points.empty()
        for i, item in enumerate(shape.items(data, field)):
            where = f"{field}[{i}]"
            item = shape.obj(item, where)
            start = shape.instant(shape.key(item, "point_time", where), f"{where}.point_time")
            value = shape.number(shape.key(item, "value", where), f"{where}.value")
            points.add(start, value * factor, f"{where}.point_time")
        return points

    def _meta(self, shape: Shape, body: Any, *, units: str = EXPECTED_UNITS) -> tuple[dict[str, Any], int | None]:
        """The answer's ``meta``: units checked, warnings logged; returns it and its period (if stated)."""
        meta = shape.obj(shape.key(shape.obj(body, "body"), "meta", ""), "meta")
        found = shape.key(meta, "units", "meta")
        if found != units:
            raise shape.fail("meta.units", f"is {found!r:.40}, expected {units!r}")
        warnings = meta.get("warnings") or []
        for i, warning in enumerate(shape.items(warnings, "meta.warnings")):
            if isinstance(warning, str):
                log.warning("watttime %s: %s", shape.path, warning)
            elif isinstance(warning, dict):
                log.warning("watttime %s: %s: %s", shape.path, warning.get("type", "warning"),
                            warning.get("message", ""))
            else:
                raise shape.fail(f"meta.warnings[{i}]", "should be a string or a {type, message} object")
        period = meta.get("data_point_period_seconds")
        if period is not None and (isinstance(period, bool) or not isinstance(period, int) or period <= 0):
            raise shape.fail("meta.data_point_period_seconds", f"should be a positive integer, got {period!r:.40}")
        return meta, period

    def _series(self, shape: Shape, body: Any, *, region: str, signal_type: str, kind: str) -> Series:
        _, period = self._meta(shape, body)
        points = self._points(shape, shape.key(body, "data", ""), "data", LBS_PER_MWH_TO_G_PER_KWH)
        return build_series(points, shape, period_s=period or DEFAULT_PERIOD_S, region=region, kind=kind,
                            source=f"watttime:{signal_type}")

    # ---------------------------------------------------------------------------------------- endpoints
    async def forecast(self, region: str, *, signal_type: str = "co2_moer", horizon_hours: int = 72) -> Series:
        """The current forecast: 5-minute points from the current period, gCO2/kWh, ``source`` names the signal.

        A forecast shorter than asked is returned as it is (with a warning); an empty one is a ``BadResponse``.
        """
        _check_signal(signal_type)
        if isinstance(horizon_hours, bool) or not isinstance(horizon_hours, int) or not 0 <= horizon_hours <= 72:
            raise ValueError(f"watttime: horizon_hours must be an integer in 0..72, got {horizon_hours!r}")
        path = "/v3/forecast"
        body = await self._get(path, {"region": region, "signal_type": signal_type, "horizon_hours": horizon_hours})
        series = self._series(Shape(self.service, path), body, region=region, signal_type=signal_type,
                              kind="forecast")
        if series.end_epoch_s - series.first_epoch_s < horizon_hours * 3600:
            log.warning("watttime: the %s forecast for %s covers %.1f h of the %d h asked", signal_type, region,
                        (series.end_epoch_s - series.first_epoch_s) / 3600, horizon_hours)
        return series

    async def historical(self, region: str, start: datetime, end: datetime, *,
                         signal_type: str = "co2_moer") -> Series:
        """Measured values in ``[start, end]`` (aware datetimes), fetched in pieces of at most 30 days."""
        _check_signal(signal_type)
        path = "/v3/historical"
        shape = Shape(self.service, path)
        points, period = Points.empty(), None
        for piece_start, piece_end in chunks(start, end, HISTORICAL_CHUNK):
            body = await self._get(path, {"region": region, "signal_type": signal_type,
                                          "start": _iso(piece_start), "end": _iso(piece_end)})
            _, period = self._meta(shape, body)
            points.extend_unique(self._points(shape, shape.key(body, "data", ""), "data", LBS_PER_MWH_TO_G_PER_KWH))
        return build_series(points, shape, period_s=period or DEFAULT_PERIOD_S, region=region, kind="measured",
                            source=f"watttime:{signal_type}")

    async def region_from_loc(self, latitude: float, longitude: float, *, signal_type: str = "co2_moer") -> str:
        """The region abbreviation (e.g. ``CAISO_NORTH``) covering a point; ``ScopeError`` where none does."""
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise ValueError(f"watttime: ({latitude}, {longitude}) is not a latitude/longitude")
        path = "/v3/region-from-loc"
        body = await self._get(path, {"latitude": latitude, "longitude": longitude, "signal_type": signal_type},
                               errors={404: ScopeError})
        shape = Shape(self.service, path)
        body = shape.obj(body, "body")
        if "region" not in body and "error" in body:
            raise ScopeError(f"watttime: GET {path}: no {signal_type} coverage at ({latitude}, {longitude})",
                             service=self.service, status=200, path=path)
        return shape.text(shape.key(body, "region", ""), "region")

    async def signal_index(self, region: str, *, signal_type: str = "co2_moer") -> float:
        """Where now stands against the next 24 h, 0 (cleanest) to 100 (dirtiest)."""
        _check_signal(signal_type)
        path = "/v3/signal-index"
        body = await self._get(path, {"region": region, "signal_type": signal_type})
        shape = Shape(self.service, path)
        self._meta(shape, body, units="percentile")
        data = shape.items(shape.key(body, "data", ""), "data")
        if not data:
            raise shape.fail("data", "is empty: no points in the answer")
        value = shape.number(shape.key(shape.obj(data[0], "data[0]"), "value", "data[0]"), "data[0].value")
        if value > 100:
            raise shape.fail("data[0].value", f"should be a percentile in 0..100, got {value}")
        return value


__all__ = ["DEFAULT_BASE_URL", "LBS_PER_MWH_TO_G_PER_KWH", "SIGNAL_DESCRIPTIONS", "WattTimeClient"]
