"""The UK Carbon Intensity API against the fake server: national and regional 48 h forecasts, 30-minute periods."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from airflow_carbon.signals.services.errors import BadResponse, SignalServiceError
from airflow_carbon.signals.services.http import HttpPolicy
from airflow_carbon.signals.services.ukgrid import UKCarbonIntensityClient, format_from, outward_code
from tests.fakes import MADE, RecordingSleep, run
from tests.fakes.signal_server import API_DIR, FakeSignalServer

NOW = datetime(2026, 6, 1, 12, 7, 30, tzinfo=UTC)
FROM = "2026-06-01T12:00Z"
START = int(datetime(2026, 6, 1, 12, tzinfo=UTC).timestamp())
NATIONAL = json.loads((API_DIR / "ukgrid/intensity_fw48h_200.json").read_text())
REGIONAL = json.loads((API_DIR / "ukgrid/regional_postcode_fw48h_200.json").read_text())
ERROR_400 = json.loads((API_DIR / "ukgrid/error_400.json").read_text())


@pytest.fixture
def server():
    with FakeSignalServer(now=NOW.timestamp) as fake:
        yield fake


def client_for(server: FakeSignalServer) -> UKCarbonIntensityClient:
    client = UKCarbonIntensityClient(base_url=server.base_url, policy=HttpPolicy(timeout_s=2.0, backoff_s=0.01),
                                   sleep=RecordingSleep())
    MADE.append(client)
    return client


def test_national_48_hours_of_half_hours(server):
    series = run(client_for(server).forecast(NOW))
    assert server.requests[0].path == f"/intensity/{FROM}/fw48h"
    assert len(series) == 96 and series.period_s == 1800 and series.first_epoch_s == START
    assert series.end_epoch_s - series.first_epoch_s == 48 * 3600
    assert list(series.values) == [row["intensity"]["forecast"] for row in NATIONAL["data"]]
    assert (series.region, series.kind, series.source) == ("GB", "forecast", "ukgrid")


def test_regional_by_postcode(server):
    series = run(client_for(server).forecast(NOW, postcode="rg10 6ab"))
    assert server.requests[0].path == f"/regional/intensity/{FROM}/fw48h/postcode/RG10"
    assert series.region == "GB-RG10" and len(series) == 96 and series.first_epoch_s == START
    assert list(series.values) == [row["intensity"]["forecast"] for row in REGIONAL["data"][0]["data"]]


def test_regional_by_region_id(server):
    series = run(client_for(server).forecast(NOW, region_id="12"))
    assert server.requests[0].path == f"/regional/intensity/{FROM}/fw48h/regionid/12"
    assert series.region == "GB-region-12" and len(series) == 96 and series.period_s == 1800


def test_regional_answer_as_an_object_is_accepted(server):
    body = copy.deepcopy(REGIONAL)
    body["data"] = body["data"][0]
    server.fail("/regional/", 200, body=body)
    assert len(run(client_for(server).forecast(NOW, region_id=12))) == 96


def test_bad_arguments_are_refused_before_any_request(server):
    client = client_for(server)
    for kwargs in ({"postcode": "RG10", "region_id": 3}, {"postcode": "not a postcode"}, {"region_id": 18},
                   {"region_id": "north"}, {"region_id": True}):
        with pytest.raises(ValueError):
            run(client.forecast(NOW, **kwargs))
    with pytest.raises(ValueError, match="no timezone"):
        run(client.forecast(datetime(2026, 6, 1, 12)))
    assert server.requests == []


def test_from_and_outward_code_formats():
    assert format_from(datetime(2026, 6, 1, 12, 59, 59, tzinfo=UTC)) == "2026-06-01T12:30Z"
    assert outward_code("SW1A 1AA") == "SW1A" and outward_code("RG106AB") == "RG10" and outward_code("m1") == "M1"


def test_documented_error_shape_is_a_service_error(server):
    server.fail("/intensity/", 400, body=ERROR_400)
    with pytest.raises(SignalServiceError) as caught:
        run(client_for(server).forecast(NOW))
    error = caught.value
    assert error.status == 400 and not error.retryable and error.service == "ukgrid"
    assert f"/intensity/{FROM}/fw48h" in str(error) and "valid datetime" in str(error)
    assert server.count("/intensity/") == 1


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b["data"].pop(3), "data[3].from"),  # a gap
    (lambda b: b["data"][5].update(to=b["data"][6]["to"]), "data[5].to"),  # an hour-long period
    (lambda b: b["data"][5]["intensity"].update(forecast=None), "data[5].intensity.forecast"),
    (lambda b: b["data"][5]["intensity"].update(forecast=float("inf")), "data[5].intensity.forecast"),
    (lambda b: b["data"][5].pop("intensity"), "data[5].intensity"),
])
def test_bad_shapes_name_the_field(server, mutate, field):
    body = copy.deepcopy(NATIONAL)
    mutate(body)
    server.fail("/intensity/", 200, body=json.dumps(body), content_type="application/json")
    with pytest.raises(BadResponse) as caught:
        run(client_for(server).forecast(NOW))
    assert caught.value.field == field and field in str(caught.value)


def test_empty_forecast_is_refused(server):
    server.truncate("/intensity/", 0)
    with pytest.raises(BadResponse, match="empty"):
        run(client_for(server).forecast(NOW))
