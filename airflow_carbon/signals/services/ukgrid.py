"""The UK Carbon Intensity API (National Energy System Operator, CC BY 4.0, no auth): 48 h forecasts, 30-minute periods.

Shapes: the example answers in ``tests/fakes/api/ukgrid``. National: ``/intensity/{from}/fw48h``;
regional: ``/regional/intensity/{from}/fw48h/postcode/{outward code}`` or ``.../regionid/{id}``, whose
periods sit one level deeper, inside the region (``data[0].data`` - or ``data.data`` if the region
comes as an object rather than a one-item list: both are accepted).
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import Any

from airflow_carbon.signals.series import Series, to_epoch_s
from airflow_carbon.signals.services.http import DEFAULT_POLICY, Clock, HttpPolicy, ServiceApi, ServiceClient, Sleep
from airflow_carbon.signals.services.shapes import Points, Shape, build_series

DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
PERIOD_S = 30 * 60
REGION_IDS = range(1, 18)
SOURCE = "ukgrid"
_OUTWARD = re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]?")
_FULL = re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}")


def outward_code(postcode: str) -> str:
    """``"RG10 6AB"`` or ``"rg10"`` -> ``"RG10"``; anything else is a ``ValueError``."""
    parts = str(postcode).upper().split()
    outward = parts[0] if parts else ""
    if len(parts) == 1 and _FULL.fullmatch(outward):  # "RG106AB": the inward code is always digit + 2 letters
        outward = outward[:-3]
    if not _OUTWARD.fullmatch(outward):
        raise ValueError(f"ukgrid: {postcode!r} does not start with a UK outward postcode (like 'RG10')")
    return outward


def format_from(now: datetime) -> str:
    """The half hour holding ``now``, as the API wants it: ``YYYY-MM-DDThh:mmZ``."""
    start = to_epoch_s(now) // PERIOD_S * PERIOD_S
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%MZ")


class UKCarbonIntensityClient(ServiceApi):
    """Async client of the UK Carbon Intensity API.

    :param base_url: override for tests or a proxy.
    :param policy: timeouts, retries, circuit breaker.
    :param clock: monotonic seconds, for the breaker.
    :param sleep: the wait between retries.
    """

    service = "ukgrid"

    def __init__(self, *, base_url: str = DEFAULT_BASE_URL, policy: HttpPolicy = DEFAULT_POLICY,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self.http = ServiceClient(self.service, base_url, policy=policy, clock=clock, sleep=sleep)


    async def forecast(self, now: datetime, *, postcode: str | None = None,
                       region_id: int | str | None = None) -> Series:
        """48 h of 30-minute forecasts from the half hour holding ``now``: Great Britain, a postcode or a region.

        Region of the series: ``GB``, ``GB-<outward code>`` or ``GB-region-<id>``. Periods already past carry
        the forecast made for them (``intensity.forecast``), like the future ones.
        """
        start = format_from(now)
        if postcode and region_id not in (None, ""):
            raise ValueError("ukgrid: pass a postcode or a region_id, not both")
        if postcode:
            outward = outward_code(postcode)
            path, region = f"/regional/intensity/{start}/fw48h/postcode/{outward}", f"GB-{outward}"
        elif region_id not in (None, ""):
            try:
                number = int(region_id)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                number = 0
            if isinstance(region_id, bool) or number not in REGION_IDS:
                raise ValueError(f"ukgrid: region_id must be 1..17, got {region_id!r}")
            path, region = f"/regional/intensity/{start}/fw48h/regionid/{number}", f"GB-region-{number}"
        else:
            path, region = f"/intensity/{start}/fw48h", "GB"
        body = await self.http.get_json(path)
        shape = Shape(self.service, path)
        data = shape.key(shape.obj(body, "body"), "data", "")
        if path.startswith("/regional/"):
            if isinstance(data, list):
                if not data:
                    raise shape.fail("data", "is empty: no region in the answer")
                periods, field = shape.key(shape.obj(data[0], "data[0]"), "data", "data[0]"), "data[0].data"
            else:
                periods, field = shape.key(shape.obj(data, "data"), "data", "data"), "data.data"
        else:
            periods, field = data, "data"
        return build_series(self._points(shape, periods, field), shape, period_s=PERIOD_S, region=region,
                            kind="forecast", source=SOURCE)

    @staticmethod
    def _points(shape: Shape, periods: Any, field: str) -> Points:
        points = Points.empty()
        for i, item in enumerate(shape.items(periods, field)):
            where = f"{field}[{i}]"
            item = shape.obj(item, where)
            start = shape.instant(shape.key(item, "from", where), f"{where}.from")
            stop = shape.instant(shape.key(item, "to", where), f"{where}.to")
            if stop - start != PERIOD_S:
                raise shape.fail(f"{where}.to", f"is {stop - start} s after {where}.from, expected {PERIOD_S} s")
            intensity = shape.obj(shape.key(item, "intensity", where), f"{where}.intensity")
            value = shape.number(shape.key(intensity, "forecast", f"{where}.intensity"), f"{where}.intensity.forecast")
            points.add(start, value, f"{where}.from")
        return points


__all__ = ["DEFAULT_BASE_URL", "UKCarbonIntensityClient", "format_from", "outward_code"]
