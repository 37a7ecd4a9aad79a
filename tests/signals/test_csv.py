from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import airflow_carbon
from airflow_carbon.signals.csv import (
    check_time_axis,
    find_column,
    parse_non_negative_column,
    parse_utc_column,
    read_csv_table,
    read_intensity_csv,
    read_solar_csv,
)
from airflow_carbon.signals.series import INTENSITY_UNIT, SOLAR_UNIT, SignalDataError

CORPUS = Path(__file__).parent / "corpus"
DATA = Path(airflow_carbon.__file__).parent / "data"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# (file, reader, keyword arguments, expected line or None, text naming the column or None)
FAULTS = [
    ("missing_column.csv", read_intensity_csv, {}, 1, "carbon_intensity"),
    ("bad_timestamp.csv", read_intensity_csv, {}, 4, "timestamp"),
    ("negative_value.csv", read_intensity_csv, {}, 3, "carbon_intensity"),
    ("nan_value.csv", read_intensity_csv, {}, 5, "carbon_intensity"),
    ("empty_value.csv", read_intensity_csv, {}, 3, "carbon_intensity"),
    ("duplicate_row.csv", read_intensity_csv, {}, 4, "timestamp"),
    ("unsorted_rows.csv", read_intensity_csv, {}, 4, "timestamp"),
    ("gap.csv", read_intensity_csv, {}, 5, "timestamp"),
    ("irregular_step.csv", read_intensity_csv, {}, 5, "timestamp"),
    ("wrong_delimiter.csv", read_intensity_csv, {}, 1, None),
    ("tab_delimiter.csv", read_intensity_csv, {}, 1, None),
    ("empty.csv", read_intensity_csv, {}, None, None),
    ("header_only.csv", read_intensity_csv, {}, None, None),
    ("ragged_row.csv", read_intensity_csv, {}, 3, None),
    ("short_row.csv", read_intensity_csv, {}, 4, None),
    ("two_regions.csv", read_intensity_csv, {"region": "DE"}, None, "region"),
    ("two_regions.csv", read_intensity_csv, {}, None, "region"),
    ("blank_line_then_negative.csv", read_intensity_csv, {}, 5, "carbon_intensity"),
    ("one_row.csv", read_intensity_csv, {}, 2, "Time"),
    ("latin1.csv", read_intensity_csv, {}, None, None),
    ("blank_first_line.csv", read_intensity_csv, {}, 1, None),
    ("solar_inf.csv", read_solar_csv, {}, 4, "solar_kw_available"),
    ("semicolon_comma_decimal.csv", read_intensity_csv, {}, 1, None),
    ("comma_decimal.csv", read_intensity_csv, {}, 3, "carbon_intensity"),
    ("de_dst_autumn_local.csv", read_intensity_csv, {}, 8, "Time"),
    ("de_dst_spring_local.csv", read_intensity_csv, {}, 6, "Time"),
    ("resolution_change_gap.csv", read_intensity_csv, {}, 10, "timestamp"),
    ("resolution_change_duplicate.csv", read_intensity_csv, {}, 9, "timestamp"),
]


@pytest.mark.parametrize(
    ("name", "reader", "kwargs", "line", "column"),
    FAULTS,
    ids=[f"{fault[0].removesuffix('.csv')}-{'-'.join(fault[2].values()) or 'default'}" for fault in FAULTS],
)
def test_faulty_file_is_refused_naming_file_line_and_column(name, reader, kwargs, line, column):
    with pytest.raises(SignalDataError) as caught:
        reader(CORPUS / name, **kwargs)
    message = str(caught.value)
    assert name in message
    assert caught.value.line == line
    if line is not None:
        assert f"line {line}" in message
    if column is not None:
        assert column in message


def test_fault_messages_say_what_is_wrong():
    expectations = {
        "missing_column.csv": ["'carbon_intensity'", "'Carbon Intensity'", "'timestamp', 'region', 'intensity'"],
        "bad_timestamp.csv": ["'2024-06-01 25:00:00'"],
        "negative_value.csv": ["negative", "'-3.5'"],
        "nan_value.csv": ["'NaN'"],
        "empty_value.csv": ["empty value"],
        "duplicate_row.csv": ["duplicate", "line 3"],
        "unsorted_rows.csv": ["not in time order", "line 3"],
        "gap.csv": ["gap", "7200 s", "3600 s"],
        "irregular_step.csv": ["irregular", "1800 s"],
        "wrong_delimiter.csv": ["';'-separated", "comma-separated", "'.' as decimal mark"],
        "tab_delimiter.csv": ["tab-separated"],
        "empty.csv": ["file is empty"],
        "header_only.csv": ["no data rows"],
        "ragged_row.csv": ["4 fields", "header has 3"],
        "short_row.csv": ["2 fields", "header has 3"],
        "one_row.csv": ["at least 2"],
        "latin1.csv": ["UTF-8"],
        "blank_first_line.csv": ["where the header should be"],
        "semicolon_comma_decimal.csv": ["';'-separated", "',' as decimal mark ('283,28' on line 2)", "European"],
        "comma_decimal.csv": ["'300,0'", "decimal", "'300.0'"],
        "de_dst_autumn_local.csv": ["not in time order", "no UTC offset", "daylight-saving", "offset"],
        "de_dst_spring_local.csv": ["gap: 4500 s", "no UTC offset", "daylight-saving"],
        "resolution_change_gap.csv": ["gap: 2700 s", "periods are 900 to 1800 s"],
        "resolution_change_duplicate.csv": ["duplicate", "line 8"],
    }
    for name, fragments in expectations.items():
        with pytest.raises(SignalDataError) as caught:
            read_intensity_csv(CORPUS / name)
        for fragment in fragments:
            assert fragment in str(caught.value), (name, fragment, str(caught.value))


def test_unknown_region_lists_the_regions_the_file_holds():
    with pytest.raises(SignalDataError, match=r"no rows for region 'DE'; the file holds US-TX, US-CA"):
        read_intensity_csv(CORPUS / "two_regions.csv", "DE")
    with pytest.raises(SignalDataError, match=r"holds regions US-TX, US-CA: pass region="):
        read_intensity_csv(CORPUS / "two_regions.csv")


def test_region_selects_its_rows_case_insensitively():
    series = read_intensity_csv(CORPUS / "two_regions.csv", "us-ca")
    assert series.region == "US-CA"
    assert series.values.tolist() == [201.0, 199.5]
    assert series.start_epoch_s.tolist() == [int(utc(2024, 6, 1).timestamp()), int(utc(2024, 6, 1, 1).timestamp())]


def test_bom_file_parses_the_same_as_without():
    assert (CORPUS / "bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    plain, with_bom = read_intensity_csv(CORPUS / "good.csv"), read_intensity_csv(CORPUS / "bom.csv")
    assert with_bom.region == plain.region == "US-TX"
    np.testing.assert_array_equal(with_bom.start_epoch_s, plain.start_epoch_s)
    np.testing.assert_array_equal(with_bom.values, plain.values)


def test_intensity_series_is_labelled():
    series = read_intensity_csv(CORPUS / "good.csv", kind="forecast")
    assert series.unit == INTENSITY_UNIT
    assert series.kind == "forecast"
    assert series.source == str(CORPUS / "good.csv")
    assert series.period_s == 3600
    assert series.estimated is False
    assert series.replayed is False
    assert series.values.tolist() == [283.28, 282.72, 237.41, 250.0]


def test_unknown_emission_factor_and_kind_are_value_errors():
    with pytest.raises(ValueError, match=r"emission_factor 'marginal'.*lifecycle, direct"):
        read_intensity_csv(CORPUS / "good.csv", emission_factor="marginal")
    with pytest.raises(ValueError, match="kind 'predicted'"):
        read_intensity_csv(CORPUS / "good.csv", kind="predicted")


def test_direct_factor_is_refused_for_a_file_that_only_has_lifecycle():
    with pytest.raises(SignalDataError, match=r"looked for a header named 'Carbon Intensity gCO₂eq/kWh \(direct\)'"):
        read_intensity_csv(CORPUS / "good.csv", emission_factor="direct")


# --- the real files shipped with the package ---

REAL_INTENSITY = [
    ("fr_ci.csv", {}, 1800, "FR", 18574, utc(2019, 12, 20), utc(2021, 1, 9, 22, 30)),
    ("carbon_intensity.csv", {}, 3600, "US-TX", 24, utc(2024, 6, 1), utc(2024, 6, 1, 23)),
    ("de_ci.csv", {"max_missing_periods": 1}, 900, "DE", 37149, utc(2019, 12, 20), utc(2021, 1, 9, 23)),
]


@pytest.mark.parametrize(("name", "kwargs", "period_s", "region", "length", "first", "last"), REAL_INTENSITY)
def test_real_intensity_file_parses(name, kwargs, period_s, region, length, first, last):
    series = read_intensity_csv(DATA / name, **kwargs)
    assert (series.period_s, series.region, len(series)) == (period_s, region, length)
    assert series.times[0] == first
    assert series.times[-1] == last
    assert series.unit == INTENSITY_UNIT


def test_real_german_file_has_two_missing_quarter_hours():
    with pytest.raises(SignalDataError) as caught:
        read_intensity_csv(DATA / "de_ci.csv")
    assert caught.value.line == 35135
    assert "gap: 1800 s after 2020-12-19T23:00:00+00:00" in str(caught.value)

    series = read_intensity_csv(DATA / "de_ci.csv", max_missing_periods=1)
    assert series.estimated
    before, after = series.at(utc(2020, 12, 19, 23)), series.at(utc(2020, 12, 19, 23, 30))
    assert series.at(utc(2020, 12, 19, 23, 15)) == pytest.approx((before + after) / 2)
    assert read_intensity_csv(DATA / "fr_ci.csv").estimated is False


def test_gap_longer_than_the_allowance_is_still_refused():
    with pytest.raises(SignalDataError, match="gap"):
        read_intensity_csv(CORPUS / "gap.csv", max_missing_periods=0)
    filled = read_intensity_csv(CORPUS / "gap.csv", max_missing_periods=1)
    assert len(filled) == 6
    assert filled.at(utc(2024, 6, 1, 3)) == pytest.approx((237.41 + 250.0) / 2)


def test_region_of_a_file_without_region_column_comes_from_argument_or_file_name(tmp_path):
    path = tmp_path / "pl_ci.csv"
    path.write_text("Time,Carbon Intensity\n2020-01-01 00:00:00,700\n2020-01-01 00:15:00,710\n")
    assert read_intensity_csv(path).region == "PL"
    assert read_intensity_csv(path, "PL-SOUTH").region == "PL-SOUTH"


def test_real_solar_file_parses():
    series = read_solar_csv(DATA / "solar_generation.csv", site="roof")
    assert (series.period_s, series.region, series.unit, len(series)) == (3600, "roof", SOLAR_UNIT, 48)
    assert series.times[0] == utc(2024, 6, 1)
    assert series.times[-1] == utc(2024, 6, 2, 23)
    assert series.values.max() == pytest.approx(5.97)


# --- Electricity Maps portal exports ---

EM_OLD_HEADER = (
    "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
    "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,Data Source,"
    "Data Estimated,Data Estimation Method"
)
EM_NEW_HEADER = (
    "Datetime (UTC),Country,Zone name,Zone id,Carbon intensity gCO₂eq/kWh (direct),"
    "Carbon intensity gCO₂eq/kWh (Life cycle),Carbon-free energy percentage (CFE%),"
    "Renewable energy percentage (RE%),Data source,Data estimated,Data estimation method"
)
EM_ROWS = [
    '2024-01-01 00:00:00,Germany,Germany,DE,300.5,400.5,50.1,45.2,"entsoe.eu, opennem",false,',
    "2024-01-01 01:00:00,Germany,Germany,DE,310,410,50.2,45.3,entsoe.eu,{estimated},{method}",
    "2024-01-01 02:00:00,Germany,Germany,DE,320,420,50.3,45.4,entsoe.eu,false,",
]


def write_em_export(path: Path, header: str, estimated: bool = False) -> Path:
    rows = [
        row.format(estimated=str(estimated).lower(), method="TIME_SLICER_AVERAGE" if estimated else "")
        for row in EM_ROWS
    ]
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "header",
    [EM_OLD_HEADER, EM_NEW_HEADER, EM_OLD_HEADER.replace("₂", "2"), EM_NEW_HEADER.upper()],
    ids=["LCA-Zone-Id", "Life-cycle-Zone-id", "gCO2-ascii", "upper-case"],
)
@pytest.mark.parametrize(
    ("emission_factor", "expected"), [("lifecycle", [400.5, 410, 420]), ("direct", [300.5, 310, 320])]
)
def test_electricity_maps_export_header_variants(tmp_path, header, emission_factor, expected):
    path = write_em_export(tmp_path / "DE_2024_hourly.csv", header)
    series = read_intensity_csv(path, emission_factor=emission_factor)
    assert series.region == "DE"
    assert series.values.tolist() == expected
    assert series.period_s == 3600
    assert series.times[0] == utc(2024, 1, 1)
    assert series.estimated is False


def test_electricity_maps_estimated_rows_mark_the_series(tmp_path):
    path = write_em_export(tmp_path / "export.csv", EM_NEW_HEADER, estimated=True)
    assert read_intensity_csv(path, "de").estimated is True


def test_electricity_maps_bad_estimated_flag_is_refused(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(EM_NEW_HEADER + "\n" + EM_ROWS[0] + "\n" + EM_ROWS[1].format(estimated="maybe", method="") + "\n")
    with pytest.raises(SignalDataError) as caught:
        read_intensity_csv(path)
    assert caught.value.line == 3
    assert "'Data estimated'" in str(caught.value)


def test_value_error_names_the_header_as_spelled_in_the_file(tmp_path):
    path = tmp_path / "export.csv"
    bad_row = EM_ROWS[1].format(estimated="false", method="").replace(",410,", ",-410,")
    path.write_text(EM_OLD_HEADER + "\n" + EM_ROWS[0] + "\n" + bad_row + "\n")
    with pytest.raises(SignalDataError) as caught:
        read_intensity_csv(path)
    assert caught.value.column == "Carbon Intensity gCO₂eq/kWh (LCA)"
    assert caught.value.line == 3


# --- the generic table helpers ---


def test_read_csv_table_renames_to_logical_columns_and_numbers_lines(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("Job ID, Start  Time ,Energy\nj1,2024-06-01 00:00,0.5\n\nj2,2024-06-01 01:00,0.7\n\n")
    frame, lines = read_csv_table(path, {"job": ("job_id", "job id"), "start": ("start time",)})
    assert list(frame.columns) == ["job", "start", "Energy"]
    assert frame["job"].tolist() == ["j1", "j2"]
    assert lines.tolist() == [2, 4]


def test_read_csv_table_missing_column_names_accepted_and_found_headers(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("id,when\nj1,2024-06-01\n")
    with pytest.raises(SignalDataError) as caught:
        read_csv_table(path, {"job": ("id",), "start": ("start", "timestamp")})
    assert caught.value.column == "start"
    assert "'start' or 'timestamp'" in str(caught.value)
    assert "the headers are 'id', 'when'" in str(caught.value)


def test_read_csv_table_refuses_a_repeated_header(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("time,value,Value\n2024-06-01,1,2\n")
    with pytest.raises(SignalDataError, match="'Value' appears twice"):
        read_csv_table(path, {"time": ("time",)})


def test_find_column_matches_case_spacing_and_subscript():
    headers = ["Datetime (UTC)", "Carbon  intensity gCO2eq/kWh (Life cycle)"]
    assert find_column(headers, ("Carbon Intensity gCO₂eq/kWh (life cycle)",)) == headers[1]
    assert find_column(headers, ("timestamp",)) is None


def test_parse_utc_column_reads_naive_as_utc_and_converts_aware(tmp_path):
    path = tmp_path / "times.csv"
    path.write_text("t\n2024-06-01 00:00:00\n2024-06-01T03:00:00+02:00\n2024-06-01T02:00:00Z\n2024-06-01 03:00\n")
    frame, lines = read_csv_table(path, {"t": ("t",)})
    epoch_s = parse_utc_column(frame, "t", lines, path)
    start_s = int(utc(2024, 6, 1).timestamp())
    assert epoch_s.dtype == np.int64
    assert (epoch_s - start_s).tolist() == [0, 3600, 7200, 10800]


def test_parse_non_negative_column_returns_floats(tmp_path):
    path = tmp_path / "values.csv"
    path.write_text("v\n1\n 2.5 \n0\n1e3\n")
    frame, lines = read_csv_table(path, {"v": ("v",)})
    values = parse_non_negative_column(frame, "v", lines, path)
    assert values.dtype == np.float64
    assert values.tolist() == [1.0, 2.5, 0.0, 1000.0]


def test_check_time_axis_returns_the_most_common_step():
    epoch_s = np.array([0, 900, 1800, 2700], dtype=np.int64)
    assert check_time_axis(epoch_s, np.arange(2, 6), "x.csv", "time") == 900
    with pytest.raises(SignalDataError, match=r"line 4.*irregular step: 300 s after .* on line 3"):
        check_time_axis(np.array([0, 900, 1200, 2100, 3000]), np.arange(2, 7), "x.csv", "time")



# --- files that change resolution partway, as European markets did in 2025 ---


def test_a_file_going_from_30_to_15_minutes_reads_as_one_series_on_15_minutes():
    series = read_intensity_csv(CORPUS / "resolution_change.csv")
    assert series.period_s == 900
    assert series.region == "DE"
    assert (series.times[0], series.times[-1]) == (utc(2025, 9, 30), utc(2025, 10, 1, 23, 45))
    assert len(series) == 2 * 96
    assert series.estimated is False
    assert "rows 900 to 1800 s apart: each value held until the next row, on 900 s periods" in series.source
    assert series.source.startswith(str(CORPUS / "resolution_change.csv"))
    # each half-hour value holds for both of its quarter hours; the quarter hours are as written
    assert series.at(utc(2025, 9, 30, 23, 30)) == series.at(utc(2025, 9, 30, 23, 45)) == 362.1
    assert series.at(utc(2025, 10, 1, 0, 15)) == 356.5
    assert series.at(utc(2025, 10, 1, 0, 30)) == 349.4


def test_the_held_series_integrates_as_the_file_reads(tmp_path):
    text = (CORPUS / "resolution_change.csv").read_text(encoding="utf-8").splitlines()
    values = [float(line.rsplit(",", 1)[1]) for line in text[1:]]
    minutes = [30] * 48 + [15] * 96
    series = read_intensity_csv(CORPUS / "resolution_change.csv")
    assert float(series.values.sum()) * 15 == pytest.approx(sum(v * m for v, m in zip(values, minutes, strict=True)))


def test_a_single_resolution_file_is_not_marked_as_held():
    assert read_intensity_csv(CORPUS / "good.csv").source == str(CORPUS / "good.csv")


def test_a_gap_in_a_file_that_changes_resolution_is_filled_only_when_allowed():
    filled = read_intensity_csv(CORPUS / "resolution_change_gap.csv", max_missing_periods=1)
    assert filled.period_s == 900
    assert filled.estimated is True
    # the gap 00:45 -> 01:30 is interpolated, the half hours before midnight are held
    assert filled.at(utc(2025, 10, 1, 1)) == pytest.approx(355 + (360 - 355) / 3)
    assert filled.at(utc(2025, 9, 30, 22, 15)) == 300


def test_a_stray_short_step_is_still_irregular_not_a_change_of_resolution():
    with pytest.raises(SignalDataError, match="irregular step: 1800 s"):
        read_intensity_csv(CORPUS / "irregular_step.csv")


def test_a_change_of_resolution_off_the_finest_grid_is_refused(tmp_path):
    path = tmp_path / "de_shifted.csv"
    rows = ["2025-09-30 22:00:00,300", "2025-09-30 23:00:00,310", "2025-10-01 00:00:00,320",
            "2025-10-01 01:00:00,330", "2025-10-01 01:10:00,331", "2025-10-01 01:25:00,332",
            "2025-10-01 01:40:00,333", "2025-10-01 01:55:00,334"]
    path.write_text("Time,Carbon Intensity\n" + "\n".join(rows) + "\n")
    with pytest.raises(SignalDataError) as caught:
        read_intensity_csv(path, "DE")
    assert caught.value.line == 6
    assert "irregular step: 600 s after 2025-10-01T01:00:00+00:00 on line 5" in str(caught.value)


def test_check_time_axis_keeps_one_period_for_the_solar_readers():
    with pytest.raises(SignalDataError, match="gap: 1800 s"):
        check_time_axis(np.array([0, 1800, 3600, 5400, 6300, 7200, 8100, 9000]), np.arange(2, 10), "x.csv", "time")


# --- messages a spreadsheet user can act on ---


def test_region_taken_from_the_file_name_is_said(tmp_path, caplog):
    path = tmp_path / "pl_ci.csv"
    path.write_text("Time,Carbon Intensity\n2020-01-01 00:00:00,700\n2020-01-01 00:15:00,710\n")
    with caplog.at_level("WARNING", logger="airflow_carbon.signals.csv"):
        series = read_intensity_csv(path)
    assert "region PL taken from the file name" in series.source
    assert any("'PL' from the file name" in record.getMessage() for record in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="airflow_carbon.signals.csv"):
        assert read_intensity_csv(path, "PL").source == str(path)
    assert not caplog.records


def test_dst_hint_only_for_timestamps_without_offset(tmp_path):
    path = tmp_path / "de.csv"
    path.write_text("Time,Carbon Intensity\n2024-10-27T00:30:00Z,1\n2024-10-27T00:45:00Z,2\n"
                    "2024-10-27T00:45:00Z,3\n")
    with pytest.raises(SignalDataError, match="duplicate") as caught:
        read_intensity_csv(path, "DE")
    assert "daylight-saving" not in str(caught.value)


def test_a_value_with_a_comma_decimal_in_a_quoted_field_gets_a_hint():
    with pytest.raises(SignalDataError, match=r"'300,0' has ',' as decimal mark; write it with '\.' \('300\.0'\)"):
        read_intensity_csv(CORPUS / "comma_decimal.csv")


def test_a_plain_duplicate_gets_no_daylight_saving_hint():
    with pytest.raises(SignalDataError, match="duplicate") as caught:
        read_intensity_csv(CORPUS / "resolution_change_duplicate.csv")
    assert "daylight-saving" not in str(caught.value)
