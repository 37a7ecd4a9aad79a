"""Live sources in a real Airflow (``airflow dags test``) against a real HTTP server on 127.0.0.1.

The credentials are known strings, so every place a secret must never reach can be searched:
the logs, the task logs, XCom and the trigger rows in Airflow's database, the metrics store.
"""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_carbon.metrics import MetricsStore
from tests.e2e.airflow_cli import airflow, migrated_home
from tests.fakes.signal_server import EM_TOKEN, WATTTIME_PASSWORD, WATTTIME_USERNAME, FakeSignalServer

DAGS = Path(__file__).parent / "dags_sources"
SECRETS = (WATTTIME_USERNAME, WATTTIME_PASSWORD, EM_TOKEN)


@pytest.fixture(scope="module")
def server():
    with FakeSignalServer() as fake:
        yield fake


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def run_dag(tmp_path, server_url: str, **carbon: str) -> tuple[str, Path, list[dict]]:
    connections = {
        "AIRFLOW_CONN_WT": {"conn_type": "watttime", "login": WATTTIME_USERNAME, "password": WATTTIME_PASSWORD,
                            "host": server_url, "extra": {"region": "CAISO_NORTH"}},
        "AIRFLOW_CONN_EM": {"conn_type": "electricitymaps", "password": EM_TOKEN, "host": server_url,
                            "extra": {"zone": "DE"}},
        "AIRFLOW_CONN_UK": {"conn_type": "ukgrid", "host": server_url},
    }
    env = migrated_home(tmp_path, AIRFLOW__CORE__DAGS_FOLDER=str(DAGS), AIRFLOW__CARBON__MAX_DELAY="15s",
                        AIRFLOW__CARBON__REFRESH_INTERVAL="3s", AIRFLOW__CARBON__EXPECTED_DURATION="5min",
                        **{name: json.dumps(conn) for name, conn in connections.items()},
                        **{f"AIRFLOW__CARBON__{key.upper()}": value for key, value in carbon.items()})
    out = airflow(env, "dags", "test", "live_source")
    rows = MetricsStore(f"sqlite:///{tmp_path}/carbon_metrics.db").rows(dag_id="live_source")
    return out, tmp_path, rows


def test_a_deferral_on_watttime_leaks_no_secret_anywhere(tmp_path, server):
    server.fail("/v3/forecast", 500, times=3)  # the worker's first read fails: the task defers on no signal
    out, home, [row] = run_dag(tmp_path, server.base_url, source="wt")
    assert "Pausing task as DEFERRED" in out and "state=success" in out
    assert row["state"] == "completed" and row["served_by"] == "conn:wt" and row["signal"] == "watttime:co2_moer"
    assert row["source"] == "conn:wt" and row["emissions_g"] is not None
    xcom = next(line for line in out.splitlines() if "carbon record:" in line)
    assert "'signal_kind': 'marginal'" in xcom  # co2_moer is a marginal rate, and the record says so
    assert server.count("/login") >= 1  # the triggerer really logged in with the secrets

    places = {"dags test output": out}
    for path in home.rglob("*"):
        if path.is_file():
            places[str(path.relative_to(home))] = path.read_bytes().decode("utf-8", "replace")
    assert {"airflow.db", "carbon_metrics.db"} <= set(places)  # XCom and trigger rows; the metrics store
    for secret in SECRETS:
        leaked = [name for name, text in places.items() if secret in text]
        assert not leaked, f"{secret!r} found in {leaked}"


def test_a_source_dead_for_the_whole_wait_still_runs_by_its_deadline_and_says_why(tmp_path):
    out, _, [row] = run_dag(tmp_path, closed_port_url(), source="wt")
    assert "Pausing task as DEFERRED" in out and "state=success" in out
    assert row["reason"] == "deadline" and row["served_by"] is None
    assert row["failed_sources"] and all(f.startswith("conn:wt: ") for f in row["failed_sources"])
    # Released (its trigger fired) at the deadline, plus at most one refresh; starting then is Airflow's latency.
    assert row["decided_at"] <= row["deadline"] + timedelta(seconds=4) and row["started_at"] >= row["decided_at"]


def test_a_failing_primary_falls_back_to_the_next_source(tmp_path, server):
    server.fail("/v3/carbon-intensity", 500, times=None)
    try:
        out, _, [row] = run_dag(tmp_path, server.base_url, source="em", fallback="uk")
    finally:
        server.clear_faults()
    assert "state=success" in out and row["served_by"] == "conn:uk" and row["region"]
    assert any(f.startswith("conn:em: ") for f in row["failed_sources"])
