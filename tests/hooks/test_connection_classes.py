"""A connection reads the same whichever class Airflow hands over: the task SDK's in tasks and triggers,
``airflow.models.Connection`` in the API server (the metadata database) or from a secrets backend."""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.models.connection import Connection as MetadataConnection
from airflow.sdk import BaseHook
from airflow.sdk import Connection as SdkConnection

from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.hooks.sources import aconnection_extra, aread_connection
from airflow_carbon.signals.source import CsvFileSource, SourceRef, aopen

EXTRA = {"path": "/data/grid.csv", "region": "FR", "replay": "true"}


def sdk_connection(conn_id: str, conn_type: str, extra: dict) -> SdkConnection:
    return SdkConnection(conn_id=conn_id, conn_type=conn_type, extra=json.dumps(extra))


def metadata_connection(conn_id: str, conn_type: str, extra: dict) -> MetadataConnection:
    return MetadataConnection(conn_id=conn_id, conn_type=conn_type, extra=json.dumps(extra))


CLASSES = [pytest.param(sdk_connection, id="task-sdk"), pytest.param(metadata_connection, id="metadata-db")]


def test_the_metadata_class_has_no_async_extra_which_is_why_both_are_handled():
    assert not hasattr(metadata_connection("c", "carbon_csv", EXTRA), "aextra_dejson")
    assert hasattr(sdk_connection("c", "carbon_csv", EXTRA), "aextra_dejson")


@pytest.mark.parametrize("make", CLASSES)
def test_the_extra_of_either_class_reads_as_a_dict(make):
    assert asyncio.run(aconnection_extra(make("c", "carbon_csv", EXTRA))) == EXTRA
    assert asyncio.run(aconnection_extra(make("c", "carbon_csv", {}))) == {}


@pytest.mark.parametrize("make", CLASSES)
def test_a_source_connection_of_either_class_opens_as_its_source(make, monkeypatch):
    async def aget_connection(conn_id: str):
        return make(conn_id, "carbon_csv", EXTRA)

    monkeypatch.setattr(BaseHook, "aget_connection", aget_connection)
    ref = SourceRef.connection("grid_csv", "DE")
    config = asyncio.run(aread_connection(ref))
    assert config.conn_type == "carbon_csv" and config.extra == EXTRA and config.conn_id == "grid_csv"
    source = asyncio.run(aopen(ref, aread_connection))
    assert isinstance(source, CsvFileSource) and source.path == "/data/grid.csv" and source.region == "FR"
    assert source.replay is True


@pytest.mark.parametrize("make", CLASSES)
def test_the_metrics_store_connection_of_either_class_gives_its_url(make, monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    monkeypatch.setattr(CarbonMetricsHook, "get_connection",
                        classmethod(lambda cls, conn_id: make(conn_id, "carbon_metrics", {"sqlalchemy_url": url})))
    assert CarbonMetricsHook("carbon_metrics_default").url() == url
