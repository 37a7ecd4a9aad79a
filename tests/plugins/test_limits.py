"""The Carbon API's limits, in the API server's own process: request bodies, simulations, the OpenAPI page.

The app is the one ``init_plugins`` mounts at ``/carbon`` behind Airflow's auth manager (``test_api.airflow_api``).
Request bodies are driven through ASGI directly, so a test sees exactly how much of a body the server read.
The same limits against a running api-server, with real sockets and real concurrency, are in
``tests/e2e/test_hostile_uploads.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from fastapi import HTTPException

from airflow_carbon.plugins import app as carbon_app
from airflow_carbon.plugins import pages, simulation
from airflow_carbon.plugins.simulation import SimulationSlots
from tests.plugins import test_api
from tests.plugins.test_api import CARBON, JOBS, as_user, upload

# The fixtures of test_api, one instance for this module: a migrated AIRFLOW_HOME, the app mounted as Airflow does.
airflow_api = test_api.airflow_api
client = test_api.client

CHUNK = 64 * 1024
BOUNDARY = "carbonlimits"
VENDOR = Path(simulation.__file__).with_name("static") / "vendor"


# -- request bodies -----------------------------------------------------------------------------

def endless_upload() -> Iterator[bytes]:
    """A multipart form whose jobs file never ends, in ``CHUNK`` pieces."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"jobs\"; filename=\"jobs.csv\"\r\n"
           "Content-Type: text/csv\r\n\r\njob_id,timestamp,expected_power_kwh\r\n").encode()
    while True:
        yield b"j,2024-06-01 00:00,1\r\n" * (CHUNK // 22)


def post(airflow_api: dict[str, Any], body: Iterator[bytes], headers: dict[str, str]) -> dict[str, Any]:
    """POST ``/carbon/api/simulate`` through ASGI; what came back and how many body bytes the app asked for."""
    read = {"bytes": 0, "calls": 0}
    sent: list[dict[str, Any]] = []
    raw = [(key.lower().encode(), value.encode()) for key, value in
           {"host": "testserver", "content-type": f"multipart/form-data; boundary={BOUNDARY}", **headers}.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/carbon/api/simulate", "raw_path": b"/carbon/api/simulate", "root_path": "", "query_string": b"",
             "headers": raw, "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {}}

    async def receive() -> dict[str, Any]:
        chunk = next(body)
        read["calls"] += 1
        read["bytes"] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(airflow_api["client"].app(scope, receive, send))
    start = next(message for message in sent if message["type"] == "http.response.start")
    payload = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return {"status": start["status"], "headers": dict(start["headers"]), "detail": json.loads(payload)["detail"],
            **read}


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("forged.jwt.token", 403)])
def test_a_chunked_body_without_a_valid_token_is_refused_before_a_byte_is_read(airflow_api, token, status):
    headers = {"transfer-encoding": "chunked"} | ({"authorization": f"Bearer {token}"} if token else {})
    answer = post(airflow_api, endless_upload(), headers)
    assert answer["status"] == status and answer["calls"] == 0
    assert answer["headers"][b"connection"] == b"close"  # the server reads no more of it either


@pytest.mark.parametrize("credential", ["bearer", "cookie"])
def test_an_authenticated_chunked_body_is_cut_at_the_limit(airflow_api, credential):
    token = airflow_api["tokens"]["analyst"]
    # The UI's simulate page posts with its session cookie, a script with a Bearer token.
    sent = {"authorization": f"Bearer {token}"} if credential == "bearer" else {"cookie": f"_token={token}"}
    answer = post(airflow_api, endless_upload(), {"transfer-encoding": "chunked", **sent})
    assert answer["status"] == 413
    assert answer["detail"] == f"request body larger than {carbon_app.REQUEST_LIMIT}"
    assert answer["detail"].startswith("request body larger than 15,990,784 bytes (15.25 MiB: 3 files of 5 MiB")
    assert carbon_app.MAX_REQUEST_BYTES < answer["bytes"] <= carbon_app.MAX_REQUEST_BYTES + CHUNK
    assert answer["headers"][b"connection"] == b"close"


def test_a_announced_oversize_body_is_refused_unread_and_anonymous_first(airflow_api):
    length = {"content-length": str(carbon_app.MAX_REQUEST_BYTES + 1)}
    anonymous = post(airflow_api, endless_upload(), length)
    assert anonymous["status"] == 401 and anonymous["calls"] == 0
    signed_in = post(airflow_api, endless_upload(), length | {"authorization": as_user(airflow_api, "admin")[
        "Authorization"]})
    assert signed_in["status"] == 413 and signed_in["calls"] == 0
    assert signed_in["detail"] == f"request body of 15,990,785 bytes is larger than {carbon_app.REQUEST_LIMIT}"


# -- simulations --------------------------------------------------------------------------------

def jobs_csv(rows: int, newline: str = "\n") -> bytes:
    lines = ["job_id,timestamp,expected_power_kwh"]
    lines += [f"j{i},2024-06-01 {i % 20:02d}:{i % 60:02d}:00,0.01" for i in range(rows)]
    return (newline.join(lines) + newline).encode()


def hourly_carbon_csv(points: int) -> bytes:
    start = datetime(2024, 1, 1)
    lines = ["timestamp,region,carbon_intensity"]
    lines += [f"{start + timedelta(hours=i):%Y-%m-%d %H:%M},DE,{200 + (i * 37) % 100}" for i in range(points)]
    return ("\n".join(lines) + "\n").encode()


def slow_simulation() -> list[Any]:
    """1,000 jobs that may each wait years over 50,000 hours: about 30 s of CPU for the forecast policy."""
    start = datetime(2024, 1, 1)
    jobs = ["job_id,timestamp,expected_power_kwh"] + [f"j{i},{start + timedelta(minutes=7 * i):%Y-%m-%d %H:%M},0.1"
                                                       for i in range(1000)]
    return upload(("jobs", ("\n".join(jobs) + "\n").encode(), "jobs.csv"),
                  ("carbon", hourly_carbon_csv(50_000), "carbon.csv"))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_jobs_file_over_the_row_limit_is_refused_before_simulating(airflow_api, client, newline):
    files = upload(("jobs", jobs_csv(simulation.MAX_SIMULATION_JOBS + 1, newline), "many.csv"),
                   ("carbon", CARBON, "carbon.csv"))
    response = client.post("/carbon/api/simulate", files=files, headers=as_user(airflow_api, "admin"))
    assert response.status_code == 413
    assert response.json()["detail"].startswith("jobs file 'many.csv' has more than 10,000 rows, the limit")


def test_a_jobs_file_at_the_row_limit_is_simulated(airflow_api, client):
    files = upload(("jobs", jobs_csv(simulation.MAX_SIMULATION_JOBS), "many.csv"), ("carbon", CARBON, "carbon.csv"))
    form = {"policies": "immediate", "max_delay": "1h", "plots": "false"}
    response = client.post("/carbon/api/simulate", files=files, data=form, headers=as_user(airflow_api, "admin"))
    assert response.status_code == 200, response.text
    assert response.json()["headline"].startswith("10000 jobs")


def test_a_carbon_file_over_the_point_limit_is_refused(airflow_api, client):
    too_many = hourly_carbon_csv(simulation.MAX_SERIES_POINTS + 1)
    files = upload(("jobs", JOBS, "jobs.csv"), ("carbon", too_many, "ci.csv"))
    response = client.post("/carbon/api/simulate", files=files, headers=as_user(airflow_api, "admin"))
    assert response.status_code == 413
    assert response.json()["detail"].startswith("carbon file 'ci.csv' has more than 120,000 rows, the limit")


@pytest.mark.parametrize(("limit", "seconds", "message"), [
    ("SIMULATION_CPU_S", 3, "the simulation used more than 3 s of CPU, the limit here"),
    ("SIMULATION_WALL_S", 1, "the simulation ran longer than 1 s, the limit here"),
])
def test_a_simulation_past_its_cpu_or_wall_time_limit_is_killed_with_413(airflow_api, client, monkeypatch, limit,
                                                                         seconds, message):
    monkeypatch.setattr(simulation, limit, seconds)
    form = {"policies": "forecast", "max_delay": "48000h", "plots": "false"}
    response = client.post("/carbon/api/simulate", files=slow_simulation(), data=form,
                           headers=as_user(airflow_api, "admin"))
    assert response.status_code == 413
    assert response.json()["detail"].startswith(message)
    assert not worker_processes()


def worker_processes() -> list[psutil.Process]:
    """This process's simulation workers still running (not zombies)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if simulation.simulation_worker.__name__ in " ".join(child.cmdline()) and child.status() != "zombie":
                found.append(child)
        except psutil.Error:
            pass
    return found


class GoneClient:
    """The part of a request ``run_in_worker`` reads: the client leaves once its worker process has started."""

    def __init__(self) -> None:
        self.workers: list[psutil.Process] = []

    async def receive(self) -> dict[str, Any]:
        while not self.workers:
            await asyncio.sleep(0.05)
            self.workers = worker_processes()
        return {"type": "http.disconnect"}


def test_a_client_that_goes_away_kills_its_simulation(tmp_path):
    paths = {}
    for field, (_, content, _) in slow_simulation():
        (tmp_path / field).mkdir()
        paths[field] = tmp_path / field / f"{field}.csv"
        paths[field].write_bytes(content)
    options = {"policies": ["immediate", "forecast"], "max_delay": timedelta(hours=48000), "threshold": 200.0,
               "solar_threshold_kw": None, "forecast_error": 0.0, "min_saving_pct": 0.0, "region": None, "seed": 0,
               "job_duration": timedelta(minutes=1)}
    client_ = GoneClient()
    with pytest.raises(simulation.ClientGone):
        asyncio.run(simulation.run_in_worker(paths, tmp_path, options, False, client_))  # type: ignore[arg-type]
    assert client_.workers, "the worker process was never seen"
    assert not any(worker.is_running() and worker.status() != "zombie" for worker in client_.workers)


def test_slots_refuse_a_second_simulation_per_user_and_past_the_total_with_429():
    slots = SimulationSlots(at_once=2, per_user=1)
    with slots.take("ana"):
        with pytest.raises(HTTPException) as per_user, slots.take("ana"):
            pass
        assert per_user.value.status_code == 429 and per_user.value.headers == {"Retry-After": "30"}
        assert per_user.value.detail == ("you already run 1 simulation(s), the limit per user is 1: wait for it to "
                                         "finish")
        with slots.take("bo"):
            with pytest.raises(HTTPException) as total, slots.take("cy"):
                pass
            assert total.value.status_code == 429
            assert total.value.detail.startswith("2 simulations are running, the limit of this server at once")
    with slots.take("ana"), slots.take("cy"):  # both freed
        assert slots.running == {"ana": 1, "cy": 1}


def test_the_simulation_process_inherits_no_secret(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "not-for-the-worker")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-worker")
    monkeypatch.setenv("TMPDIR", "/tmp")
    env = simulation.worker_environment()
    assert "not-for-the-worker" not in env.values() and env["TMPDIR"] == "/tmp"
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "1"


# -- the OpenAPI page ---------------------------------------------------------------------------

def test_the_openapi_page_loads_swagger_ui_from_the_package_under_the_pages_csp(airflow_api, client):
    page = client.get("/carbon/docs", headers=as_user(airflow_api, "analyst"))
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == pages.CSP
    urls = re.findall(r'(?:src|href|data-openapi-url)="([^"]+)"', page.text)
    assert "<script>" not in page.text and "//" not in "".join(urls)  # no inline script, no other host
    assert {url.split("?")[0] for url in urls} >= {"./static/vendor/swagger-ui-bundle.js", "./openapi.json",
                                                   "./static/vendor/swagger-ui.css", "./static/js/api-docs.js"}
    for url in urls:
        if "static/" in url:
            asset = client.get("/carbon/" + url.removeprefix("./"))
            assert asset.status_code == 200 and len(asset.content) > 500, url
    assert "SwaggerUIBundle" in client.get("/carbon/static/vendor/swagger-ui-bundle.js").text
    assert client.get("/carbon/redoc", headers=as_user(airflow_api, "analyst")).status_code == 404


def test_swagger_ui_is_vendored_with_its_licence_and_version():
    readme = (VENDOR / "README.md").read_text()
    assert "swagger-ui-dist@5.35.0" in readme and "Apache License" in (VENDOR / "LICENSE.swagger-ui").read_text()
