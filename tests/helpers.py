"""Small builders shared by the tests: series on a fixed day, in epoch seconds, and sources opened without Airflow."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import psutil

from airflow_carbon.signals import SOLAR_UNIT, Series
from airflow_carbon.signals.services.pool import aclose_clients
from airflow_carbon.signals.source import SourceConfig, SourceRef

T = TypeVar("T")

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def series(values: Sequence[float], period_s: int = 3600, start: datetime = T0, **kwargs) -> Series:
    start_s = int(start.timestamp())
    return Series(start_s + period_s * np.arange(len(values)), np.asarray(values, dtype=float), period_s, "TEST",
                  **kwargs)


def solar_series(values_kw: Sequence[float], period_s: int = 3600, start: datetime = T0) -> Series:
    return series(values_kw, period_s, start, unit=SOLAR_UNIT)


class ConnectionReader:
    """Reads one connection's fields, as the Airflow layer's ``aread_connection`` does, and counts the reads."""

    def __init__(self, conn_type: str | None, *, host: str | None = None, login: str | None = None,
                 password: str | None = None, **extra: Any) -> None:
        self.conn_type, self.host, self.login, self.password, self.extra = conn_type, host, login, password, extra
        self.reads: list[str | None] = []

    async def __call__(self, ref: SourceRef) -> SourceConfig:
        self.reads.append(ref.conn_id)
        return SourceConfig(ref.name, ref.region, conn_id=ref.conn_id, conn_type=self.conn_type, host=self.host,
                            login=self.login, password=self.password, extra=dict(self.extra))


def run_sources(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` in a new event loop, closing the pooled clients its sources opened before the loop ends."""

    async def closing() -> T:
        try:
            return await coro
        finally:
            await aclose_clients()

    return asyncio.run(closing())


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and every process below it (an api-server and its workers)."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


@contextlib.contextmanager
def dag_file_module(home: Path, name: str, source: str) -> Iterator[ModuleType]:
    """A migrated metadata database in ``home`` and a DAGs folder holding ``source`` as ``name.py``, this process
    pointed at both for ``dag.test()``; yields the file loaded as a module, and points the process back after."""
    import pytest
    from airflow import settings
    from airflow.utils.db import initdb

    folder = home / "dags"
    folder.mkdir()
    (folder / f"{name}.py").write_text(source)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
        patch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
        settings.configure_vars()
        settings.reconfigure_orm()
        initdb()
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    settings.configure_vars()
    settings.reconfigure_orm()


@contextlib.contextmanager
def watttime_fake_connection(monkeypatch: Any, tmp_path: Path) -> Iterator[Any]:
    """The loopback WattTime fake as connection ``wt`` (region CAISO_NORTH) and a SQLite metrics store of the test's
    own, with circuit breakers and the store cache reset around it."""
    import json

    from airflow_carbon.hooks.metrics import CarbonMetricsHook
    from airflow_carbon.signals.services.http import reset_breakers
    from tests.fakes.signal_server import WATTTIME_PASSWORD, WATTTIME_USERNAME, FakeSignalServer

    reset_breakers()
    with FakeSignalServer() as fake:
        monkeypatch.setenv("AIRFLOW_CONN_WT", json.dumps({
            "conn_type": "watttime", "login": WATTTIME_USERNAME, "password": WATTTIME_PASSWORD,
            "host": fake.base_url, "extra": {"region": "CAISO_NORTH"}}))
        monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                           json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "metrics.db")}))
        yield fake
    CarbonMetricsHook.reset_store_cache()
    reset_breakers()


#: The data files the wheel must carry in ``airflow_carbon/data``.
BUNDLED = ("carbon_intensity.csv", "inference_jobs.csv", "solar_generation.csv", "de_ci.csv", "fr_ci.csv")


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]
