"""A real PostgreSQL (Debian's, run as this test's own process) for the store's tests on both backends, and a store
on each (a module that needs another ``store`` defines its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_carbon.metrics import MetricsStore
from tests.e2e.distributed import PostgresServer, postgres_bindir


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    assert postgres_bindir(), "needs Debian's PostgreSQL: make test installs it"
    server = PostgresServer(databases=())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[MetricsStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metrics.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    store = MetricsStore(url)
    yield store
    store.close()
