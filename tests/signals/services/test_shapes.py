"""Checking answers against their shape, and building a series from their points: each refusal names the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.signals.services.errors import BadResponse
from airflow_carbon.signals.services.shapes import Points, Shape, build_series, chunks


def test_build_series_names_the_point_out_of_step():
    shape = Shape("svc", "/x")
    points = Points.empty()
    for i, start in enumerate((0, 300, 600, 1200)):
        points.add(start, 1.0, f"data[{i}].point_time")
    with pytest.raises(BadResponse) as caught:
        build_series(points, shape, period_s=300, region="R", kind="forecast", source="svc")
    assert caught.value.field == "data[3].point_time" and "gap" in str(caught.value)
    with pytest.raises(BadResponse, match="data is empty"):
        build_series(Points.empty(), shape, period_s=300, region="R", kind="forecast", source="svc")
    with pytest.raises(BadResponse) as negative:
        shape.number(-1, "data[0].value")
    assert negative.value.field == "data[0].value"
    with pytest.raises(BadResponse):
        shape.number(float("nan"), "data[0].value")
    with pytest.raises(BadResponse, match="no timezone"):
        shape.instant("2026-06-01T00:00:00", "data[0].point_time")


def test_build_series_sorts_points_and_names_a_repeat():
    shape = Shape("svc", "/x")
    points = Points.empty()
    for i, start in enumerate((600, 0, 300)):
        points.add(start, float(i), f"data[{i}].datetime")
    series = build_series(points, shape, period_s=300, region="R", kind="measured", source="svc", estimated=True)
    assert series.start_epoch_s.tolist() == [0, 300, 600] and series.values.tolist() == [1.0, 2.0, 0.0]
    assert (series.period_s, series.region, series.kind, series.source, series.estimated) == (
        300, "R", "measured", "svc", True)
    points.add(300, 9.0, "data[3].datetime")
    with pytest.raises(BadResponse, match="repeats an instant") as caught:
        build_series(points, shape, period_s=300, region="R", kind="measured", source="svc")
    assert caught.value.field == "data[3].datetime"


@pytest.mark.parametrize("text", ["2026-06-01T12:00:00Z", "2026-06-01T12:00:00.000Z", "2026-06-01T14:00:00+02:00",
                                  "2026-06-01T12:00Z"])
def test_instant_reads_every_timezone_spelling_the_services_use(text):
    assert Shape("svc", "/x").instant(text, "from") == int(datetime(2026, 6, 1, 12, tzinfo=UTC).timestamp())


@pytest.mark.parametrize("value", ["yesterday", 1780315650, None])
def test_instant_refuses_what_is_not_iso_text(value):
    with pytest.raises(BadResponse) as caught:
        Shape("svc", "/x").instant(value, "data[2].from")
    assert caught.value.field == "data[2].from" and str(caught.value).startswith("svc: GET /x: data[2].from ")


def test_extend_unique_keeps_a_shared_boundary_once():
    first, second = Points.empty(), Points.empty()
    first.add(0, 1.0, "a")
    first.add(300, 2.0, "b")
    second.add(300, 5.0, "c")
    second.add(600, 3.0, "d")
    first.extend_unique(second)
    assert (first.starts, first.values, first.fields) == ([0, 300, 600], [1.0, 2.0, 3.0], ["a", "b", "d"])


def test_chunks_cover_the_range_in_pieces_of_at_most_most():
    start = datetime(2026, 3, 1, tzinfo=UTC)
    pieces = chunks(start, start + timedelta(days=25), timedelta(days=10))
    assert [(a - start, b - start) for a, b in pieces] == [
        (timedelta(0), timedelta(days=10)), (timedelta(days=10), timedelta(days=20)),
        (timedelta(days=20), timedelta(days=25))]
    with pytest.raises(ValueError, match="not after"):
        chunks(start, start, timedelta(days=1))
    with pytest.raises(ValueError, match="no timezone"):
        chunks(datetime(2026, 3, 1), start, timedelta(days=1))
