"""The provider and the example DAG in a real Airflow: its CLI, its metadata database, ``dags test``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False"}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


def airflow(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_airflow_lists_the_provider(airflow_env):
    assert "airflow-carbon" in airflow(airflow_env, "providers", "list")


def test_the_dags_import_cleanly(airflow_env):
    airflow(airflow_env, "dags", "reserialize")
    assert "No data found" in airflow(airflow_env, "dags", "list-import-errors")
    assert "carbon_what_if" in airflow(airflow_env, "dags", "list")


def test_the_what_if_dag_runs_the_simulator_in_airflow(airflow_env):
    out = airflow(airflow_env, "dags", "test", "carbon_what_if")
    assert "threshold: 1.195 kg grid-only (-5.3%)" in out
    assert "state=success" in out
