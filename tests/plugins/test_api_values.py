"""Edge and hostile values on the Carbon API, as the API server runs it (see ``test_api.py``): each bad value is a
400 or 422 naming its field, the intensity cache stays bounded and keyed on normalised values, and a signal
connection stored in the metadata database serves the chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.metrics import TaskTryKey
from tests.metrics.seeds import decide
from tests.plugins.test_api import CARBON, JOBS, _add_connection, airflow_api, as_user, client, upload
from tests.signal_files import write_signal

__all__ = ["airflow_api", "client"]  # the fixtures, shared with test_api.py

H = timedelta(hours=1)


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/carbon/api/history", {"end": "9999-12-31"}, "end"),
    ("/carbon/api/history", {"start": "0001-01-01"}, "start"),
    ("/carbon/api/history.csv", {"end": "9999-12-31"}, "end"),
    ("/carbon/api/tasks", {"end": "9999-12-31"}, "end"),
    ("/carbon/api/intensity", {"source": "bundled:DE", "start": "9999-12-31"}, "start"),
    ("/carbon/api/intensity", {"source": "bundled:DE", "end": "9999-12-31"}, "end"),
    ("/carbon/api/intensity", {"source": "bundled:DE", "start": "0001-01-01T00:00:00+14:00"}, "start"),
    ("/carbon/api/intensity", {"source": "bundled:DE", "start": "1899-12-31", "end": "1900-01-02"}, "start"),
    ("/carbon/api/decision/dag_a/r1/summarize", {"map_index": str(2**64)}, "map_index"),
    ("/carbon/api/decision/dag_a/r1/summarize", {"map_index": "-2"}, "map_index"),
    ("/carbon/api/decision/dag_a/r1/summarize", {"map_index": "9" * 5000}, "map_index"),
    ("/carbon/api/decision/dag_a/r%00/summarize", {}, "run_id"),
    ("/carbon/api/history", {"dag_id": "dag_a\x00"}, "dag_id"),
    ("/carbon/api/history", {"region": "DE" * 200}, "region"),
    ("/carbon/api/deferred", {"task_id": "t" * 251}, "task_id"),
    ("/carbon/api/intensity", {"source": "conn:" + "c" * 300}, "source"),
    ("/carbon/api/intensity", {"source": "bundled:XX"}, "source"),
])
def test_a_value_out_of_range_is_a_400_naming_its_field(airflow_api, client, path, params, field):
    response = client.get(path, params=params, headers=as_user(airflow_api, "admin"))
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(f"{field}: "), response.text


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/carbon/api/tasks", {"limit": "-1"}, "limit"),
    ("/carbon/api/tasks", {"limit": str(10**30)}, "limit"),
    ("/carbon/api/history", {"start": "0000-01-01"}, "start"),
    ("/carbon/api/history", {"end": "2024-02-30"}, "end"),
])
def test_a_value_of_the_wrong_type_is_a_422_naming_its_field(airflow_api, client, path, params, field):
    response = client.get(path, params=params, headers=as_user(airflow_api, "admin"))
    assert response.status_code == 422, response.text
    assert [error["loc"][-1] for error in response.json()["detail"]] == [field]


def test_the_far_ends_of_the_range_are_answered(airflow_api, client):
    headers = as_user(airflow_api, "admin")
    assert client.get("/carbon/api/history", params={"start": "1900-01-01", "end": "2199-12-31"},
                      headers=headers).status_code == 200
    assert client.get("/carbon/api/decision/dag_b/r9/evaluate", params={"map_index": "3"},
                      headers=headers).status_code == 200


@pytest.mark.parametrize(("form", "message"), [
    ({"max_delay": "nan"}, "max_delay: not a duration: 'nan'"),
    ({"max_delay": "NaT"}, "max_delay: not a duration: 'NaT'"),
    ({"job_duration": "nan"}, "job_duration: not a duration: 'nan'"),
    ({"min_saving_pct": "100"}, "min_saving_pct"),
])
def test_bad_simulation_values_are_a_400_naming_the_field(airflow_api, client, form, message):
    files = upload(("jobs", JOBS, "jobs.csv"), ("carbon", CARBON, "carbon.csv"))
    response = client.post("/carbon/api/simulate", files=files, data={**form, "plots": "false"},
                           headers=as_user(airflow_api, "admin"))
    assert response.status_code == 400 and response.json()["detail"].startswith(message), response.text


def test_an_absurd_energy_in_an_uploaded_jobs_file_is_a_400_naming_its_line(airflow_api, client):
    jobs = b"job_id,timestamp,energy_kwh\na,2024-06-01 00:30:00,0.1\nb,2024-06-01 01:30:00,1e308\n"
    files = upload(("jobs", jobs, "jobs.csv"), ("carbon", CARBON, "carbon.csv"))
    response = client.post("/carbon/api/simulate", files=files, data={"plots": "false"},
                           headers=as_user(airflow_api, "admin"))
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == ("jobs.csv, line 3, column 'energy_kwh': '1e308': more than 1e+09 kWh, "
                                         "the most one job may use")


@pytest.fixture
def loads(monkeypatch) -> list[tuple]:
    """The sources the intensity route reads, one entry per read that missed the cache."""
    from airflow_carbon.plugins import intensity

    intensity.clear_intensity_cache()
    calls: list[tuple] = []
    real = intensity.load_first
    monkeypatch.setattr(intensity, "load_first", lambda refs, *args: calls.append(tuple(refs)) or real(refs, *args))
    yield calls
    intensity.clear_intensity_cache()


def test_spellings_of_one_bundled_source_share_one_cache_entry(airflow_api, client, loads):
    headers = as_user(airflow_api, "analyst")
    for params in ({"source": "bundled:DE"}, {"source": " bundled:DE  "}, {"source": "bundled:de"},
                   {"source": "bundled: DE"}, {"region": " de "}, {"source": "bundled:DE", "region": "nowhere"}):
        response = client.get("/carbon/api/intensity", params=params, headers=headers)
        assert response.status_code == 200 and response.json()["requested_source"] == "bundled:DE", params
    assert [ref.name for (ref,) in loads] == ["bundled:DE"]


def test_the_cache_keeps_its_most_recently_used_entries_only(airflow_api, client, loads, monkeypatch):
    from airflow_carbon.plugins import intensity

    monkeypatch.setattr(intensity, "INTENSITY_CACHE_ENTRIES", 2)
    headers = as_user(airflow_api, "analyst")
    for region in ("DE", "FR", "DE", "US-TX", "DE", "FR"):
        assert client.get("/carbon/api/intensity", params={"region": region}, headers=headers).status_code == 200
    # DE stays as the most recently used; FR is dropped for US-TX, then read again.
    assert [ref.name for (ref,) in loads] == ["bundled:DE", "bundled:FR", "bundled:US-TX", "bundled:FR"]


def test_the_history_a_chart_asks_for_is_rounded_to_a_few_lengths(airflow_api, client, loads):
    headers = as_user(airflow_api, "analyst")
    now = datetime.now(UTC)
    for hours_back in range(26, 70, 3):  # 15 starts, one length
        start = (now - timedelta(hours=hours_back)).isoformat()
        assert client.get("/carbon/api/intensity", params={"source": "bundled:FR", "start": start},
                          headers=headers).status_code == 200
    assert len(loads) == 1


def test_a_connection_in_the_metadata_database_serves_the_chart_for_the_regions_its_tasks_recorded(
        airflow_api, client, loads, tmp_path):
    signal = write_signal(tmp_path / "grid.csv", green_in_s=3600, period_s=900)
    _add_connection("grid_db", "carbon_csv", {"path": str(signal), "region": "TEST"})  # as the UI and CLI store it
    now = datetime.now(UTC)
    decide(airflow_api["store"], TaskTryKey("dag_a", "grid_task", "r_grid"), ready_at=now - H, start=now + H,
           deadline=now + 3 * H, region="TEST", source="conn:grid_db", served_by="conn:grid_db")
    headers = as_user(airflow_api, "analyst")
    response = client.get("/carbon/api/intensity", params={"source": "conn:grid_db", "region": "TEST"},
                          headers=headers)
    assert response.status_code == 200, response.text  # was a 502: AttributeError 'aextra_dejson'
    body = response.json()
    assert body["region"] == "TEST" and body["source"] == "conn:grid_db" and len(body["points"]) > 0
    assert {value for _, value in body["points"]} == {120.0, 400.0}
    again = client.get("/carbon/api/intensity", params={"source": " conn:grid_db ", "region": "TEST"},
                       headers=headers)
    assert again.status_code == 200
    for region in ("DE", "FR", "nowhere"):  # regions no task recorded with it: never a read of the connection
        refused = client.get("/carbon/api/intensity", params={"source": "conn:grid_db", "region": region},
                             headers=headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["detail"] == (f"region: {region!r} is not a region the tasks on conn:grid_db recorded "
                                            "(TEST)")
    assert [ref.name for (ref,) in loads] == ["conn:grid_db"]
