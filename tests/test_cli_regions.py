"""``airflow-carbon simulate JOBS CARBON [CARBON ...] --regions DE,FR``: one row per mode, and bad input named."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest

from airflow_carbon.cli import main
from tests.helpers import T0

#: DE dirty with a dip at 02:00, FR clean all day: over three days, hourly.
DE = ([400.0] * 2 + [90.0] + [400.0] * 21) * 3
FR = [200.0] * 72


def _stamp(hours: float) -> str:
    return f"{T0 + timedelta(hours=hours):%Y-%m-%dT%H:%M:%SZ}"


@pytest.fixture
def files(tmp_path):
    """Jobs (the last pinned to DE), one carbon file per region, and one file holding both regions."""
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,timestamp,energy_kwh,duration_s,region\n"
                    + "".join(f"j{h},{_stamp(h)},1,3600,\n" for h in (0, 5, 24, 26))
                    + f"pinned,{_stamp(0)},1,3600,DE\n")
    paths = {}
    for region, values in (("DE", DE), ("FR", FR)):
        paths[region] = tmp_path / f"{region.lower()}.csv"
        paths[region].write_text("timestamp,carbon_intensity\n"
                                 + "".join(f"{_stamp(h)},{v}\n" for h, v in enumerate(values)))
    both = tmp_path / "both.csv"
    both.write_text("timestamp,region,carbon_intensity\n" + "".join(
        f"{_stamp(h)},{region},{v}\n" for region, values in (("DE", DE), ("FR", FR)) for h, v in enumerate(values)))
    return jobs, paths["DE"], paths["FR"], both


def _json(capsys, *args: str) -> dict:
    assert main(["simulate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_two_carbon_files_give_one_row_per_mode_with_the_split(files, capsys, tmp_path):
    jobs, de, fr, _ = files
    records = tmp_path / "records.csv"
    assert main(["simulate", str(jobs), str(de), str(fr), "--regions", "DE,FR", "--max-delay", "4h",
                 "--refresh", "none", "--records", str(records)]) == 0
    out = capsys.readouterr().out
    assert "5 jobs (1 pinned to a region), regions DE, FR (home DE)" in out and "saved by place kg" in out
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["time", "place", "time+place", "oracle"]
    with records.open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 4 * 5 and {"home", "time_saved_g", "place_saved_g"} <= set(rows[0])
    assert {row["region"] for row in rows if row["job_id"] == "pinned"} == {"DE"}
    report = _json(capsys, str(jobs), str(de), str(fr), "--regions", "DE,FR", "--max-delay", "4h")
    assert report["inputs"]["regions"] == ["DE", "FR"] and report["inputs"]["pinned"] == 1
    modes = {mode["mode"]: mode for mode in report["modes"]}
    assert list(modes) == ["time", "place", "time+place", "oracle"]
    # j26 is ready in DE's dip, cleaner than FR, and the pinned job stays: three move
    assert modes["place"]["moved"] == 3 and modes["time"]["moved"] == 0
    assert modes["time+place"]["saving_pct"] >= max(modes["time"]["saving_pct"], modes["place"]["saving_pct"])
    assert modes["oracle"]["oracle_share"] == pytest.approx(1.0)
    assert all(mode["deadline_misses"] == 0 for mode in modes.values())
    together = modes["time+place"]
    assert together["time_kg"] + together["place_kg"] == pytest.approx(together["baseline_kg"]
                                                                       - together["scheduled_kg"])


def test_one_file_with_a_region_column_reads_as_two_files(files, capsys):
    jobs, de, fr, both = files
    apart = _json(capsys, str(jobs), str(de), str(fr), "--regions", "DE,FR")["modes"]
    together = _json(capsys, str(jobs), str(both), "--regions", "DE,FR")["modes"]
    assert [m["scheduled_kg"] for m in together] == [m["scheduled_kg"] for m in apart]


@pytest.mark.parametrize(("carbon", "regions", "says"), [
    (("de", "fr"), "DE,de", "region de is listed twice in 'DE,de'"),
    (("de", "fr"), ",", "no region in ','"),
])
def test_a_bad_regions_list_is_refused_by_argparse(files, carbon, regions, says, capsys):
    jobs, de, fr, _ = files
    paths = {"de": de, "fr": fr}
    with pytest.raises(SystemExit):
        main(["simulate", str(jobs), *(str(paths[name]) for name in carbon), "--regions", regions])
    assert says in capsys.readouterr().err


def test_bad_input_is_one_line_naming_the_file_or_region(files, capsys, tmp_path):
    jobs, de, fr, both = files
    cases = [
        ([str(de), str(fr), str(fr), "--regions", "DE,FR"], "3 carbon files for 2 regions (DE, FR)"),
        ([str(de), "--regions", "DE,FR"], f"carbon file {str(de)!r} has no region column"),
        ([str(both), "--regions", "DE,ES"], "no rows for region 'ES'"),
        ([str(de), str(fr)], "2 carbon files"),
        ([str(de), str(fr), "--regions", "DE,FR", "--solar", str(de)], "--solar does not go with --regions"),
        ([str(de), str(fr), "--regions", "DE,FR", "--policy", "oracle"], "--policy does not go with --regions"),
    ]
    for args, says in cases:
        assert main(["simulate", str(jobs), *args]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    pinned = tmp_path / "pinned.csv"
    pinned.write_text(f"job_id,timestamp,energy_kwh,region\na,{_stamp(0)},1,\nb,{_stamp(1)},1,ES\n")
    assert main(["simulate", str(pinned), str(de), str(fr), "--regions", "DE,FR"]) == 2
    err = capsys.readouterr().err
    assert "pinned.csv, line 3, column 'region': job b is pinned to region 'ES'" in err


def test_without_regions_one_carbon_file_runs_as_before(files, capsys):
    jobs, de, _, _ = files
    report = _json(capsys, str(jobs), str(de), "--policy", "forecast")
    assert [row["policy"] for row in report["policies"]] == ["immediate", "forecast"]
    assert report["inputs"]["carbon"] == str(de) and report["inputs"]["region"] == "DE"  # from the file name
