"""The web services as signal sources: a connection's fields in, a client from the pool, a series out.

Each class registers itself for its connection type; the credentials stay in the client, which is
keyed by a hash of them, so a changed password gets a new client and no key holds a secret. Forecast.Solar
is a solar source (``quantity = "solar"``), the others are carbon-intensity sources.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from airflow_carbon.clock import utcnow
from airflow_carbon.signals.series import Series, combine
from airflow_carbon.signals.services.electricitymaps import ElectricityMapsClient
from airflow_carbon.signals.services.forecastsolar import ForecastSolarClient
from airflow_carbon.signals.services.pool import client_for
from airflow_carbon.signals.services.ukgrid import UKCarbonIntensityClient
from airflow_carbon.signals.services.watttime import SIGNAL_DESCRIPTIONS, WattTimeClient
from airflow_carbon.signals.solar import describe_forecast, read_solar_log
from airflow_carbon.signals.source import SourceConfig, SourceError, register


def base_url(host: str | None, default: str) -> str:
    """The connection's host as a base URL; a bare host name gets https."""
    if not host:
        return default
    return host if "://" in host else f"https://{host}"


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256("\0".join(str(part) for part in parts).encode()).hexdigest()


@register("watttime")
@dataclass(frozen=True)
class WattTimeSource:
    """WattTime v3: marginal emissions (``co2_moer``), forecasts up to 72 h.

    Extra: ``region`` (or ``latitude`` and ``longitude`` to look it up), ``signal_type``, ``horizon_hours``.
    """

    name: str
    region: str
    client: WattTimeClient
    extra: dict[str, Any]
    forecasts: bool = True

    DEFAULT_BASE_URL = "https://api.watttime.org"

    @classmethod
    def from_config(cls, config: SourceConfig) -> WattTimeSource:
        url = base_url(config.host, cls.DEFAULT_BASE_URL)
        client = client_for(("watttime", config.conn_id, _fingerprint(config.login, config.password, url)),
                            lambda: WattTimeClient(config.login, config.password, base_url=url))
        return cls(config.name, config.extra.get("region") or config.region, client, dict(config.extra))

    @property
    def signal_type(self) -> str:
        return self.extra.get("signal_type", "co2_moer")

    @property
    def signal_kind(self) -> str | None:
        return SIGNAL_DESCRIPTIONS.get(self.signal_type)

    async def aseries(self, now: datetime, history: timedelta) -> Series:
        """The forecast from now, with ``history`` of measured values before it when asked."""
        region = self.region
        if "latitude" in self.extra and not self.extra.get("region"):
            region = await self.client.region_from_loc(float(self.extra["latitude"]), float(self.extra["longitude"]),
                                                       signal_type=self.signal_type)
        forecast = await self.client.forecast(region, signal_type=self.signal_type,
                                              horizon_hours=int(self.extra.get("horizon_hours", 72)))
        if history <= timedelta(0):
            return forecast
        return combine(await self.client.historical(region, now - history, now, signal_type=self.signal_type),
                       forecast)

    async def describe(self) -> str:
        """A line saying the service answers, for the connection test."""
        region = self.extra.get("region", "CAISO_NORTH")
        return f"{region}: signal index {await self.client.signal_index(region):.0f} of 100"


@register("electricitymaps")
@dataclass(frozen=True)
class ElectricityMapsSource:
    """Electricity Maps: average intensity, lifecycle or direct; the free tier plans on yesterday, estimated.

    Extra: ``zone`` (or ``latitude`` and ``longitude``), ``emission_factor``, ``api_version``, ``horizon_hours``.
    """

    name: str
    region: str
    client: ElectricityMapsClient
    extra: dict[str, Any]
    signal_kind: str | None = "average"
    forecasts: bool = True

    DEFAULT_BASE_URL = "https://api.electricitymaps.com"

    @classmethod
    def from_config(cls, config: SourceConfig) -> ElectricityMapsSource:
        url = base_url(config.host, cls.DEFAULT_BASE_URL)
        version, factor = config.extra.get("api_version", "v3"), config.extra.get("emission_factor", "lifecycle")
        client = client_for(("electricitymaps", config.conn_id, _fingerprint(config.password, url, version, factor)),
                            lambda: ElectricityMapsClient(config.password, base_url=url, api_version=version,
                                                          emission_factor=factor))
        return cls(config.name, config.extra.get("zone") or config.region, client, dict(config.extra))

    def _location(self) -> dict[str, Any]:
        if "latitude" in self.extra and "longitude" in self.extra:
            return {"lat": float(self.extra["latitude"]), "lon": float(self.extra["longitude"])}
        return {"zone": self.region}

    async def aseries(self, now: datetime, history: timedelta) -> Series:
        location = self._location()
        forecast = await self.client.forecast_or_persistence(**location,
                                                             horizon_hours=int(self.extra.get("horizon_hours", 72)))
        if history <= timedelta(0):
            return forecast
        past = (await self.client.history(**location) if history <= timedelta(hours=24)
                else await self.client.past_range(now - history, now, **location))
        return combine(past, forecast)

    async def describe(self) -> str:
        latest = await self.client.latest(**self._location())
        return f"{latest.region}: {latest.values[-1]:.0f} gCO2eq/kWh now"


@register("ukgrid")
@dataclass(frozen=True)
class UKCarbonIntensitySource:
    """The UK Carbon Intensity API (CC BY 4.0, no key): national, or regional by ``postcode`` or ``region_id``."""

    name: str
    region: str
    client: UKCarbonIntensityClient
    extra: dict[str, Any]
    signal_kind: str | None = "average"
    forecasts: bool = True

    DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"

    @classmethod
    def from_config(cls, config: SourceConfig) -> UKCarbonIntensitySource:
        url = base_url(config.host, cls.DEFAULT_BASE_URL)
        client = client_for(("ukgrid", config.conn_id, url), lambda: UKCarbonIntensityClient(base_url=url))
        return cls(config.name, config.region, client, dict(config.extra))

    async def aseries(self, now: datetime, history: timedelta) -> Series:
        """48 h from ``now - history``: the API returns measured and forecast values in one answer."""
        return await self.client.forecast(now - history, postcode=self.extra.get("postcode"),
                                          region_id=self.extra.get("region_id"))

    async def describe(self) -> str:
        series = await self.aseries(utcnow(), timedelta(0))
        return f"{series.region}: {len(series)} values every {series.period_s} s from {series.source}"


@register("forecast_solar")
@dataclass(frozen=True)
class ForecastSolarSource:
    """Forecast.Solar: one PV plane's forecast for today and the next day(s), every 15 minutes, in kW.

    Password: an optional personal API key (without one, the public API: 12 calls an hour per IP, so the
    forecast is read at most every ``min_refresh_s``). Extra: ``latitude``, ``longitude``, ``declination``
    (0 horizontal .. 90 vertical), ``azimuth`` (-180..180: -90 east, 0 south, 90 west), ``kwp`` (the
    modules' peak kW), ``site`` (else the connection id) and ``measured_path``: a logger's CSV of what the
    panels gave, since the API has no measured actuals.
    """

    name: str
    site: str
    client: ForecastSolarClient
    latitude: float
    longitude: float
    declination: float
    azimuth: float
    peak_kw: float
    measured_path: str | None = None

    quantity: ClassVar[str] = "solar"
    min_refresh_s: ClassVar[float] = 900.0
    DEFAULT_BASE_URL: ClassVar[str] = "https://api.forecast.solar"

    @classmethod
    def from_config(cls, config: SourceConfig) -> ForecastSolarSource:
        plane = {key: config.extra_number(key, low=low, high=high, required=True)
                 for key, low, high in (("latitude", -90, 90), ("longitude", -180, 180), ("declination", 0, 90),
                                        ("azimuth", -180, 180))}
        kwp = config.extra_number("kwp", positive=True, required=True)
        url = base_url(config.host, cls.DEFAULT_BASE_URL)
        try:
            client = client_for(("forecast_solar", config.conn_id, _fingerprint(config.password, url)),
                                lambda: ForecastSolarClient(config.password or None, base_url=url))
        except ValueError as error:
            raise SourceError(f"connection {config.conn_id!r}: {error}") from None
        return cls(config.name, config.extra_text("site") or config.conn_id or config.region, client, **plane,
                   peak_kw=kwp, measured_path=config.extra_text("measured_path"))

    @property
    def measures(self) -> bool:
        return self.measured_path is not None

    async def aforecast(self, now: datetime, horizon: timedelta) -> Series:
        """The whole answer: the local days it covers, today's past hours included."""
        series = await self.client.estimate(self.latitude, self.longitude, self.declination, self.azimuth,
                                            self.peak_kw)
        return replace(series, region=self.site)

    async def ameasured(self, start: datetime, end: datetime) -> Series | None:
        if self.measured_path is None:
            return None
        return await asyncio.to_thread(read_solar_log, self.measured_path, start, end, self.site)

    async def describe(self) -> str:
        """The forecast's peak and span, and the calls left, for the connection test."""
        line = describe_forecast(await self.aforecast(utcnow(), timedelta(hours=24)))
        left, limit = self.client.ratelimit.get("remaining"), self.client.ratelimit.get("limit")
        return line + (f"; {left} of {limit} calls left this period" if left is not None and limit else "")
