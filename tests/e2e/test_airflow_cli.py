"""The provider and the example DAG in a real Airflow: its CLI, its metadata database, ``dags test``."""

from __future__ import annotations

import pytest

from tests.e2e.airflow_cli import airflow, migrated_home


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    return migrated_home(tmp_path_factory.mktemp("airflow_home"))


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


def test_airflow_knows_the_connection_types_and_the_carbon_config_section(airflow_env):
    hooks = airflow(airflow_env, "providers", "hooks")
    for conn_type in ("watttime", "electricitymaps", "ukgrid", "carbon_csv", "carbon_metrics"):
        assert conn_type in hooks
    assert airflow(airflow_env, "config", "get-value", "carbon", "max_delay").strip().endswith("4h")
