"""Sources as a type: how a task names one, the registry that opens it, the first that answers, and the two local kinds.

No Airflow here: a connection's fields come from a reader the test gives, as the Airflow layer gives its own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.errors import CarbonConfigError
from airflow_carbon.signals.series import Series, SignalDataError
from airflow_carbon.signals.services.http import reset_breakers
from airflow_carbon.signals.services.sources import ElectricityMapsSource, UKCarbonIntensitySource, WattTimeSource
from airflow_carbon.signals.source import (
    BundledSource,
    CsvFileSource,
    SourceConfig,
    SourceError,
    SourceRef,
    aopen,
    aread_first,
    connection_types,
    source_types,
)
from tests.fakes.signal_server import EM_TOKEN, WATTTIME_PASSWORD, WATTTIME_USERNAME, FakeSignalServer
from tests.helpers import ConnectionReader, run_sources, series
from tests.signal_files import write_signal

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ naming a source


@pytest.mark.parametrize(("ref", "conn_id", "path", "text"), [
    (SourceRef.bundled("DE"), None, None, "bundled data for DE"),
    (SourceRef.file("/data/de.csv", "DE"), None, "/data/de.csv", "file '/data/de.csv'"),
    (SourceRef.connection("wt", "CAISO_NORTH"), "wt", None, "connection 'wt'"),
    (SourceRef("conn:a:b", "DE"), "a:b", None, "connection 'a:b'"),
])
def test_a_ref_is_parsed_once_into_what_it_names(ref, conn_id, path, text):
    assert (ref.conn_id, ref.path, ref.describe()) == (conn_id, path, text)
    assert SourceRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref


@pytest.mark.parametrize("name", ["ftp:host", "DE", "conn:", "csv:", "bundled:", ""])
def test_a_ref_of_no_known_form_is_refused_naming_it(name):
    with pytest.raises(SourceError, match=rf"source {name!r}: expected bundled:<region>, csv:<path> or conn:"):
        SourceRef(name, "DE")


def test_a_region_without_bundled_data_is_refused_naming_the_regions_there_are():
    with pytest.raises(SourceError, match=r"no bundled data for region 'XX'; bundled regions: DE, .* \(or name a"):
        SourceRef.bundled("XX")
    assert issubclass(SourceError, CarbonConfigError) and SourceRef.bundled("de").name == "bundled:de"


@pytest.mark.parametrize(("old", "ref"), [
    ({"kind": "bundled", "region": "DE", "path": None, "replay": None, "conn_id": None}, SourceRef.bundled("DE")),
    ({"kind": "csv", "region": "TEST", "path": "/data/s.csv", "replay": False, "conn_id": None},
     SourceRef.file("/data/s.csv", "TEST", replay=False)),
    ({"kind": "connection", "region": "GB", "path": None, "replay": None, "conn_id": "uk"},
     SourceRef.connection("uk", "GB")),
    ({"kind": "bundled", "region": "FR"}, SourceRef.bundled("FR")),
])
def test_the_signal_spec_dicts_of_triggers_deferred_by_the_previous_release_still_read(old, ref):
    assert SourceRef.from_dict(old) == ref


@pytest.mark.parametrize(("old", "message"), [
    ({"kind": "connection", "region": "GB", "conn_id": None}, "source 'conn:'"),
    ({"kind": "csv", "region": "GB", "path": ""}, "source 'csv:'"),
    ({"kind": "carrier_pigeon", "region": "GB"}, "source 'carrier_pigeon:'"),
    ({"kind": "bundled", "region": "XX"}, "no bundled data for region 'XX'"),
])
def test_an_old_spec_that_names_nothing_is_refused(old, message):
    with pytest.raises(SourceError, match=message):
        SourceRef.from_dict(old)


# ------------------------------------------------------------------------------------------ the registry


def test_the_registry_knows_every_kind_and_which_are_connection_types():
    kinds = source_types()
    assert kinds["bundled"] is BundledSource and kinds["csv"] is kinds["carbon_csv"] is CsvFileSource
    assert (kinds["watttime"], kinds["electricitymaps"], kinds["ukgrid"]) == (
        WattTimeSource, ElectricityMapsSource, UKCarbonIntensitySource)
    assert connection_types() == ("carbon_csv", "electricitymaps", "ukgrid", "watttime")


@pytest.mark.parametrize(("conn_type", "extra", "kind", "region"), [
    ("watttime", {"region": "CAISO_NORTH"}, WattTimeSource, "CAISO_NORTH"),
    ("electricitymaps", {"zone": "FR"}, ElectricityMapsSource, "FR"),
    ("ukgrid", {}, UKCarbonIntensitySource, "GB"),
    ("carbon_csv", {"path": "/data/s.csv", "region": "TEST"}, CsvFileSource, "TEST"),
])
def test_a_connection_opens_as_the_source_registered_for_its_type_reading_it_once(conn_type, extra, kind, region):
    read = ConnectionReader(conn_type, login="user", password="secret", **extra)
    source = run_sources(aopen(SourceRef.connection("c", "GB"), read))
    assert isinstance(source, kind) and source.name == "conn:c" and source.region == region
    assert source.forecasts and read.reads == ["c"]


def test_a_connections_fields_never_show_its_credentials():
    config = SourceConfig("conn:c", "GB", conn_id="c", login="user-Kx1", password="secret-Wq9", extra={"k": "v"})
    assert "user-Kx1" not in repr(config) and "secret-Wq9" not in repr(config) and "conn:c" in repr(config)


@pytest.mark.parametrize("conn_type", ["http", "bundled", "csv", None])
def test_a_connection_of_another_type_is_refused_naming_it_and_the_known_types(conn_type):
    with pytest.raises(SourceError, match=rf"connection 'web' has type {conn_type!r}, which is not a carbon signal "
                                          r"source \(carbon_csv, electricitymaps, ukgrid, watttime\)"):
        run_sources(aopen(SourceRef.connection("web", "DE"), ConnectionReader(conn_type)))


def test_a_connection_is_not_opened_without_a_reader():
    with pytest.raises(SourceError, match="connection 'wt' is read through Airflow"):
        run_sources(aopen(SourceRef.connection("wt", "DE")))


def test_a_csv_connection_without_a_path_is_refused_naming_it():
    with pytest.raises(SignalDataError, match="connection 'c' has no 'path' in its extra"):
        run_sources(aopen(SourceRef.connection("c", "DE"), ConnectionReader("carbon_csv", region="DE")))


# ------------------------------------------------------------------------------------------ the first that answers


def test_sources_are_tried_in_order_until_one_answers_and_each_failure_is_named():
    tried: list[str] = []
    answer = series([100.0, 90.0])

    async def load(ref: SourceRef, now: datetime, history: timedelta) -> tuple[Series, str | None]:
        tried.append(ref.name)
        if ref.conn_id in ("down", "refusing"):
            raise {"down": TimeoutError("no answer"), "refusing": PermissionError("forbidden")}[ref.conn_id]
        return answer, "marginal"

    refs = [SourceRef.connection(name, "DE") for name in ("down", "refusing", "up", "never")]
    reading = asyncio.run(aread_first(refs, NOW, timedelta(0), load))
    assert tried == ["conn:down", "conn:refusing", "conn:up"]
    assert reading.series is answer and reading.served_by == "conn:up" and reading.signal_kind == "marginal"
    assert reading.failed_sources == ("conn:down: TimeoutError: no answer", "conn:refusing: PermissionError: forbidden")


def test_with_every_source_down_there_is_no_series_and_every_failure():
    async def load(ref, now, history):
        raise RuntimeError(f"{ref.conn_id} is down")

    refs = [SourceRef.connection("a", "DE"), SourceRef.connection("b", "DE")]
    reading = asyncio.run(aread_first(refs, NOW, timedelta(0), load))
    assert (reading.series, reading.served_by, reading.signal_kind) == (None, None, None)
    assert reading.failed_sources == ("conn:a: RuntimeError: a is down", "conn:b: RuntimeError: b is down")


def test_a_refusal_stops_the_fallback_at_the_source_that_failed():
    tried: list[str] = []

    async def load(ref, now, history):
        tried.append(ref.name)
        raise FileNotFoundError(ref.path)

    def refuse(ref: SourceRef, error: Exception) -> None:
        raise CarbonConfigError(f"{ref.describe()} cannot be read: {error}")

    refs = [SourceRef.file("/gone.csv", "DE"), SourceRef.bundled("DE")]
    with pytest.raises(CarbonConfigError, match=r"file '/gone\.csv' cannot be read"):
        asyncio.run(aread_first(refs, NOW, timedelta(0), load, refuse))
    assert tried == ["csv:/gone.csv"]


@pytest.fixture
def server():
    reset_breakers()
    with FakeSignalServer() as fake:
        yield fake
    reset_breakers()


def test_failures_of_the_services_never_name_their_secrets(server):
    """Wrong credentials, then a service down: every failure is named, and no password or token is in the text."""
    wrong_password, wrong_token = "wrong-pass-Zq81", "wrong-token-Yp52"
    connections = {
        "wt_bad": ConnectionReader("watttime", host=server.base_url, login=WATTTIME_USERNAME, password=wrong_password,
                                   region="CAISO_NORTH"),
        "em_bad": ConnectionReader("electricitymaps", host=server.base_url, password=wrong_token, zone="DE"),
        "wt_down": ConnectionReader("watttime", host=server.base_url, login=WATTTIME_USERNAME,
                                    password=WATTTIME_PASSWORD, region="CAISO_NORTH"),
        "em_down": ConnectionReader("electricitymaps", host=server.base_url, password=EM_TOKEN, zone="DE"),
    }

    async def load(ref: SourceRef, now: datetime, history: timedelta) -> tuple[Series, str | None]:
        source = await aopen(ref, connections[ref.conn_id])
        return await source.aseries(now, history), source.signal_kind

    server.fail("/v3/forecast", 500, times=None)
    server.fail("/v3/carbon-intensity", 500, times=None)
    refs = [SourceRef.connection(conn_id, "DE") for conn_id in connections]
    reading = run_sources(aread_first(refs, datetime.now(UTC), timedelta(0), load))
    assert reading.series is None and [f.split(":")[1] for f in reading.failed_sources] == list(connections)
    text = "\n".join(reading.failed_sources)
    assert "AuthError" in reading.failed_sources[0] and "500" in reading.failed_sources[2]
    for secret in (wrong_password, wrong_token, WATTTIME_PASSWORD, EM_TOKEN):
        assert secret not in text


# ------------------------------------------------------------------------------------------ bundled and csv


def test_the_bundled_data_is_replayed_onto_now_with_a_day_of_history_at_least():
    source = run_sources(aopen(SourceRef.bundled("FR")))
    now = datetime.now(UTC)
    got = run_sources(source.aseries(now, timedelta(hours=1)))
    assert isinstance(source, BundledSource) and (source.name, source.region, source.forecasts) == (
        "bundled:FR", "FR", False)
    assert got.replayed and got.region == "FR"
    assert got.first_epoch_s <= now.timestamp() - 24 * 3600 and got.end_epoch_s >= now.timestamp() + 71 * 3600


def series_of(ref: SourceRef, now: datetime) -> Series:
    async def read() -> Series:
        return await (await aopen(ref)).aseries(now, timedelta(0))

    return run_sources(read())


def test_a_csv_that_covers_now_is_a_forecast_as_it_is_and_one_of_the_past_is_replayed(tmp_path):
    now = datetime.now(UTC)
    path = str(write_signal(tmp_path / "now.csv", green_in_s=3600, period_s=60))
    got = series_of(SourceRef.file(path, "TEST"), now)
    assert not got.replayed and got.region == "TEST" and got.values.max() == 400 and got.values.min() == 120
    assert series_of(SourceRef.file(path, "TEST", replay=True), now).replayed
    past = series_of(SourceRef.file(path, "TEST"), now + timedelta(days=30))
    assert past.replayed and past.first_epoch_s <= (now + timedelta(days=29)).timestamp()


def test_a_csv_source_that_is_missing_or_malformed_says_which_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gone\.csv"):
        series_of(SourceRef.file(str(tmp_path / "gone.csv"), "DE"), NOW)
    (tmp_path / "bad.csv").write_text("timestamp,carbon_intensity\n2026-01-01T00:00:00,-5\n")
    with pytest.raises(SignalDataError, match=r"bad\.csv"):
        series_of(SourceRef.file(str(tmp_path / "bad.csv"), "DE"), NOW)


# ------------------------------------------------------------------------------------------ layers


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_a_hook_imports_alone_without_an_import_cycle():
    done = _python("import airflow_carbon.hooks.watttime as m; print(m.WattTimeHook.conn_type)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "watttime"


def test_the_source_layer_and_its_registry_import_no_airflow():
    done = _python(
        "import sys\n"
        "from airflow_carbon.signals.source import source_types\n"
        "kinds = sorted(source_types())\n"
        "print(kinds, sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "['bundled', 'carbon_csv', 'csv', 'electricitymaps', 'ukgrid', 'watttime'] []")
