from __future__ import annotations

import csv
import json
import os
import sqlite3
from datetime import UTC, datetime

import pytest

from airflow_carbon.cli import MAX_INPUT_BYTES, main
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics import TaskTryRecord
from airflow_carbon.metrics.migrations import VERSION_TABLE, head
from airflow_carbon.signals.bundled import bundled_path
from tests.metrics.fixtures import create_main_store

JOBS, CARBON, SOLAR = (str(bundled_path(n)) for n in ("inference_jobs.csv", "carbon_intensity.csv",
                                                       "solar_generation.csv"))


def test_the_table_sets_the_seed_straight(capsys):
    assert main(["simulate", JOBS, CARBON, "--solar", SOLAR, "--solar-threshold-kw", "0.05", "--max-delay", "4h"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["immediate"][5] == "1.262" and rows["threshold"][6] == "1.195" and rows["threshold"][7] == "-5.302"
    assert rows["threshold"][2] == "37" and all(row[8] == "0" for row in rows.values())
    assert "net change %" in out.splitlines()[1]


def test_json_and_records(capsys, tmp_path):
    records = tmp_path / "records.csv"
    assert main(["simulate", JOBS, CARBON, "--policy", "forecast,oracle", "--json", "--records", str(records)]) == 0
    report = json.loads(capsys.readouterr().out)
    by_policy = {row["policy"]: row for row in report["policies"]}
    assert list(by_policy) == ["immediate", "forecast", "oracle"]
    assert by_policy["forecast"]["saving_pct"] == pytest.approx(11.03, abs=0.01)
    with records.open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3 * 110 and {"started_at", "reason", "saved_g", "estimated"} <= set(rows[0])


def test_forecast_error_is_accepted_as_a_percentage(capsys):
    assert main(["simulate", JOBS, CARBON, "--policy", "forecast", "--forecast-error", "10%", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"]["forecast_error"] == pytest.approx(0.1)


def test_a_bad_file_gets_its_line_and_column_and_exit_code_2(capsys, tmp_path):
    bad = tmp_path / "carbon.csv"
    bad.write_text("timestamp,region,carbon_intensity\n2024-06-01 00:00,US-TX,200\n2024-06-01 01:00,US-TX,-5\n")
    assert main(["simulate", JOBS, str(bad)]) == 2
    assert "carbon.csv, line 3, column 'carbon_intensity'" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("--max-delay", "soon"), ("--max-delay", "-2h"),
                                             ("--policy", "greedy"), ("--forecast-error", "150%")])
def test_bad_options_are_refused_by_argparse(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", JOBS, CARBON, f"{flag}={value}"])
    assert exit_info.value.code == 2 and value in capsys.readouterr().err


@pytest.fixture
def store_down(monkeypatch, tmp_path):
    """A completion kept in the spool of a SQLite store whose directory does not exist yet."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    for conn_id in ("CARBON_METRICS_DEFAULT", "METRICS_PROD"):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}",
                           json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "down" / "metrics.db")}))
    record = TaskTryRecord("dag", "summarize", "manual__1", state="completed",
                           ready_at=datetime(2024, 6, 1, tzinfo=UTC), started_at=datetime(2024, 6, 1, 1, tzinfo=UTC),
                           ended_at=datetime(2024, 6, 1, 2, tzinfo=UTC),
                           emissions_g=50.0, saved_g=100.0)
    assert not CarbonMetricsHook(retry_wait_s=0).write(record)
    yield tmp_path
    CarbonMetricsHook.reset_store_cache()


def test_metrics_flush_writes_what_the_spool_kept_and_exits_0(store_down, capsys):
    [spooled] = CarbonMetricsHook().spool().pending()
    (store_down / "down").mkdir()
    assert main(["metrics", "--flush"]) == 0
    assert capsys.readouterr().out == (f"1 spooled record(s) written to sqlite:///{store_down}/down/metrics.db; "
                                       f"0 remain in {spooled.parent}\n")
    assert not spooled.exists()
    assert main(["metrics"]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["state"] == "completed" and row["saved_g"] == 100.0 and row["task_id"] == "summarize"


def test_metrics_flush_with_the_store_still_down_exits_1_and_says_what_remains(store_down, capsys):
    [spooled] = CarbonMetricsHook("metrics_prod").spool().pending()
    assert main(["metrics", "--flush", "--conn-id", "metrics_prod"]) == 1
    out, err = capsys.readouterr()
    assert out == (f"0 spooled record(s) written to sqlite:///{store_down}/down/metrics.db; "
                   f"1 remain in {spooled.parent}\n")
    assert "did not answer" in err and "unable to open database file" in err
    assert spooled.exists()


def test_metrics_upgrade_migrates_a_store_made_before_migrations_and_says_from_which_revision(
        monkeypatch, tmp_path, capsys):
    path = tmp_path / "metrics.db"
    create_main_store(f"sqlite:///{path}")
    monkeypatch.setenv("AIRFLOW_CONN_METRICS_PROD", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    assert main(["metrics", "--upgrade", "--conn-id", "metrics_prod"]) == 0
    assert capsys.readouterr().out == (f"upgraded the carbon metrics store at sqlite:///{path} from schema revision "
                                       f"0001 to {head()}\n")
    assert main(["metrics", "--upgrade", "--conn-id", "metrics_prod"]) == 0
    assert capsys.readouterr().out == (f"the carbon metrics store at sqlite:///{path} is already at schema revision "
                                       f"{head()}\n")
    with sqlite3.connect(path) as connection:
        connection.execute(f"UPDATE {VERSION_TABLE} SET version_num = '0099'")
    assert main(["metrics", "--upgrade", "--conn-id", "metrics_prod"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "schema revision '0099'" in err and "Upgrade airflow-carbon" in err


def one_line_error(capsys) -> str:
    """The one line a refused input prints on stderr, with nothing on stdout and no traceback."""
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "carbon.fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(("jobs", "carbon", "says"), [
    ("{tmp}/missing.csv", CARBON, "jobs file '{tmp}/missing.csv': No such file or directory"),
    ("{tmp}", CARBON, "jobs file '{tmp}': not a regular file"),
    ("/dev/zero", CARBON, "jobs file '/dev/zero': not a regular file"),
    (JOBS, "{tmp}/carbon.fifo", "carbon file '{tmp}/carbon.fifo': not a regular file"),
    (JOBS, "{tmp}/huge.csv", "carbon file '{tmp}/huge.csv': 104857601 bytes, more than the 100 MiB an input may have"),
])
def test_an_input_that_is_no_regular_file_of_at_most_100_mib_is_refused_before_it_is_read(
        jobs, carbon, says, tmp_path, fifo, capsys):
    with (tmp_path / "huge.csv").open("wb") as sparse:
        sparse.truncate(MAX_INPUT_BYTES + 1)
    args = [value.format(tmp=tmp_path) for value in (jobs, carbon)]
    assert main(["simulate", *args]) == 2  # a FIFO read would block, /dev/zero fill the memory: neither is opened
    assert one_line_error(capsys) == f"airflow-carbon: error: {says.format(tmp=tmp_path)}\n"


def test_the_help_states_the_size_limit(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--help"])
    assert exit_info.value.code == 0 and "at most 100 MiB" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(("rows", "says"), [
    ("a,2024-06-01 00:30:00,1e308",
     "line 2, column 'energy_kwh': '1e308': more than 1e+09 kWh, the most one job may use"),
    ("a,2024-06-01 00:30:00,nan", "line 2, column 'energy_kwh': not a finite number: 'nan'"),
])
def test_an_absurd_energy_in_a_jobs_file_is_refused_naming_file_and_line(rows, says, tmp_path, capsys):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"job_id,timestamp,energy_kwh\n{rows}\nb,2024-06-01 01:30:00,0.1\n")
    assert main(["simulate", str(jobs), CARBON]) == 2
    assert one_line_error(capsys) == f"airflow-carbon: error: {jobs}, {says}\n"


@pytest.mark.parametrize(("option", "says"), [
    (["--job-duration", "500ms"], "job duration 0:00:00.500000 is out of range"),
    (["--min-saving-pct", "100"], "min_saving_pct must be in [0, 100), got 100.0"),
    (["--records", "{tmp}"], "--records '{tmp}': a directory"),
])
def test_a_bad_option_value_is_one_line_naming_it(option, says, tmp_path, capsys):
    assert main(["simulate", JOBS, CARBON, *(value.format(tmp=tmp_path) for value in option)]) == 2
    assert says.format(tmp=tmp_path) in one_line_error(capsys)


@pytest.mark.parametrize("args", [["metrics"], ["metrics", "--flush"], ["metrics", "--upgrade"]])
def test_an_unknown_conn_id_is_one_line_and_exit_2(args, capsys):
    assert main([*args, "--conn-id", "no_such_store"]) == 2
    assert one_line_error(capsys) == ("airflow-carbon: error: --conn-id: carbon metrics connection 'no_such_store' "
                                      "is not defined\n")


def test_reading_a_store_that_does_not_answer_is_one_line_and_exit_1(store_down, capsys):
    assert main(["metrics", "--conn-id", "metrics_prod"]) == 1
    err = one_line_error(capsys)
    assert err.startswith(f"airflow-carbon: the metrics store at sqlite:///{store_down}/down/metrics.db did not "
                          "answer: OperationalError") and "unable to open database file" in err


def test_a_spool_entry_that_cannot_be_read_is_set_aside_and_the_flush_writes_the_rest(store_down, capsys):
    [spooled] = CarbonMetricsHook().spool().pending()
    entry = spooled.parent / "00000000000000000000-1-000000-decision.json"
    entry.mkdir()  # sorts first; before, the flush took it for the store not answering and wrote nothing
    (store_down / "down").mkdir()
    assert main(["metrics", "--flush"]) == 0
    assert capsys.readouterr().out.startswith("1 spooled record(s) written to ")
    assert not spooled.exists() and entry.with_suffix(".bad").is_dir()


def test_example_files_switch_when_asked_and_read_back_as_the_sources_read_them(tmp_path, capsys):
    from datetime import timedelta

    from airflow_carbon.signals.csv import read_intensity_csv
    from airflow_carbon.signals.solar import read_solar_forecast, read_solar_log

    assert main(["example-signal", str(tmp_path / "grid.csv"), "--green-in", "1h", "--period", "5min"]) == 0
    assert main(["example-solar", str(tmp_path / "solar.csv"), "--sun-in", "1h", "--kw", "2",
                 "--measured", str(tmp_path / "logger.csv"), "--measured-kw", "1.5", "--period", "5min"]) == 0
    now = datetime.now(UTC)
    grid = read_intensity_csv(tmp_path / "grid.csv", "DEMO")
    assert grid.at(now) == 400 and grid.at(now + timedelta(hours=2)) == 120
    solar = read_solar_forecast(tmp_path / "solar.csv", "roof")
    assert solar.at(now) == 0 and solar.at(now + timedelta(hours=2)) == 2
    logged = read_solar_log(tmp_path / "logger.csv", now + timedelta(hours=2), now + timedelta(hours=3), "roof")
    assert logged.kind == "measured" and set(logged.values.tolist()) == {1.5}
    assert "then 1.5 kW" in capsys.readouterr().out


def test_simulate_with_a_forecaster_and_refresh_names_both_in_json(capsys, tmp_path):
    from airflow_carbon.signals.bundled import bundled_intensity

    de = bundled_intensity("DE")
    carbon, jobs = tmp_path / "de.csv", tmp_path / "jobs.csv"
    with carbon.open("w") as file:
        file.write("timestamp,carbon_intensity\n")
        for start_s, value in zip(de.start_epoch_s[:96 * 20], de.values[:96 * 20], strict=True):
            file.write(f"{datetime.fromtimestamp(start_s, UTC):%Y-%m-%dT%H:%M:%SZ},{value}\n")
    with jobs.open("w") as file:
        file.write("job_id,timestamp,energy_kwh,duration_s\n")
        for number in range(40):
            ready = datetime.fromtimestamp(de.first_epoch_s + 15 * 86400 + number * 1800 + 60, UTC)
            file.write(f"j{number},{ready:%Y-%m-%dT%H:%M:%SZ},0.1,600\n")
    assert main(["simulate", str(jobs), str(carbon), "--policy", "forecast,oracle", "--forecast", "seasonal",
                 "--refresh", "30min", "--json"]) == 0
    inputs = json.loads(capsys.readouterr().out)["inputs"]
    assert inputs["forecaster"] == "seasonal" and inputs["refresh_s"] == 1800
    assert main(["simulate", str(jobs), str(carbon), "--forecast-error", "5%", "--refresh", "none", "--json"]) == 0
    inputs = json.loads(capsys.readouterr().out)["inputs"]
    assert inputs["forecaster"] == "noise:0.05" and inputs["refresh_s"] is None
    assert main(["simulate", str(jobs), str(carbon), "--forecast", "model", "--refresh", "none"]) == 0
    assert "forecast model, planned once" in capsys.readouterr().out


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--forecast", "prophet", "unknown forecast 'prophet'"), ("--refresh", "0s", "a refresh must be positive"),
])
def test_a_bad_forecast_or_refresh_is_refused_by_argparse(option, value, says, capsys):
    with pytest.raises(SystemExit):
        main(["simulate", JOBS, CARBON, option, value])
    assert says in capsys.readouterr().err


@pytest.fixture
def carbon_with_a_gap(tmp_path):
    """The bundled carbon file without its 10th line: one hour missing between lines 9 and 10."""
    lines = bundled_path("carbon_intensity.csv").read_text().splitlines(keepends=True)
    path = tmp_path / "carbon_gap.csv"
    path.write_text("".join(lines[:9] + lines[10:]))
    return path


def test_a_carbon_gap_is_refused_naming_file_and_line_unless_max_missing_periods_lets_it_through(
        carbon_with_a_gap, capsys):
    assert main(["simulate", JOBS, str(carbon_with_a_gap), "--policy", "forecast"]) == 2
    err = one_line_error(capsys)
    assert f"{carbon_with_a_gap}, line 10, column 'timestamp': gap: 7200 s after" in err and "on line 9" in err
    assert main(["simulate", JOBS, str(carbon_with_a_gap), "--policy", "forecast", "--max-missing-periods", "1",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"]["estimated"] is True  # the filled hour is an interpolation, and the report says so


def test_a_negative_max_missing_periods_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", JOBS, CARBON, "--max-missing-periods", "-1"])
    assert exit_info.value.code == 2
    assert "--max-missing-periods: must not be negative, got -1" in capsys.readouterr().err


@pytest.mark.parametrize(("solar", "solar_figures"), [([], set()),
                                                      (["--solar", SOLAR], {"solar_profile.png",
                                                                            "solar_energy_used.png"})])
def test_plots_hold_solar_figures_only_when_a_solar_file_is_given(solar, solar_figures, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plots = tmp_path / "plots"
    assert main(["simulate", JOBS, CARBON, "--policy", "forecast", *solar, "--plots", str(plots)]) == 0
    written = {path.name for path in plots.iterdir()}
    assert "grid_intensity.png" in written and {name for name in written if "solar" in name} == solar_figures


# -- metrics: formats and filters -------------------------------------------------------------------

KEYS = [("reports", "summarize", "r1"), ("reports", "summarize", "r2"), ("reports", "tag", "r1"),
        ("billing", "summarize", "r1")]


def seed_store(path) -> None:
    """One completed try for each of ``KEYS`` in a SQLite store at ``path``."""
    from airflow_carbon.metrics import MetricsStore

    store = MetricsStore(f"sqlite:///{path}")
    for dag_id, task_id, run_id in KEYS:
        store.write(TaskTryRecord(dag_id, task_id, run_id, state="completed", region="DE",
                                  ready_at=datetime(2024, 6, 1, tzinfo=UTC),
                                  started_at=datetime(2024, 6, 1, 1, tzinfo=UTC),
                                  ended_at=datetime(2024, 6, 1, 2, tzinfo=UTC), delay_s=3600.0, emissions_g=50.0,
                                  saved_g=12.5, failed_sources=["conn:watttime_default"]))
    store.close()


@pytest.fixture
def seeded_store(monkeypatch, tmp_path):
    """A store behind ``carbon_metrics_default`` holding ``KEYS``."""
    path = tmp_path / "metrics.db"
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    seed_store(path)
    yield path
    CarbonMetricsHook.reset_store_cache()


def printed_keys(out: str) -> list[tuple[str, str, str]]:
    return [(row["dag_id"], row["task_id"], row["run_id"]) for row in map(json.loads, out.splitlines())]


@pytest.mark.parametrize(("filters", "expected"), [
    ([], sorted(KEYS)),
    (["--dag-id", "reports"], sorted(KEYS[:3])),
    (["--task-id", "summarize"], sorted([KEYS[0], KEYS[1], KEYS[3]])),
    (["--run-id", "r2"], [KEYS[1]]),
    (["--dag-id", "reports", "--task-id", "summarize", "--run-id", "r1"], [KEYS[0]]),
    (["--dag-id", "nobody"], []),
])
def test_metrics_json_is_one_object_a_line_and_each_filter_narrows_it(seeded_store, filters, expected, capsys):
    assert main(["metrics", *filters]) == 0
    out = capsys.readouterr().out
    assert printed_keys(out) == expected
    assert main(["metrics", "--format", "json", *filters]) == 0
    assert capsys.readouterr().out == out  # json is the default


def test_metrics_csv_has_every_column_of_the_record_and_reads_back(seeded_store, capsys):
    from airflow_carbon.metrics.record import FIELD_NAMES

    assert main(["metrics", "--format", "csv", "--task-id", "summarize", "--run-id", "r1"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [(row["dag_id"], row["task_id"], row["run_id"]) for row in rows] == sorted([KEYS[0], KEYS[3]])
    assert tuple(rows[0]) == FIELD_NAMES
    assert rows[0]["ready_at"] == "2024-06-01T00:00:00+00:00" and float(rows[0]["emissions_g"]) == 50.0
    assert json.loads(rows[0]["failed_sources"]) == ["conn:watttime_default"] and rows[0]["released_by"] == ""


def test_metrics_csv_without_rows_is_its_header(seeded_store, capsys):
    from airflow_carbon.metrics.record import FIELD_NAMES

    assert main(["metrics", "--format", "csv", "--dag-id", "nobody"]) == 0
    assert capsys.readouterr().out.splitlines() == [",".join(FIELD_NAMES)]


def test_metrics_table_aligns_the_main_columns_in_utc(seeded_store, capsys):
    from airflow_carbon.cli import TABLE_COLUMNS

    assert main(["metrics", "--format", "table", "--dag-id", "reports", "--run-id", "r1"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == list(TABLE_COLUMNS) and len(lines) == 2
    assert lines[0].split() == ["reports", "summarize", "r1", "-1", "1", "completed", "-", "DE", "2024-06-01",
                                "00:00:00", "2024-06-01", "01:00:00", "3600.000", "50.000", "12.500"]
    assert {line.index("completed") for line in lines} == {header.index("state")}  # aligned under its header


def test_metrics_table_without_rows_says_so(seeded_store, capsys):
    assert main(["metrics", "--format", "table", "--task-id", "nobody"]) == 0
    assert capsys.readouterr().out == "no task try in the metrics store matches\n"


@pytest.mark.parametrize(("args", "says"), [
    (["--format", "xml"], "argument --format: invalid choice: 'xml' (choose from "),
    (["--task-id", ""], "argument --task-id: must not be empty"),
    (["--run-id", " "], "argument --run-id: must not be empty"),
])
def test_metrics_a_bad_format_or_filter_is_refused_naming_it(args, says, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["metrics", *args])
    assert exit_info.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.parametrize("action", ["--flush", "--upgrade"])
def test_metrics_format_and_filters_are_not_for_flush_or_upgrade(seeded_store, action, capsys):
    assert main(["metrics", action, "--format", "csv", "--dag-id", "reports"]) == 2
    assert one_line_error(capsys) == ("airflow-carbon: error: --format, --dag-id: for reading rows, not with --flush "
                                      "or --upgrade\n")


def test_metrics_stdout_is_its_output_alone_so_it_pipes_into_jq(tmp_path):
    """The real command, as a user runs it: no connection, so the default store's line is logged, on stderr."""
    import subprocess
    import sys
    from pathlib import Path

    home = tmp_path / "airflow_home"
    home.mkdir()
    seed_store(home / "carbon_metrics.db")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("AIRFLOW_CONN_", "AIRFLOW__CARBON__", "PYTEST_"))}
    env["AIRFLOW_HOME"] = str(home)
    command = Path(sys.executable).with_name("airflow-carbon")
    result = subprocess.run([str(command), "metrics", "--dag-id", "reports"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=600)  # a guard against a hang on a busy machine only
    assert result.returncode == 0, result.stderr
    assert printed_keys(result.stdout) == sorted(KEYS[:3])
    assert "documented default store" in result.stderr and "documented default store" not in result.stdout


# -- people in control: release, eco, budget, audit -------------------------------------------------

@pytest.fixture
def control_store(monkeypatch, tmp_path):
    """A SQLite store in tmp_path behind ``carbon_metrics_default``, one task instance waiting, a known login."""
    from datetime import timedelta

    from airflow_carbon.metrics import MetricsStore, TaskTryKey
    from tests.metrics.seeds import decide

    path = tmp_path / "metrics.db"
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setattr("getpass.getuser", lambda: "oncall")
    store = MetricsStore(f"sqlite:///{path}")
    now = datetime.now(UTC)
    decide(store, TaskTryKey("reports", "summarize", "r1", map_index=2), ready_at=now - timedelta(hours=1),
           start=now + timedelta(hours=3), deadline=now + timedelta(hours=5))
    yield store
    store.close()
    CarbonMetricsHook.reset_store_cache()


def audit_lines(capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["audit", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_release_names_who_and_is_audited(control_store, capsys):
    assert main(["release", "reports", "r1", "summarize", "--map-index", "2", "--reason", "report due"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("released summarize (map index 2) in run r1 of reports, try 1: by cli:oncall at ")
    [entry] = audit_lines(capsys)
    assert (entry["action"], entry["actor"], entry["reason"], entry["map_index"]) == (
        "release", "cli:oncall", "report due", 2)


def test_releasing_what_is_not_waiting_is_one_line_exit_1_and_writes_nothing(control_store, capsys):
    assert main(["release", "reports", "r1", "summarize"]) == 1  # map index -1: not the waiting instance
    assert one_line_error(capsys) == (
        "airflow-carbon: error: DAG_ID RUN_ID TASK_ID --map-index: task 'summarize' (map index -1) of run 'r1' of "
        "DAG 'reports' is not waiting for a cleaner grid\n")
    assert audit_lines(capsys) == []


def test_eco_off_status_and_on(control_store, capsys):
    assert main(["eco", "off", "--dag-id", "reports", "--window", "weekdays 08:00-10:00", "--window",
                 "0 22 * * * for 2h", "--until", "2099-01-01T00:00Z", "--reason", "quarter close"]) == 0
    assert capsys.readouterr().out.startswith(
        "carbon-awareness switched off: DAG reports: ")
    assert main(["eco", "status"]) == 0
    line = capsys.readouterr().out
    assert "in weekdays 08:00-10:00; 0 22 * * * for 2h; until 2099-01-01 00:00 UTC; set by cli:oncall" in line
    assert line.rstrip().endswith(": quarter close")
    assert main(["eco", "on", "--dag-id", "reports", "--reason", "closed"]) == 0
    assert capsys.readouterr().out == "carbon-awareness is on again for DAG reports\n"
    assert main(["eco", "on"]) == 0
    assert capsys.readouterr().out == "carbon-awareness was not switched off for every DAG: nothing changed\n"
    assert main(["eco", "status"]) == 0
    assert capsys.readouterr().out == "carbon-awareness is on everywhere: no switch is set\n"
    assert [(e["action"], e["reason"]) for e in audit_lines(capsys)] == [("eco_on", "closed"),
                                                                         ("eco_off", "quarter close")]


@pytest.mark.parametrize(("args", "says"), [
    (["--window", "weekdays 8-10"], "airflow-carbon: error: --window: windows[0] 'weekdays 8-10': expected"),
    (["--until", "2001-01-01T00:00Z"], "airflow-carbon: error: --until: until 2001-01-01T00:00:00+00:00 is not in "
                                       "the future"),
])
def test_a_bad_switch_is_one_line_naming_the_option_exit_1(control_store, capsys, args, says):
    assert main(["eco", "off", *args]) == 1
    assert one_line_error(capsys).startswith(says)
    assert audit_lines(capsys) == []


def test_a_naive_until_is_refused_by_argparse(control_store, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eco", "off", "--until", "2099-01-01T00:00"])
    assert exit_info.value.code == 2 and "argument --until: instant 2099-01-01T00:00:00 has no timezone" in (
        capsys.readouterr().err)


def test_budget_set_status_clear(control_store, capsys):
    assert main(["budget", "set", "reports", "500", "--period", "week", "--strict", "--reason", "team goal"]) == 0
    assert capsys.readouterr().out.startswith("budget set: reports: 0 g of 500 g per week (0.0%) since ")
    assert main(["budget", "status", "--json"]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["budget_g"], row["period"], row["strict"], row["source"], row["set_by"]) == (
        500.0, "week", True, "api", "cli:oncall")
    assert main(["budget", "clear", "reports", "--reason", "goal met"]) == 0
    assert capsys.readouterr().out == "the budget of DAG reports is cleared\n"
    assert main(["budget", "clear", "reports"]) == 0
    assert capsys.readouterr().out == "DAG reports had no budget to clear: nothing changed\n"
    assert main(["budget", "status"]) == 0
    assert capsys.readouterr().out == "no DAG has a carbon budget\n"
    assert [(e["action"], e["reason"]) for e in audit_lines(capsys)] == [("budget_clear", "goal met"),
                                                                         ("budget_set", "team goal")]


@pytest.mark.parametrize(("args", "says"), [
    (["budget", "set", "reports", "-5", "--period", "day"], "argument grams: must be a finite number of grams above 0"),
    (["budget", "set", "reports", "nan", "--period", "day"], "argument grams: must be a finite number"),
    (["budget", "set", "reports", "5", "--period", "year"], "argument --period: invalid choice: 'year'"),
    (["budget", "set", "reports", "5"], "the following arguments are required: --period"),
    (["release", "d", "r", "t", "--map-index", "-2"], "argument --map-index: must be -1 (not mapped) or more"),
    (["audit", "--limit", "0"], "argument --limit: must be 1 or more"),
])
def test_bad_control_arguments_are_refused_by_argparse_naming_them(args, says, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and says in capsys.readouterr().err


def test_audit_filters_by_dag_and_limits(control_store, capsys):
    assert main(["budget", "set", "other", "5", "--period", "day"]) == 0
    assert main(["eco", "off", "--reason", "all"]) == 0
    assert main(["budget", "set", "reports", "5", "--period", "day", "--reason", "r"]) == 0
    capsys.readouterr()
    assert main(["audit", "--dag-id", "reports"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert " cli:oncall budget_set DAG reports: r {" in line
    assert main(["audit", "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_an_unknown_store_is_one_line_and_exit_1(capsys):
    assert main(["eco", "status", "--conn-id", "no_such_store"]) == 1
    assert one_line_error(capsys).startswith("airflow-carbon: error: --conn-id: carbon metrics connection "
                                             "'no_such_store'")
