"""A real PostgreSQL (Debian's, run as this test's own process) for the store's tests on both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
