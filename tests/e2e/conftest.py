"""Fixtures for end-to-end tests against a real Airflow (see ``airflow_cluster.py``).

A test module names its DAGs folder, and optionally extra environment, at module level::

    AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_harness"
    AIRFLOW_ENV = {"AIRFLOW__CORE__PARALLELISM": "8"}     # optional
    AIRFLOW_TRIGGERER_CLOCK = True                         # optional: triggerers under libfaketime
    AIRFLOW_CLOCK_AT = datetime(2026, 12, 1, 19, 30, tzinfo=UTC)  # optional: Airflow's clock starts there

    def test_something(airflow_cluster): ...

``airflow_cluster`` is module scoped: one cluster per test module, stopped after its last test. Set
``AIRFLOW_E2E_KEEP_HOME=1`` to keep the temporary AIRFLOW_HOME (database, task and process logs) for a look later.
When a test that uses the cluster fails, the tail of every process's log is added to the report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.airflow_cluster import AirflowCluster


@pytest.fixture(scope="module")
def airflow_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[AirflowCluster]:
    dags_folder = getattr(request.module, "AIRFLOW_DAGS_FOLDER", None)
    if dags_folder is None:
        raise pytest.UsageError(f"{request.module.__name__} must set AIRFLOW_DAGS_FOLDER to use airflow_cluster")
    env = getattr(request.module, "AIRFLOW_ENV", None)
    keep = os.environ.get("AIRFLOW_E2E_KEEP_HOME", "") not in ("", "0")
    clock = None
    if getattr(request.module, "AIRFLOW_TRIGGERER_CLOCK", False):
        clock = tmp_path_factory.mktemp("clock") / "triggerer-clock"
    clock_at: datetime | None = getattr(request.module, "AIRFLOW_CLOCK_AT", None)
    offset_s = None if clock_at is None else (clock_at - datetime.now(UTC)).total_seconds()
    with AirflowCluster(Path(dags_folder), env=env, keep_home=keep, triggerer_clock=clock,
                        clock_offset_s=offset_s) as cluster:
        yield cluster
    if keep:
        print(f"AIRFLOW_HOME kept at {cluster.home}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    cluster = getattr(item, "funcargs", {}).get("airflow_cluster")
    if report.failed and isinstance(cluster, AirflowCluster) and cluster.home.exists():
        report.sections.append(("airflow process logs", cluster.process_logs()))
    return report
