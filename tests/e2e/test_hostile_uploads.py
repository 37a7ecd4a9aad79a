"""Hostile input against a running ``airflow api-server`` with the Carbon plugin: real sockets, real concurrency.

- An anonymous chunked upload of hundreds of MiB is refused (401) before the server writes a byte of it; an
  authenticated one is cut with 413 at the request limit, and the server's temporary files never pass that limit.
- While more big simulations are asked for than the limits allow, the extra ones get 429 naming the limit and
  ``/carbon/api/deferred`` still answers within 2 s; a client that hangs up stops its simulation's process.
- The api-server's memory (RSS of its process tree, from /proc) after all this stays within ``RSS_GROWTH_BOUND``.

What the server writes is watched where it writes it: the api-server runs with ``TMPDIR`` pointed at a folder of
this test, and a thread samples that folder plus the deleted-but-open files (spooled uploads) the api-server's
processes hold in it. ``pytest -s`` prints the figures for the README's "Hostile input" table.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_carbon.plugins.app import MAX_REQUEST_BYTES, REQUEST_LIMIT
from airflow_carbon.plugins.simulation import MAX_SIMULATION_JOBS, SIMULATIONS_AT_ONCE, SIMULATIONS_PER_USER
from airflow_carbon.signals.bundled import bundled_path
from tests.e2e.airflow_cluster import AirflowCluster
from tests.helpers import tree_rss

pytestmark = pytest.mark.timeout(600)

MIB = 1024 * 1024
BOUNDARY = "carbonhostile"
FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
ANONYMOUS_UPLOAD_BYTES = 400 * MIB
SIGNED_IN_UPLOAD_BYTES = 200 * MIB
SPOOLED_BYTES = 8 * MIB
DEFERRED_WITHIN_S = 2.0  # the figure, while the simulation limits are saturated
WORKERS_GONE_WITHIN_S = 10.0
BUSY_CPU_S = 5.0  # CPU each simulation has used when the API is timed: it is simulating, not starting
#: The api-server's process tree may hold this much more memory after the run than before it.
RSS_GROWTH_BOUND = 100 * MIB
USERS = ("alice", "bob")  # viewers, besides the cluster's admin
WORKER_MODULE = "airflow_carbon.plugins.simulation_worker"
FIGURES: dict[str, str] = {}


# -- the server ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An Airflow whose api-server writes its temporary files into a folder we watch, with two more users."""
    tmpdir = tmp_path_factory.mktemp("api-server-tmp")
    dags = tmp_path_factory.mktemp("dags")  # no DAG: only the API server matters here
    env = {"TMPDIR": str(tmpdir),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(["admin:admin", *(f"{u}:viewer" for u in USERS)])}
    keep = os.environ.get("AIRFLOW_E2E_KEEP_HOME", "") not in ("", "0")
    with AirflowCluster(dags, env=env, keep_home=keep) as cluster:
        passwords = json.loads((cluster.home / "passwords.json").read_text())
        tokens = {"admin": cluster.login()}
        for user in USERS:
            response = cluster.client.post("/auth/token", json={"username": user, "password": passwords[user]})
            assert response.status_code == 201, response.text
            tokens[user] = response.json()["access_token"]
        api = psutil.Process(cluster.process("api-server").pid)
        deferred(cluster, tokens["admin"])  # the plugin and the store are up before the baseline
        yield {"cluster": cluster, "tokens": tokens, "tmpdir": tmpdir, "api": api, "rss_before": tree_rss(api)}
    print("\n" + "\n".join(f"{key}: {value}" for key, value in FIGURES.items()))


def alive(proc: psutil.Process) -> bool:
    """Still this process (psutil checks its start time: a pid may be recycled) and not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def workers(api: psutil.Process) -> list[psutil.Process]:
    """The simulation processes below the api-server that still run."""
    found = []
    for proc in api.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if WORKER_MODULE in " ".join(proc.cmdline()) and alive(proc):
                found.append(proc)
    return found


def deferred(cluster: AirflowCluster, token: str) -> float:
    """Seconds ``GET /carbon/api/deferred`` took; it must answer 200."""
    started = time.monotonic()
    response = cluster.client.get("/carbon/api/deferred", headers={"Authorization": f"Bearer {token}"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    return elapsed


# -- raw HTTP: a body that never ends, a client that hangs up -----------------------------------

def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{key}: {value}" for key, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout_s: float = 60.0) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of the one response on ``sock``."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response: {data[:200]!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, json.loads(body[:length]) if length else None


def multipart(files: dict[str, tuple[str, bytes]], fields: dict[str, str]) -> bytes:
    parts = [f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()
             for name, value in fields.items()]
    parts += [f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
              f"Content-Type: text/csv\r\n\r\n".encode() + content + b"\r\n"
              for name, (filename, content) in files.items()]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def chunked_upload(port: int, token: str | None, total_bytes: int,
                   pause: tuple[int, Callable[[], object]] | None = None) -> dict[str, Any]:
    """Stream a jobs file of ``total_bytes`` with ``Transfer-Encoding: chunked`` until the server answers.

    ``pause``: after that many bytes, call that function before sending the rest.
    """
    headers = {**auth(token), "Transfer-Encoding": "chunked", **FORM}
    preamble = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"jobs\"; filename=\"jobs.csv\"\r\n"
                "Content-Type: text/csv\r\n\r\njob_id,timestamp,expected_power_kwh\r\n").encode()
    rows = b"j,2024-06-01 00:00,1\r\n" * (MIB // 22)
    frame = b"%x\r\n%s\r\n" % (len(rows), rows)
    sent = 0
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_head("POST", "/carbon/api/simulate", headers) + b"%x\r\n%s\r\n" % (len(preamble),
                                                                                               preamble))
        while sent < total_bytes and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(frame)
            except OSError:  # the server answered and closed: its answer is waiting to be read
                break
            sent += len(rows)
            if pause and sent - len(rows) < pause[0] <= sent:
                pause[1]()
        status, response_headers, body = read_response(sock)
    return {"status": status, "headers": response_headers, "detail": body["detail"], "sent": sent,
            "seconds": time.monotonic() - started}


class TempWatch(threading.Thread):
    """The most bytes the api-server had in its TMPDIR at once: named files, and deleted ones it still holds open."""

    def __init__(self, tmpdir: Path, api: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.tmpdir, self.api = str(tmpdir), api
        self.most = 0
        self.stop = threading.Event()

    def __enter__(self) -> TempWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()

    def run(self) -> None:
        while not self.stop.is_set():
            self.most = max(self.most, self.sample())
            time.sleep(0.01)

    def sample(self) -> int:
        total = 0
        for root, _, files in os.walk(self.tmpdir):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_size
        with contextlib.suppress(psutil.Error):
            for proc in [self.api, *self.api.children(recursive=True)]:
                fds = f"/proc/{proc.pid}/fd"
                with contextlib.suppress(OSError):
                    for fd in os.listdir(fds):
                        with contextlib.suppress(OSError):
                            target = os.readlink(f"{fds}/{fd}")
                            if target.startswith(self.tmpdir) and target.endswith("(deleted)"):
                                total += os.stat(f"{fds}/{fd}").st_size
        return total


# -- the tests ----------------------------------------------------------------------------------

def test_an_anonymous_chunked_upload_is_refused_before_anything_is_spooled(server):
    cluster: AirflowCluster = server["cluster"]
    with TempWatch(server["tmpdir"], server["api"]) as watch:
        answer = chunked_upload(cluster.port, None, ANONYMOUS_UPLOAD_BYTES)
    assert answer["status"] == 401 and answer["detail"] == "Not authenticated"
    assert answer["headers"]["connection"] == "close"
    assert watch.most == 0  # not a byte of it written
    assert answer["sent"] < ANONYMOUS_UPLOAD_BYTES  # the server stopped it, not the end of the file
    FIGURES["anonymous 400 MiB chunked upload"] = (f"401 after {answer['seconds']:.2f} s, {answer['sent'] / MIB:.0f} "
                                                   f"MiB sent, {watch.most} bytes in the server's TMPDIR")


def test_an_authenticated_chunked_upload_is_cut_at_the_limit(server):
    cluster: AirflowCluster = server["cluster"]
    with TempWatch(server["tmpdir"], server["api"]) as watch:
        # Halfway to the limit, wait until the watch has seen the server's spooled file: it is not missed.
        spooled = (SPOOLED_BYTES, lambda: wait_for(lambda: watch.most >= SPOOLED_BYTES - MIB, 30, "the spooled file"))
        answer = chunked_upload(cluster.port, server["tokens"]["alice"], SIGNED_IN_UPLOAD_BYTES, pause=spooled)
    assert answer["status"] == 413 and answer["detail"] == f"request body larger than {REQUEST_LIMIT}"
    assert answer["headers"]["connection"] == "close"
    assert watch.most <= MAX_REQUEST_BYTES
    assert answer["sent"] < SIGNED_IN_UPLOAD_BYTES
    FIGURES["signed-in 200 MiB chunked upload"] = (f"413 after {answer['seconds']:.2f} s, {answer['sent'] / MIB:.0f} "
                                                   f"MiB sent, at most {watch.most / MIB:.2f} MiB in the server's "
                                                   f"TMPDIR (limit {MAX_REQUEST_BYTES / MIB:.2f} MiB)")


def test_a_jobs_file_over_the_row_limit_is_refused(server):
    cluster: AirflowCluster = server["cluster"]
    rows = "".join(f"j{i},2024-06-01 00:00,0.01\n" for i in range(MAX_SIMULATION_JOBS + 1))
    body = multipart({"jobs": ("many.csv", b"job_id,timestamp,expected_power_kwh\n" + rows.encode()),
                      "carbon": ("ci.csv", bundled_path("carbon_intensity.csv").read_bytes())}, {})
    response = cluster.client.post("/carbon/api/simulate", content=body, headers={
        **auth(server["tokens"]["bob"]), **FORM})
    assert response.status_code == 413
    assert response.json()["detail"].startswith("jobs file 'many.csv' has more than 10,000 rows, the limit")


def big_simulation() -> bytes:
    """10,000 jobs, each free to wait years over 50,000 hours: minutes of CPU if nobody stopped it."""
    start = datetime(2024, 1, 1)
    jobs = "".join(f"j{i},{start + timedelta(minutes=i):%Y-%m-%d %H:%M},0.1\n" for i in range(MAX_SIMULATION_JOBS))
    carbon = "".join(f"{start + timedelta(hours=i):%Y-%m-%d %H:%M},DE,{200 + (i * 37) % 100}\n" for i in range(50_000))
    return multipart({"jobs": ("jobs.csv", ("job_id,timestamp,expected_power_kwh\n" + jobs).encode()),
                      "carbon": ("ci.csv", ("timestamp,region,carbon_intensity\n" + carbon).encode())},
                     {"policies": "forecast", "max_delay": "48000h", "plots": "false"})


def open_simulation(port: int, token: str, body: bytes) -> socket.socket:
    """Send a whole simulation request and leave its connection open, waiting for the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    headers = {**auth(token), **FORM,
               "Content-Length": str(len(body))}
    sock.sendall(request_head("POST", "/carbon/api/simulate", headers) + body)
    return sock


def cpu_seconds(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def wait_for(condition: Any, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"{what} not within {timeout_s} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_saturated_simulations_leave_the_api_responsive_and_stop_when_their_clients_go(server):
    cluster: AirflowCluster = server["cluster"]
    api, tokens = server["api"], server["tokens"]
    assert (SIMULATIONS_AT_ONCE, SIMULATIONS_PER_USER) == (2, 1)  # alice and bob fill the server
    body = big_simulation()
    running = [open_simulation(cluster.port, tokens[user], body) for user in USERS]
    try:
        wait_for(lambda: len(workers(api)) == SIMULATIONS_AT_ONCE, 60, "two simulation processes")
        running_workers = workers(api)
        # Past their start-up and reading: both simulating, each on a core of its own if it can get one.
        wait_for(lambda: min(cpu_seconds(proc) for proc in workers(api)) >= BUSY_CPU_S, 60, "busy simulations")
        with open_simulation(cluster.port, tokens["admin"], body) as third:
            status, headers, answer = read_response(third)
        assert status == 429 and headers["retry-after"] == "30"
        assert answer["detail"].startswith("2 simulations are running, the limit of this server at once")
        with open_simulation(cluster.port, tokens["alice"], body) as again:
            status, _, answer = read_response(again)
        assert status == 429 and answer["detail"].startswith("you already run 1 simulation(s), the limit per user is 1")

        took = [deferred(cluster, tokens["admin"]) for _ in range(10)]
        health = []
        for _ in range(5):
            started = time.monotonic()
            cluster.health()
            health.append(time.monotonic() - started)
        assert set(workers(api)) == set(running_workers)  # still saturated while it answered
        assert max(took) < DEFERRED_WITHIN_S, took
        cpu_s = sum(cpu_seconds(proc) for proc in workers(api))
    finally:
        for sock in running:
            sock.close()  # the clients hang up
    # The same processes, by pid and start time; a killed one drops its command line before it is gone.
    gone_after_s = wait_for(lambda: not any(alive(proc) for proc in running_workers), WORKERS_GONE_WITHIN_S,
                            "the simulation processes to end")
    assert not workers(api)

    small = multipart({"jobs": ("jobs.csv", bundled_path("inference_jobs.csv").read_bytes()),
                       "carbon": ("ci.csv", bundled_path("carbon_intensity.csv").read_bytes())}, {"plots": "false"})
    response = cluster.client.post("/carbon/api/simulate", content=small, timeout=120, headers={
        **auth(tokens["alice"]), **FORM})
    assert response.status_code == 200, response.text  # the slots came back

    rss_after = tree_rss(api)
    assert rss_after - server["rss_before"] < RSS_GROWTH_BOUND
    FIGURES["/carbon/api/deferred while 2 big simulations run"] = (
        f"max {max(took):.3f} s, median {sorted(took)[len(took) // 2]:.3f} s over {len(took)} requests; "
        f"health max {max(health):.3f} s; the workers had used {cpu_s:.1f} s of CPU")
    FIGURES["clients hang up"] = f"both simulation processes gone {gone_after_s:.1f} s later"
    FIGURES["api-server tree RSS"] = (f"{server['rss_before'] / MIB:.0f} MiB before, {rss_after / MIB:.0f} MiB after "
                                      f"(bound +{RSS_GROWTH_BOUND // MIB} MiB)")
