"""On-site solar from files: the seed forecast, a normalised profile, a logger's measured output; opening them.

Real files in a temporary directory, read as the sources read them; ``now`` is fixed, never the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import airflow_carbon
from airflow_carbon.signals.series import SOLAR_UNIT, SignalDataError
from airflow_carbon.signals.solar import (
    CsvSolarSource,
    describe_forecast,
    read_solar_forecast,
    read_solar_log,
    read_solar_profile,
)
from airflow_carbon.signals.source import SourceError, SourceRef, aopen, connection_types, source_types
from tests.helpers import ConnectionReader, run_sources

DATA = Path(airflow_carbon.__file__).parent / "data"
SEED = DATA / "solar_generation.csv"
PROFILE = DATA / "solar_5min_normalised.csv"
SEED_DAY = datetime(2024, 6, 1, tzinfo=UTC)
LATER = datetime(2025, 3, 12, 10, 20, tzinfo=UTC)  # a Wednesday the seed file does not cover
HOUR = timedelta(hours=1)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def open_solar(reader: ConnectionReader, conn_id: str = "roof"):
    return run_sources(aopen(SourceRef.connection(conn_id, ""), reader, quantity="solar"))


def forecast(source, now: datetime, horizon: timedelta = timedelta(hours=24)):
    return run_sources(source.aforecast(now, horizon))


def measured(source, start: datetime, end: datetime):
    return run_sources(source.ameasured(start, end))


def write_log(path: Path, start: datetime, rows: int, period_s: int = 60, *, tail: str = "", header: str =
              "timestamp,solar_kw", kw=lambda k: round(0.01 * k, 2)) -> Path:
    lines = [header] + [f"{(start + timedelta(seconds=period_s * k)).strftime('%Y-%m-%dT%H:%M:%SZ')},{kw(k)}"
                        for k in range(rows)]
    path.write_text("\n".join(lines) + "\n" + tail)
    return path


# ------------------------------------------------------------------------------------------ forecast files


def test_the_seed_file_is_a_forecast_in_kw_of_its_site_and_covers_its_own_days_as_is():
    seed = pd.read_csv(SEED)
    source = open_solar(ConnectionReader("carbon_solar_csv", path=str(SEED), site="roof", peak_kw="4.5"))
    assert isinstance(source, CsvSolarSource)
    assert (source.name, source.site, source.peak_kw) == ("conn:roof", "roof", 4.5)
    assert source.min_refresh_s == 0 and not source.measures and source.quantity == "solar"
    series = forecast(source, SEED_DAY + timedelta(hours=6), timedelta(hours=12))
    assert (series.unit, series.kind, series.region, series.period_s, series.replayed) == (
        SOLAR_UNIT, "forecast", "roof", 3600, False)
    assert series.first_epoch_s == (SEED_DAY + timedelta(hours=6)).timestamp() and len(series) == 12
    assert list(series.values) == list(seed.solar_kw_available[6:18])


def test_a_file_that_does_not_cover_now_is_replayed_keeping_the_time_of_day():
    source = open_solar(ConnectionReader("carbon_solar_csv", path=str(SEED)))
    series = forecast(source, LATER, timedelta(hours=14))
    assert series.replayed and series.source == f"replay of {SEED}" and series.kind == "forecast"
    assert series.first_epoch_s <= LATER.timestamp() and series.end_epoch_s >= (LATER + timedelta(hours=14)).timestamp()
    seed = read_solar_forecast(SEED)
    assert series.at(LATER) == seed.at(SEED_DAY + timedelta(hours=10)) > 0
    assert series.at(LATER + timedelta(hours=12)) == 0  # 22:20: night is 0 kW, not a gap


def test_replay_can_be_forced_or_refused_by_the_connection():
    covered = SEED_DAY + timedelta(hours=9)
    forced = forecast(open_solar(ConnectionReader("carbon_solar_csv", path=str(SEED), replay="true")), covered)
    assert forced.replayed and forced.at(covered) == read_solar_forecast(SEED).at(covered)
    kept = forecast(open_solar(ConnectionReader("carbon_solar_csv", path=str(SEED), replay=False)), LATER)
    assert not kept.replayed and len(kept) == 0  # the file knows nothing of that time


def test_a_normalised_profile_is_scaled_by_the_peak_and_anchored_at_its_start():
    profile = pd.read_csv(PROFILE)
    start = utc(2024, 6, 1)
    source = open_solar(ConnectionReader("carbon_solar_csv", path=str(PROFILE), column="Berlin", peak_kw=5,
                                         start="2024-06-01T00:00:00Z"))
    series = forecast(source, start + timedelta(hours=12), timedelta(hours=2))
    assert not series.replayed and series.period_s == 300 and len(series) == 24
    row = 12 * 12  # 12:00 is row 144 of 5-minute rows
    assert series.values[0] == pytest.approx(5 * profile.Berlin[row])
    assert series.values.max() <= 5.0 and series.values.min() >= 0


def test_a_profile_without_a_start_is_anchored_in_1970_and_replayed_onto_now():
    source = open_solar(ConnectionReader("carbon_solar_csv", path=str(PROFILE), column="Sydney", peak_kw="2"))
    series = forecast(source, LATER, timedelta(hours=3))
    assert series.replayed and series.period_s == 300 and series.first_epoch_s <= LATER.timestamp()
    direct = read_solar_profile(PROFILE, "Sydney", 2.0)
    assert direct.first_epoch_s == 0 and direct.values.max() == pytest.approx(2 * pd.read_csv(PROFILE).Sydney.max())
    assert series.values.max() <= direct.values.max()


def test_a_profile_needs_its_column_and_peak_and_says_so_naming_the_file():
    with pytest.raises(SignalDataError, match=r"solar_5min_normalised.csv, line 1: a normalised profile .* needs "
                                              r"'column' and 'peak_kw'.*Berlin"):
        read_solar_forecast(PROFILE)
    with pytest.raises(SignalDataError, match=r"line 1, column 'fraction': no fraction column: looked for .*'Paris'"):
        read_solar_forecast(PROFILE, column="Paris", peak_kw=1.0)


@pytest.mark.parametrize(("rows", "line", "column", "reason"), [
    (["0,0.1", "300,1.2", "600,0.3"], 3, "Berlin", "above 1"),
    (["0,0.1", "300.5,0.2", "600,0.3"], 3, "time", "not a whole number of seconds"),
    (["0,0.1", "300,-0.2", "600,0.3"], 3, "Berlin", "negative value"),
    (["0,0.1", "600,0.2", "900,0.3", "1200,0.1"], 3, "time", "gap"),
])
def test_a_bad_profile_row_is_refused_naming_file_line_and_column(tmp_path, rows, line, column, reason):
    path = tmp_path / "profile.csv"
    path.write_text("\n".join(["time,Berlin", *rows]) + "\n")
    with pytest.raises(SignalDataError, match=reason) as caught:
        read_solar_forecast(path, column="Berlin", peak_kw=3.0)
    assert (caught.value.path, caught.value.line, caught.value.column) == (str(path), line, column)


def test_a_bad_seed_shaped_file_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "solar.csv"
    path.write_text("timestamp,solar_kw_available\n2024-06-01T00:00:00Z,0\n2024-06-01T01:00:00Z,-1\n")
    source = open_solar(ConnectionReader("carbon_solar_csv", path=str(path)))
    with pytest.raises(SignalDataError, match=r"solar.csv, line 3, column 'solar_kw_available': negative value"):
        forecast(source, SEED_DAY)


def test_a_missing_file_is_refused_naming_it(tmp_path):
    source = open_solar(ConnectionReader("carbon_solar_csv", path=str(tmp_path / "nowhere.csv")))
    with pytest.raises(SignalDataError, match=r"nowhere.csv: cannot read the file"):
        forecast(source, SEED_DAY)


def test_a_file_too_short_to_replay_is_refused_naming_it(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("timestamp,solar_kw_available\n2024-06-01T10:00:00Z,1\n2024-06-01T11:00:00Z,2\n")
    with pytest.raises(SignalDataError, match=r"short.csv: cannot be replayed: .* at least one day"):
        forecast(open_solar(ConnectionReader("carbon_solar_csv", path=str(path))), LATER)


def test_the_connection_test_line_names_the_peak_and_the_span():
    line = describe_forecast(read_solar_forecast(SEED, "roof"))
    assert line.startswith("roof: peak ") and " kW at 2024-06-0" in line
    assert "48 values every 3600 s from 2024-06-01T00:00:00+00:00" in line


# ------------------------------------------------------------------------------------------ a logger's file


def test_the_log_gives_the_periods_overlapping_the_interval_and_ignores_a_half_written_last_line(tmp_path):
    start = utc(2025, 3, 12, 9)
    path = write_log(tmp_path / "log.csv", start, 600, tail="2025-03-12T19:00:00Z,0.4")  # no newline yet
    series = read_solar_log(path, start + timedelta(seconds=90), start + timedelta(minutes=5), "roof")
    assert (series.kind, series.unit, series.region, series.period_s, series.source) == (
        "measured", SOLAR_UNIT, "roof", 60, str(path))
    assert series.first_epoch_s == (start + timedelta(minutes=1)).timestamp()  # 09:01 holds at 09:01:30
    assert series.end_epoch_s == (start + timedelta(minutes=5)).timestamp() and list(series.values) == [
        0.01, 0.02, 0.03, 0.04]
    last = read_solar_log(path, start + timedelta(hours=9), start + timedelta(hours=11))
    assert last.end_epoch_s == (start + timedelta(minutes=600)).timestamp()  # the half line is not read


def test_a_large_log_is_read_around_the_interval_only(tmp_path):
    start = utc(2025, 1, 1)
    path = write_log(tmp_path / "year.csv", start, 50_000, kw=lambda k: k % 7)
    # a bad row far from the interval is never parsed
    text = path.read_text().splitlines()
    text[20_000] = "not a time,1"
    path.write_text("\n".join(text) + "\n")
    middle = start + timedelta(minutes=40_000)
    series = read_solar_log(path, middle, middle + timedelta(minutes=3))
    assert list(series.values) == [40_000 % 7, 40_001 % 7, 40_002 % 7]


def test_windows_crlf_lines_a_bom_and_the_older_header_are_read(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"\xef\xbb\xbftimestamp,solar_kw_available\r\n2025-03-12 09:00:00,1.5\r\n"
                     b"2025-03-12 09:05:00,2.5\r\n")
    series = read_solar_log(path, utc(2025, 3, 12, 9), utc(2025, 3, 12, 10))
    assert series.period_s == 300 and list(series.values) == [1.5, 2.5]


def test_nothing_logged_in_the_interval_or_too_little_to_know_the_period_is_none(tmp_path):
    start = utc(2025, 3, 12, 9)
    path = write_log(tmp_path / "log.csv", start, 10)
    assert read_solar_log(path, start - timedelta(hours=2), start - HOUR) is None
    assert read_solar_log(path, start + HOUR, start + 2 * HOUR) is None
    assert read_solar_log(write_log(tmp_path / "one.csv", start, 1), start, start + HOUR) is None
    assert read_solar_log(write_log(tmp_path / "none.csv", start, 0), start, start + HOUR) is None
    for text in ("", "timestamp,sol"):  # a logger that has just created its file, or is writing its header
        (tmp_path / "new.csv").write_text(text)
        assert read_solar_log(tmp_path / "new.csv", start, start + HOUR) is None


@pytest.mark.parametrize(("mutate", "line", "column", "reason"), [
    (lambda rows: rows.__setitem__(4, "2025-03-12T09:03:00Z,-0.5"), 5, "solar_kw", "negative value"),
    (lambda rows: rows.__setitem__(4, "yesterday,0.5"), 5, "timestamp", "not an ISO 8601 timestamp"),
    (lambda rows: rows.__setitem__(4, "2025-03-12T09:03:00Z,0.5,9"), 5, None, "row has 3 fields, the header has 2"),
    (lambda rows: rows.pop(4), 5, "timestamp", "gap: 120 s after"),
])
def test_a_bad_row_in_the_interval_is_refused_naming_file_line_and_column(tmp_path, mutate, line, column, reason):
    path = write_log(tmp_path / "log.csv", utc(2025, 3, 12, 9), 10)
    rows = path.read_text().splitlines()
    mutate(rows)
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(SignalDataError, match=reason) as caught:
        read_solar_log(path, utc(2025, 3, 12, 9, 1), utc(2025, 3, 12, 9, 6))
    assert (caught.value.path, caught.value.line, caught.value.column) == (str(path), line, column)


def test_a_log_without_its_columns_or_file_is_refused_naming_it(tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("time;power\n2025-03-12T09:00:00Z;1\n")
    with pytest.raises(SignalDataError, match=r"wrong.csv, line 1, column 'time': no time column: .*'time;power'"):
        read_solar_log(wrong, utc(2025, 3, 12), utc(2025, 3, 13))
    with pytest.raises(SignalDataError, match=r"missing.csv: cannot read the file"):
        read_solar_log(tmp_path / "missing.csv", utc(2025, 3, 12), utc(2025, 3, 13))
    twice = tmp_path / "twice.csv"
    twice.write_text("timestamp,solar_kw,Solar_kW\n2025-03-12T09:00:00Z,1,1\n")
    with pytest.raises(SignalDataError, match=r"twice.csv, line 1, column 'solar_kw': header 'solar_kw' appears twice"):
        read_solar_log(twice, utc(2025, 3, 12), utc(2025, 3, 13))
    blank = tmp_path / "blank.csv"
    blank.write_text("\ntimestamp,solar_kw\n")
    with pytest.raises(SignalDataError, match=r"blank.csv, line 1: blank line where the header should be"):
        read_solar_log(blank, utc(2025, 3, 12), utc(2025, 3, 13))


def test_a_csv_source_measures_only_with_a_measured_path(tmp_path):
    start = utc(2025, 3, 12, 9)
    log = write_log(tmp_path / "log.csv", start, 30)
    source = open_solar(ConnectionReader("carbon_solar_csv", path=str(SEED), measured_path=str(log), site="barn"))
    assert source.measures and source.site == "barn"
    series = measured(source, start, start + timedelta(minutes=10))
    assert len(series) == 10 and series.region == "barn" and series.kind == "measured"
    assert measured(open_solar(ConnectionReader("carbon_solar_csv", path=str(SEED))), start, start + HOUR) is None


# ------------------------------------------------------------------------------------------ opening


def test_solar_kinds_are_their_own_quantity_in_the_registry():
    assert connection_types("solar") == ("carbon_solar_csv", "forecast_solar")
    assert connection_types() == ("carbon_csv", "electricitymaps", "ukgrid", "watttime")
    solar = source_types("solar")
    assert solar["csv"] is solar["carbon_solar_csv"] is CsvSolarSource and "bundled" not in solar
    assert "carbon_solar_csv" not in source_types() and "forecast_solar" not in source_types()


def test_a_csv_ref_opens_as_a_solar_file_when_solar_is_asked_for():
    source = run_sources(aopen(SourceRef.file(str(SEED), "roof", replay=True), quantity="solar"))
    assert isinstance(source, CsvSolarSource) and source.site == "roof" and source.replay is True
    assert forecast(source, SEED_DAY).replayed


def test_bundled_data_is_not_a_solar_source():
    with pytest.raises(SourceError, match=r"bundled data for DE is not a solar source; name a connection of type "
                                          r"carbon_solar_csv or forecast_solar"):
        run_sources(aopen(SourceRef.bundled("DE"), quantity="solar"))


@pytest.mark.parametrize(("conn_type", "quantity", "message"), [
    ("carbon_solar_csv", "intensity", r"connection 'c' has type 'carbon_solar_csv', which is not a carbon signal "
                                      r"source \(carbon_csv, electricitymaps, ukgrid, watttime\); it is a solar "
                                      r"source"),
    ("carbon_csv", "solar", r"connection 'c' has type 'carbon_csv', which is not a solar source "
                            r"\(carbon_solar_csv, forecast_solar\); it is a carbon signal source"),
    ("http", "solar", r"connection 'c' has type 'http', which is not a solar source \(carbon_solar_csv, "
                      r"forecast_solar\)$"),
])
def test_a_connection_of_the_other_quantity_is_refused_naming_both(conn_type, quantity, message):
    with pytest.raises(SourceError, match=message):
        run_sources(aopen(SourceRef.connection("c", "DE"), ConnectionReader(conn_type, path="/x.csv"),
                          quantity=quantity))


@pytest.mark.parametrize(("extra", "message"), [
    ({}, r"connection 'roof' has no 'path' in its extra"),
    ({"path": "/s.csv", "peak_kw": "lots"}, r"connection 'roof': extra 'peak_kw' must be a number above 0, got 'lots'"),
    ({"path": "/s.csv", "peak_kw": -2}, r"extra 'peak_kw' must be a number above 0, got -2"),
    ({"path": "/s.csv", "replay": "maybe"}, r"extra 'replay' must be true or false, got 'maybe'"),
    ({"path": "/s.csv", "start": "June"}, r"extra 'start' must be an ISO 8601 instant"),
    ({"path": 42}, r"extra 'path' must be text, got 42"),
])
def test_a_bad_extra_is_refused_naming_the_connection_and_field(extra, message):
    with pytest.raises(SourceError, match=message):
        open_solar(ConnectionReader("carbon_solar_csv", **extra))


def test_a_profile_start_without_a_timezone_is_utc():
    source = open_solar(ConnectionReader("carbon_solar_csv", path=str(PROFILE), column="Berlin", peak_kw=1,
                                         start="2024-06-01"))
    assert source.start == utc(2024, 6, 1)
    assert np.isclose(forecast(source, utc(2024, 6, 1, 12), HOUR).values[0], pd.read_csv(PROFILE).Berlin[144])
