"""Electricity Maps: average carbon intensity (lifecycle or direct), hourly, zones worldwide.

Shapes: the example answers in ``tests/fakes/api/electricitymaps``. The token goes in the
``auth-token`` header. Every request passes ``disableCallerLookup=true`` so the service never falls
back to the caller's IP. The free tier reads ``latest`` and ``history`` but not ``forecast``:
``forecast_or_persistence`` then plans on the same hour of the previous day, marked estimated.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np

from airflow_carbon.clock import utcnow
from airflow_carbon.signals.series import Series, to_epoch_s
from airflow_carbon.signals.services.errors import AuthError, BadResponse, ForecastNotAvailable
from airflow_carbon.signals.services.http import DEFAULT_POLICY, Clock, HttpPolicy, ServiceApi, ServiceClient, Sleep
from airflow_carbon.signals.services.shapes import Points, Shape, build_series, chunks

DEFAULT_BASE_URL = "https://api.electricitymaps.com"
HOUR_S = 3600
FORECAST_HORIZONS = (6, 24, 48, 72)
PAST_RANGE_CHUNK = timedelta(days=10)
NO_FORECAST_TTL_S = 3600.0
SOURCE = "electricitymaps"
PERSISTENCE_SOURCE = "electricitymaps:persistence"


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def persistence_forecast(history: Series, now: datetime, hours: int = 24) -> Series:
    """Each hour of the next ``hours`` from the hour holding ``now`` takes the value of the same hour a day before.

    Stops at the first hour whose previous day ``history`` does not know; ``estimated=True``.
    """
    start = to_epoch_s(now) // HOUR_S * HOUR_S
    values: list[float] = []
    for k in range(hours):
        value = history.at(datetime.fromtimestamp(start + k * HOUR_S - 24 * HOUR_S, UTC))
        if value is None:
            break
        values.append(value)
    if not values:
        raise BadResponse(f"{SOURCE}: history of {history.region} does not cover the day before "
                          f"{datetime.fromtimestamp(start, UTC).isoformat()}: no persistence forecast",
                          service=SOURCE, field="history")
    starts = start + HOUR_S * np.arange(len(values), dtype=np.int64)
    return Series(starts, np.asarray(values), HOUR_S, history.region, history.unit, "forecast", PERSISTENCE_SOURCE,
                  False, True)


class ElectricityMapsClient(ServiceApi):
    """Async Electricity Maps client. Locations: ``zone="DE"`` or ``lat=..., lon=...``.

    :param token: the API key, sent in the ``auth-token`` header only.
    :param base_url: scheme and host (no version).
    :param api_version: the path prefix, ``v3`` or ``v4``.
    :param emission_factor: ``lifecycle`` (default) or ``direct``.
    :param policy: timeouts, retries, circuit breaker.
    :param clock: monotonic seconds (breaker; how long "no forecast access" is remembered).
    :param sleep: the wait between retries.
    """

    service = "electricitymaps"

    def __init__(self, token: str, *, base_url: str = DEFAULT_BASE_URL, api_version: str = "v3",
                 emission_factor: Literal["lifecycle", "direct"] = "lifecycle", policy: HttpPolicy = DEFAULT_POLICY,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        if not token:
            raise ValueError("electricitymaps: an API token is required")
        if not re.fullmatch(r"v\d+", api_version):
            raise ValueError(f"electricitymaps: api_version should look like 'v3', got {api_version!r}")
        if emission_factor not in ("lifecycle", "direct"):
            raise ValueError(f"electricitymaps: emission_factor is 'lifecycle' or 'direct', got {emission_factor!r}")
        self._token, self._clock = token, clock
        self.api_version, self.emission_factor = api_version, emission_factor
        self.http = ServiceClient(self.service, base_url, policy=policy, clock=clock, sleep=sleep, secrets=(token,))
        self._no_forecast_until = float("-inf")

    def __repr__(self) -> str:
        return f"ElectricityMapsClient(base_url={self.http.base_url!r}, api_version={self.api_version!r})"


    # ---------------------------------------------------------------------------------------- requests
    def _params(self, zone: str | None, lat: float | None, lon: float | None, **extra: Any) -> dict[str, Any]:
        if zone and (lat is not None or lon is not None):
            raise ValueError("electricitymaps: pass a zone or lat/lon, not both")
        if zone:
            location: dict[str, Any] = {"zone": zone}
        elif lat is not None and lon is not None:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"electricitymaps: ({lat}, {lon}) is not a latitude/longitude")
            location = {"lat": lat, "lon": lon}
        else:
            raise ValueError("electricitymaps: a zone (e.g. 'DE') or lat and lon are required")
        return {**location, **extra, "disableCallerLookup": "true", "emissionFactorType": self.emission_factor}

    async def _get(self, endpoint: str, params: dict[str, Any]) -> tuple[Shape, Any]:
        path = f"/{self.api_version}/carbon-intensity/{endpoint}"
        body = await self.http.get_json(path, params, {"auth-token": self._token})
        return Shape(self.service, path), body

    @staticmethod
    def _region(shape: Shape, body: dict[str, Any], params: dict[str, Any]) -> str:
        if "zone" in body:
            return shape.text(body["zone"], "zone")
        return params.get("zone") or f"{params['lat']},{params['lon']}"

    @staticmethod
    def _points(shape: Shape, items: Any, field: str) -> tuple[Points, bool]:
        """Hourly points of a list of ``{datetime, carbonIntensity, isEstimated?}``; and whether any was estimated."""
        points, estimated = Points.empty(), False
        for i, item in enumerate(shape.items(items, field)):
            where = f"{field}[{i}]"
            item = shape.obj(item, where)
            start = shape.instant(shape.key(item, "datetime", where), f"{where}.datetime")
            value = shape.number(shape.key(item, "carbonIntensity", where), f"{where}.carbonIntensity")
            if "isEstimated" in item and item["isEstimated"] is not None:
                estimated |= shape.flag(item["isEstimated"], f"{where}.isEstimated")
            points.add(start, value, f"{where}.datetime")
        return points, estimated

    # ---------------------------------------------------------------------------------------- endpoints
    async def latest(self, zone: str | None = None, *, lat: float | None = None, lon: float | None = None) -> Series:
        """The value of the current hour: one point, hourly period, measured (``estimated`` if the service says so)."""
        params = self._params(zone, lat, lon)
        shape, body = await self._get("latest", params)
        body = shape.obj(body, "body")
        points, estimated = self._points(shape, [body], "latest")
        return build_series(points, shape, period_s=HOUR_S, region=self._region(shape, body, params),
                            kind="measured", source=SOURCE, estimated=estimated)

    async def history(self, zone: str | None = None, *, lat: float | None = None, lon: float | None = None) -> Series:
        """The last 24 hours, measured."""
        params = self._params(zone, lat, lon)
        shape, body = await self._get("history", params)
        body = shape.obj(body, "body")
        points, estimated = self._points(shape, shape.key(body, "history", ""), "history")
        return build_series(points, shape, period_s=HOUR_S, region=self._region(shape, body, params),
                            kind="measured", source=SOURCE, estimated=estimated)

    async def forecast(self, zone: str | None = None, *, lat: float | None = None, lon: float | None = None,
                       horizon_hours: int = 24) -> Series:
        """The hourly forecast, end point included (25 values for 24 h).

        :raises ForecastNotAvailable: the forecast endpoint refuses the token while ``latest`` accepts it.
        """
        if horizon_hours not in FORECAST_HORIZONS:
            raise ValueError(f"electricitymaps: horizon_hours must be one of {FORECAST_HORIZONS}, "
                             f"got {horizon_hours!r}")
        params = self._params(zone, lat, lon, horizonHours=horizon_hours)
        path = f"/{self.api_version}/carbon-intensity/forecast"
        if self._clock() < self._no_forecast_until:
            raise self._no_forecast(path, None)
        try:
            shape, body = await self._get("forecast", params)
        except AuthError as error:
            await self.latest(zone, lat=lat, lon=lon)  # raises AuthError itself if the token is bad
            self._no_forecast_until = self._clock() + NO_FORECAST_TTL_S
            raise self._no_forecast(path, error.status) from None
        body = shape.obj(body, "body")
        points, estimated = self._points(shape, shape.key(body, "forecast", ""), "forecast")
        return build_series(points, shape, period_s=HOUR_S, region=self._region(shape, body, params),
                            kind="forecast", source=SOURCE, estimated=estimated)

    def _no_forecast(self, path: str, status: int | None) -> ForecastNotAvailable:
        answered = f" -> HTTP {status}" if status is not None else ""
        return ForecastNotAvailable(f"{self.service}: GET {path}{answered}: this plan has no forecast access "
                                    "(latest works with the same token)", service=self.service, status=status,
                                    path=path)

    async def forecast_or_persistence(self, zone: str | None = None, *, lat: float | None = None,
                                      lon: float | None = None, horizon_hours: int = 24,
                                      now: datetime | None = None) -> Series:
        """``forecast``, or without forecast access the same hour of the previous day for the next 24 h (estimated)."""
        try:
            return await self.forecast(zone, lat=lat, lon=lon, horizon_hours=horizon_hours)
        except ForecastNotAvailable:
            history = await self.history(zone, lat=lat, lon=lon)
            return persistence_forecast(history, now or utcnow())

    async def past_range(self, start: datetime, end: datetime, zone: str | None = None, *, lat: float | None = None,
                         lon: float | None = None) -> Series:
        """Measured hourly values from ``start`` to ``end``, fetched in pieces of at most 10 days."""
        points, estimated, region, shape = Points.empty(), False, "", None
        for piece_start, piece_end in chunks(start, end, PAST_RANGE_CHUNK):
            params = self._params(zone, lat, lon, start=_iso(piece_start), end=_iso(piece_end))
            shape, body = await self._get("past-range", params)
            body = shape.obj(body, "body")
            piece, piece_estimated = self._points(shape, shape.key(body, "data", ""), "data")
            points.extend_unique(piece)
            estimated |= piece_estimated
            region = self._region(shape, body, params)
        assert shape is not None
        return build_series(points, shape, period_s=HOUR_S, region=region, kind="measured", source=SOURCE,
                            estimated=estimated)


__all__ = ["DEFAULT_BASE_URL", "FORECAST_HORIZONS", "ElectricityMapsClient", "persistence_forecast"]
