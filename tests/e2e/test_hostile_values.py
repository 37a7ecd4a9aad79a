"""Hostile and careless values against a running ``airflow api-server`` with the Carbon plugin, and DAG files
with carelessly written settings in a running dag-processor.

- Every bad value of the Carbon API gets a 400 or 422 whose message names the field, and the api-server logs
  no traceback for any of them.
- A signal connection made with ``airflow connections add`` (a row in the metadata database, which the
  api-server reads as ``airflow.models.Connection``) serves the intensity chart.
- The intensity cache is keyed on normalised values: regions a query string makes up never make the
  api-server read a connection's service again, and 1,500 spellings of one bundled source (each padded with
  thousands of spaces) leave the api-server's memory where it was.
- ``dags_bad_parse_settings/``: each careless setting is an import error naming the task and the setting.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from airflow_carbon.metrics import MetricsStore, TaskTryKey
from airflow_carbon.signals.bundled import bundled_path
from tests.e2e.airflow_cluster import AIRFLOW, AirflowCluster
from tests.fakes.signal_server import WATTTIME_PASSWORD, WATTTIME_USERNAME, FakeSignalServer
from tests.helpers import tree_rss
from tests.metrics.seeds import decide
from tests.signal_files import write_signal

pytestmark = pytest.mark.timeout(600)

AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_bad_parse_settings"
DAG_ID = "hostile_values"
MIB = 1024 * 1024
#: The api-server's process tree may hold this much more memory after 1,500 distinct spellings than before.
RSS_GROWTH_BOUND = 12 * MIB
SPELLINGS = 1500
JOBS, CARBON = (bundled_path(name) for name in ("inference_jobs.csv", "carbon_intensity.csv"))
H = timedelta(hours=1)

#: DAG file -> what its import error must say, naming the task and the setting.
PARSE_TIME = {
    "task_decorator_misspelled.py": "task 'tag_images': unknown carbon setting 'max_dealy'; known: max_delay, deadline",
    "sensor_misspelled.py": "task 'wait_green': unknown carbon setting 'max_dealy'; known: max_delay, deadline",
    "region_without_source.py": "task 'summarize': carbon setting region='XX': no bundled data for region 'XX'; "
                                "bundled regions: DE, FR, US-TX. The task names no source",
    "max_delay_zero.py": "task 'translate': carbon setting max_delay=0: must be longer than 0, got 0; to run at once "
                         "use policy='immediate'",
    "max_delay_nan.py": "task 'translate': carbon setting max_delay=nan: not a duration: nan",
    "deadline_and_max_delay.py": "task 'wait_green': carbon settings deadline='{{ data_interval_end }}' and "
                                 "max_delay=datetime.timedelta(seconds=3600) given together",
    "energy_absurd.py": "task 'evaluate': carbon setting energy_kwh=1e+308: must be at most 1e+09 kWh",
}

#: (path, query, status, field): each bad value of the Carbon API's query strings.
BAD_QUERIES = [
    ("/carbon/api/history", {"end": "9999-12-31"}, 400, "end"),
    ("/carbon/api/history", {"start": "0001-01-01"}, 400, "start"),
    ("/carbon/api/history", {"start": "2024-06-02", "end": "2024-06-01"}, 400, "end"),
    ("/carbon/api/history", {"start": "0000-01-01"}, 422, "start"),
    ("/carbon/api/history.csv", {"end": "9999-12-31"}, 400, "end"),
    ("/carbon/api/tasks", {"start": "9999-12-31"}, 400, "start"),
    ("/carbon/api/tasks", {"limit": "-1"}, 422, "limit"),
    ("/carbon/api/tasks", {"limit": str(2**70)}, 422, "limit"),
    ("/carbon/api/intensity", {"source": "bundled:DE", "start": "9999-12-31"}, 400, "start"),
    ("/carbon/api/intensity", {"source": "bundled:DE", "end": "9999-12-31"}, 400, "end"),
    ("/carbon/api/intensity", {"source": "bundled:DE", "start": "0001-01-01T00:00:00+14:00"}, 400, "start"),
    ("/carbon/api/intensity", {"source": "bundled:XX"}, 400, "source"),
    ("/carbon/api/intensity", {"source": "csv:/etc/passwd"}, 400, "source"),
    ("/carbon/api/intensity", {"source": "conn:grid_db", "region": "XX"}, 400, "region"),
    (f"/carbon/api/decision/{DAG_ID}/r1/summarize", {"map_index": str(2**64)}, 400, "map_index"),
    (f"/carbon/api/decision/{DAG_ID}/r1/summarize", {"map_index": "-2"}, 400, "map_index"),
    (f"/carbon/api/decision/{DAG_ID}/r1/summarize", {"map_index": "9" * 5000}, 400, "map_index"),
    (f"/carbon/api/decision/{DAG_ID}/r%00/summarize", {}, 400, "run_id"),
    ("/carbon/api/history", {"dag_id": f"{DAG_ID}\x00"}, 400, "dag_id"),
    ("/carbon/api/deferred", {"task_id": "t" * 251}, 400, "task_id"),
    ("/carbon/api/intensity", {"source": "conn:" + "c" * 300}, 400, "source"),
]
#: (form, jobs CSV or None for the bundled one, what the 400's message starts with): bad simulation values.
BAD_FORMS = [
    ({"max_delay": "nan"}, None, "max_delay: "),
    ({"max_delay": "NaT"}, None, "max_delay: "),
    ({"job_duration": "nan"}, None, "job_duration: "),
    ({"min_saving_pct": "100"}, None, "min_saving_pct"),
    ({}, b"job_id,timestamp,energy_kwh\na,2024-06-01 00:30:00,1e308\n",
     "jobs.csv, line 2, column 'energy_kwh': '1e308': more than 1e+09 kWh"),
]


# -- the server ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signal_service() -> Iterator[FakeSignalServer]:
    with FakeSignalServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(airflow_cluster: AirflowCluster, signal_service: FakeSignalServer, tmp_path_factory) -> dict[str, Any]:
    """The cluster with two signal connections made by ``airflow connections add`` and records that use them."""
    cluster = airflow_cluster
    signal = write_signal(tmp_path_factory.mktemp("signal") / "grid.csv", green_in_s=3600, period_s=900)
    add_connection(cluster, "grid_db", "--conn-type", "carbon_csv",
                   "--conn-extra", json.dumps({"path": str(signal), "region": "TEST"}))
    add_connection(cluster, "wt_db", "--conn-type", "watttime", "--conn-host", signal_service.base_url,
                   "--conn-login", WATTTIME_USERNAME, "--conn-password", WATTTIME_PASSWORD,
                   "--conn-extra", json.dumps({"region": "CAISO_NORTH"}))
    cluster.wait_for_dag(DAG_ID)
    store = MetricsStore(f"sqlite:///{cluster.home}/carbon_metrics.db")  # the api-server's default store
    now = datetime.now(UTC)
    for task_id, source, region in (("on_grid_db", "conn:grid_db", "TEST"), ("on_wt_db", "conn:wt_db", "CAISO_NORTH")):
        decide(store, TaskTryKey(DAG_ID, task_id, "r1"), ready_at=now - H, start=now + H, deadline=now + 3 * H,
               region=region, source=source, served_by=source)
    store.close()
    token = cluster.login()
    headers = {"Authorization": f"Bearer {token}"}
    assert cluster.client.get("/carbon/api/deferred", headers=headers).status_code == 200
    return {"cluster": cluster, "headers": headers, "signal": signal_service,
            "api": psutil.Process(cluster.process("api-server").pid)}


def add_connection(cluster: AirflowCluster, conn_id: str, *args: str) -> None:
    """``airflow connections add``: a row in the metadata database, as the README tells users to make one."""
    result = subprocess.run([AIRFLOW, "connections", "add", conn_id, *args], env=cluster.env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def get(server: dict[str, Any], path: str, **kwargs: Any) -> httpx.Response:
    return server["cluster"].client.get(path, headers=server["headers"], **kwargs)


def api_log(server: dict[str, Any]) -> Path:
    return server["cluster"].process("api-server").log_path


# -- DAG files ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def import_errors(server: dict[str, Any]) -> dict[str, str]:
    """DAG file name -> its import error, once the dag-processor has listed every bad file."""
    deadline = time.monotonic() + 120
    while True:
        listing = server["cluster"].get("/importErrors", params={"limit": 100})["import_errors"]
        errors = {Path(error["filename"]).name: error["stack_trace"] for error in listing}
        if set(PARSE_TIME) <= set(errors) or time.monotonic() > deadline:
            return errors
        time.sleep(1)


@pytest.mark.parametrize("dag_file", sorted(PARSE_TIME))
def test_a_careless_setting_is_an_import_error_naming_the_task_and_the_setting(import_errors, dag_file):
    says = PARSE_TIME[dag_file]
    error = import_errors.get(dag_file, "")
    assert "CarbonSettingsError" in error and says in error, error[-3000:]
    assert "Invalid arguments were passed" not in error and "AttributeError" not in error


def test_only_the_careless_files_are_import_errors(import_errors):
    assert set(import_errors) == set(PARSE_TIME)


# -- API values ---------------------------------------------------------------------------------

def test_every_bad_value_is_a_4xx_naming_its_field_and_the_server_logs_no_traceback(server):
    log = api_log(server)
    logged_before = log.stat().st_size
    answers = []
    for path, query, status, field in BAD_QUERIES:
        response = get(server, path, params=query)
        detail = response.json().get("detail") if response.headers.get("content-type", "").startswith(
            "application/json") else response.text
        named = ([error["loc"][-1] for error in detail] == [field] if status == 422
                 else isinstance(detail, str) and detail.startswith(f"{field}") and "Traceback" not in detail)
        answers.append((path, str(query)[:80], response.status_code, named, str(detail)[:200]))
    for form, jobs, says in BAD_FORMS:
        files = {"jobs": ("jobs.csv", jobs if jobs is not None else JOBS.read_bytes(), "text/csv"),
                 "carbon": ("carbon.csv", CARBON.read_bytes(), "text/csv")}
        response = server["cluster"].client.post("/carbon/api/simulate", files=files, data={**form, "plots": "false"},
                                                 headers=server["headers"], timeout=120)
        detail = response.json().get("detail", "")
        answers.append(("/carbon/api/simulate", form, response.status_code,
                        isinstance(detail, str) and detail.startswith(says), str(detail)[:200]))
    expected = [(status, True) for *_, status, _ in BAD_QUERIES] + [(400, True)] * len(BAD_FORMS)
    assert [(code, named) for _, _, code, named, _ in answers] == expected, "\n".join(map(str, answers))
    time.sleep(0.5)  # what the server logs for the last request
    with log.open("rb") as file:
        file.seek(logged_before)
        logged = file.read().decode("utf-8", "replace")
    assert "Traceback" not in logged and "Exception in ASGI application" not in logged, logged[-4000:]


# -- connections from the metadata database ---------------------------------------------------

def test_a_connection_made_with_airflow_connections_add_serves_the_intensity_chart(server):
    response = get(server, "/carbon/api/intensity", params={"source": "conn:grid_db", "region": "TEST"})
    assert response.status_code == 200, response.text  # was 502: 'Connection' object has no attribute 'aextra_dejson'
    body = response.json()
    assert body["source"] == "conn:grid_db" and body["region"] == "TEST" and body["failed_sources"] == []
    assert {value for _, value in body["points"]} == {120.0, 400.0}
    watttime = get(server, "/carbon/api/intensity", params={"source": "conn:wt_db", "region": "CAISO_NORTH"})
    assert watttime.status_code == 200 and watttime.json()["region"] == "CAISO_NORTH", watttime.text


# -- the cache ----------------------------------------------------------------------------------

def test_regions_made_up_in_the_query_never_make_the_server_read_the_service_again(server):
    fake: FakeSignalServer = server["signal"]
    assert get(server, "/carbon/api/intensity", params={"source": "conn:wt_db", "region": "CAISO_NORTH"}
               ).status_code == 200
    reads = fake.count("/v3/")
    for n in range(40):
        response = get(server, "/carbon/api/intensity", params={"source": f" conn:wt_db{' ' * n}", "region": f"R{n}"})
        assert response.status_code == 400 and response.json()["detail"].startswith("region: "), response.text
        again = get(server, "/carbon/api/intensity", params={"source": f"conn:wt_db{' ' * n}", "region": "CAISO_NORTH"})
        assert again.status_code == 200, again.text
    assert fake.count("/v3/") == reads  # every answer came from the one cached reading


def test_a_thousand_spellings_of_one_source_leave_the_memory_where_it_was(server):
    def spelling(n: int) -> str:  # "bundled:DE" padded with 3000 + n spaces ("+" in a query string), in three cases
        return f"/carbon/api/intensity?source={('bundled:DE', 'bundled:de', 'bundled:De')[n % 3]}{'+' * (3000 + n)}"

    for n in range(SPELLINGS, SPELLINGS + 100):  # requests like those below, to warm the server up
        assert get(server, spelling(n)).status_code == 200
    before = tree_rss(server["api"])
    for n in range(SPELLINGS):
        response = get(server, spelling(n))
        assert response.status_code == 200 and response.json()["requested_source"] == "bundled:DE", response.text
    grown = tree_rss(server["api"]) - before
    print(f"\napi-server RSS after {SPELLINGS} spellings of bundled:DE: {grown / MIB:+.1f} MiB")
    assert grown < RSS_GROWTH_BOUND
