import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_carbon.signals.bundled import (
    BUNDLED_REGIONS,
    bundled_intensity,
    bundled_path,
)
from airflow_carbon.signals.replay import replay

SHIPPED = [
    "carbon_intensity.csv",
    "de_ci.csv",
    "fr_ci.csv",
    "inference_jobs.csv",
    "solar_5min_normalised.csv",
    "solar_generation.csv",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_bundled_path_finds_each_shipped_file(name):
    path = bundled_path(name)
    assert path.name == name
    assert path.is_file()
    assert path.parent.name == "data"


def test_bundled_path_refuses_an_unknown_name_listing_the_files():
    with pytest.raises(ValueError, match=r"no bundled data file 'uk_ci.csv'; the bundled files are .*de_ci.csv"):
        bundled_path("uk_ci.csv")
    with pytest.raises(ValueError, match="no bundled data file"):
        bundled_path("../signals/series.py")


@pytest.mark.parametrize(
    ("region", "expected_region", "period_s", "length", "file"),
    [
        ("DE", "DE", 900, 37149, "de_ci.csv"),
        ("fr", "FR", 1800, 18574, "fr_ci.csv"),
        ("us-tx", "US-TX", 3600, 24, "carbon_intensity.csv"),
        (" US-TX ", "US-TX", 3600, 24, "carbon_intensity.csv"),
    ],
)
def test_bundled_intensity_by_region_in_any_case(region, expected_region, period_s, length, file):
    series = bundled_intensity(region)
    assert (series.region, series.period_s, len(series)) == (expected_region, period_s, length)
    assert series.kind == "measured"
    assert series.source == str(bundled_path(file))


def test_bundled_regions_are_the_known_ones():
    assert BUNDLED_REGIONS == ("DE", "FR", "US-TX")
    assert [bundled_intensity(region).region for region in BUNDLED_REGIONS] == list(BUNDLED_REGIONS)


def test_unknown_bundled_region_lists_the_known_ones():
    with pytest.raises(ValueError, match="no bundled intensity for region 'UK'; the bundled regions are DE, FR, US-TX"):
        bundled_intensity("UK")


def test_bundled_german_series_says_it_holds_estimated_values():
    assert bundled_intensity("DE").estimated is True
    assert bundled_intensity("FR").estimated is False


def test_bundled_series_is_read_once_and_cannot_be_altered():
    series = bundled_intensity("de")
    assert bundled_intensity("DE") is series
    with pytest.raises(ValueError, match="read-only"):
        series.values[0] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        series.start_epoch_s[0] = 0


def test_bundled_series_replays_onto_today():
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    replayed = replay(bundled_intensity("FR"), now)
    assert replayed.replayed
    assert replayed.region == "FR"
    assert replayed.at(now) is not None
    assert replayed.source == f"replay of {bundled_path('fr_ci.csv')}"


def test_signals_never_import_airflow():
    modules = "airflow_carbon.signals.csv, airflow_carbon.signals.replay, airflow_carbon.signals.bundled"
    code = f"import sys, {modules}; sys.exit('airflow' in sys.modules)"
    project = Path(__file__).parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=project, check=False).returncode == 0
