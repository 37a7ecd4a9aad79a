from __future__ import annotations

import csv
import json

import pytest

from airflow_carbon.cli import main
from airflow_carbon.signals.bundled import bundled_path

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
