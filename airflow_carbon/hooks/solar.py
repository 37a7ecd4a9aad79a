"""On-site solar sources as Airflow connections: Forecast.Solar and CSV files, for the forms and connection tests.

Tasks and triggers open solar sources through the registry (``aopen_solar``) and never need these hooks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow_carbon.clock import utcnow
from airflow_carbon.hooks.base import SourceConnectionHook
from airflow_carbon.hooks.sources import aopen_solar
from airflow_carbon.signals.series import Series
from airflow_carbon.signals.solar import describe_forecast
from airflow_carbon.signals.source import SolarSource, SourceRef

#: How far ahead the connection test reads.
TEST_HORIZON = timedelta(hours=24)


class SolarSourceHook(SourceConnectionHook):
    """A hook whose connection names a site's solar source (the solar twin of ``SignalSourceHook``)."""

    async def asource(self) -> SolarSource:
        """The connection's solar source, opened (the connection is read once)."""
        return await aopen_solar(SourceRef.connection(self.conn_id, ""))

    async def aforecast(self, now: datetime, horizon: timedelta = TEST_HORIZON) -> Series:
        """The site's output in kW from ``now`` on."""
        return await (await self.asource()).aforecast(now, horizon)

    def test_connection(self) -> tuple[bool, str]:
        """Reads the forecast and says its peak and span (and reads the measured log when there is one)."""

        async def check() -> str:
            source = await self.asource()
            describe = getattr(source, "describe", None)
            now = utcnow()
            line = await describe() if describe else describe_forecast(await source.aforecast(now, TEST_HORIZON))
            if source.measures:
                measured = await source.ameasured(now - timedelta(hours=1), now)
                line += f"; measured: {len(measured) if measured else 0} values in the last hour"
            return line

        return self.run_check(check)


class ForecastSolarHook(SolarSourceHook):
    """Reads Forecast.Solar for one PV plane (https://doc.forecast.solar/api:estimate).

    The password is an optional personal API key (without one, the public API: 12 calls an hour per IP);
    the host field overrides the base URL. Extra: ``latitude`` and ``longitude`` of the site,
    ``declination`` (0 horizontal .. 90 vertical), ``azimuth`` (-180..180: -90 east, 0 south, 90 west),
    ``kwp`` (the modules' peak power in kW), ``site`` (the name tasks share the panels by; else the
    connection id) and ``measured_path`` (a logger's CSV ``timestamp,solar_kw``: the API has no measured
    actuals).

    :param conn_id: the connection id.
    """

    conn_name_attr = "forecast_solar_conn_id"
    default_conn_name = "forecast_solar_default"
    conn_type = "forecast_solar"
    hook_name = "Forecast.Solar"


class SolarCsvHook(SolarSourceHook):
    """Names a site's solar CSV files so tasks can refer to them by connection id.

    Extra: ``path`` (a forecast ``timestamp,solar_kw_available`` in kW, or a normalised profile
    ``time,<columns>`` with values 0..1 of the peak), ``column`` and ``peak_kw`` (for a profile: which column,
    and the peak kW it is scaled by), ``start`` (a profile's time 0, ISO 8601; else 1970-01-01T00:00Z),
    ``replay`` (true: map the file onto the present; absent: only when it does not cover now),
    ``measured_path`` (a logger's CSV ``timestamp,solar_kw``) and ``site`` (else the connection id).

    :param conn_id: the connection id.
    """

    conn_name_attr = "carbon_solar_csv_conn_id"
    default_conn_name = "carbon_solar_csv_default"
    conn_type = "carbon_solar_csv"
    hook_name = "Solar CSV files"
