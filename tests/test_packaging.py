"""The provider as users install it: a wheel with its data inside, seen by Airflow."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ("carbon_intensity.csv", "inference_jobs.csv", "solar_generation.csv", "de_ci.csv", "fr_ci.csv")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(out), str(ROOT)], check=True, cwd=out)
    return next(out.glob("airflow_carbon-*.whl"))


def test_the_wheel_carries_the_bundled_data_and_the_entry_points(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"airflow_carbon/data/{name}" for name in BUNDLED} <= set(names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "apache_airflow_provider" in entry_points and "airflow-carbon = airflow_carbon.cli:main" in entry_points


def test_bundled_data_reads_from_the_unpacked_wheel_outside_the_checkout(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = ("import airflow_carbon, sys; from airflow_carbon.signals.bundled import bundled_intensity; "
            "s = bundled_intensity('FR'); print(airflow_carbon.__file__, len(s), s.period_s)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    path, length, period_s = result.stdout.split()
    assert path.startswith(str(tmp_path / "site")) and int(length) > 17000 and period_s == "1800"


def test_provider_info_names_the_distribution():
    from importlib.metadata import distribution

    from airflow_carbon.get_provider_info import get_provider_info

    assert get_provider_info()["package-name"] == distribution("airflow-carbon").metadata["Name"]
