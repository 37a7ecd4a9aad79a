"""The carbon metrics reach a deployment's StatsD: a running Airflow with ``[metrics] statsd_on`` sends them to a UDP
socket on 127.0.0.1 that this module binds before the cluster starts.

``carbon_statsd`` defers on a CSV signal whose green window is minutes away until the test has seen it defer (the
triggerer then counts it in ``carbon.waiting``), and seconds away after that; it then runs and records. Lines are
InfluxDB-style (``statsd_influxdb_enabled``), so each carries its tags; ``metrics_allow_list`` keeps Airflow's own
metrics out, which also shows the carbon names pass it.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.airflow_cluster import AirflowCluster
from tests.e2e.signal_window import write_signal_file

SIGNAL = Path(tempfile.mkdtemp(prefix="carbon_statsd_")) / "signal.csv"
LISTENER = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
LISTENER.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
LISTENER.bind(("127.0.0.1", 0))  # before the cluster starts: its port is in the environment below

AIRFLOW_DAGS_FOLDER = Path(__file__).parent / "dags_statsd"
AIRFLOW_ENV = {
    "AIRFLOW__METRICS__STATSD_ON": "True",
    "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
    "AIRFLOW__METRICS__STATSD_PORT": str(LISTENER.getsockname()[1]),
    "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    "AIRFLOW__METRICS__METRICS_ALLOW_LIST": r"^carbon\.",
    "AIRFLOW__CARBON__SOURCE": "statsd_signal",
    "AIRFLOW__CARBON__REGION": "TEST",
    "AIRFLOW_CONN_STATSD_SIGNAL": json.dumps(
        {"conn_type": "carbon_csv", "extra": {"path": str(SIGNAL), "region": "TEST"}}),
}
DAG_ID, TASK_ID = "carbon_statsd", "summarize"
TAGS = {"dag_id": DAG_ID, "task_id": TASK_ID, "region": "TEST"}
FAR_S = 300  # within the task's 10 minutes: it defers whenever it decides
GREEN_AFTER_DEFERRAL_S = 5
WAITING_SEEN_TIMEOUT_S = 90

pytestmark = pytest.mark.timeout(600)


@dataclass(frozen=True)
class Line:
    """One StatsD line: ``name,tag=value,...:value|type``."""

    name: str
    tags: dict[str, str]
    value: float
    kind: str

    @classmethod
    def parse(cls, text: str) -> Line:
        head, _, body = text.rpartition(":")
        value, _, kind = body.partition("|")
        name, *pairs = head.split(",")
        return cls(name, dict(pair.split("=", 1) for pair in pairs), float(value), kind.split("|")[0])


class Collector:
    """Every line the socket receives, from a thread started before the cluster."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.lines: list[Line] = []
        self.raw: list[str] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        self.listener.settimeout(0.5)
        while not self.stopped.is_set():
            try:
                data = self.listener.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            for text in data.decode(errors="replace").splitlines():
                with self.lock:
                    self.raw.append(text)
                    self.lines.append(Line.parse(text))

    def named(self, name: str) -> list[Line]:
        with self.lock:
            return [line for line in self.lines if line.name == f"airflow.{name}"]

    def wait_for(self, name: str, accept: Callable[[Line], bool], timeout_s: float) -> Line | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [line for line in self.named(name) if accept(line)]
            if found:
                return found[-1]
            time.sleep(0.5)
        return None

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.fixture(scope="module", autouse=True)
def statsd() -> Iterator[Collector]:
    """Autouse, so it receives from the start, before ``airflow_cluster`` exists."""
    collector = Collector(LISTENER)
    yield collector
    collector.close()


#: Filled by the first test for the second: what ``carbon.waiting`` said while the task was deferred.
WAITING_WHILE_DEFERRED: list[Line] = []


def test_a_deferred_then_finished_task_sends_its_carbon_metrics(airflow_cluster, statsd):
    cluster: AirflowCluster = airflow_cluster
    cluster.wait_for_dag(DAG_ID)
    write_signal_file(SIGNAL, green_in_s=FAR_S, period_s=5)
    run_id = cluster.trigger(DAG_ID)
    cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "deferred", timeout_s=180)

    decided = statsd.wait_for("carbon.decided", lambda line: line.tags == TAGS, timeout_s=30)
    assert decided is not None and decided.kind == "c" and decided.value == 1, statsd.raw[-20:]
    assert [line.tags for line in statsd.named("carbon.deferred")] == [TAGS]
    waiting = statsd.wait_for("carbon.waiting", lambda line: line.tags == TAGS and line.value >= 1,
                              timeout_s=WAITING_SEEN_TIMEOUT_S)
    if waiting is not None:
        WAITING_WHILE_DEFERRED.append(waiting)

    write_signal_file(SIGNAL, green_in_s=GREEN_AFTER_DEFERRAL_S, period_s=5)  # its trigger re-plans on it
    cluster.wait_for_state(DAG_ID, run_id, TASK_ID, "success", timeout_s=240)
    record = cluster.xcom(DAG_ID, run_id, TASK_ID, key="carbon")

    energy = statsd.wait_for("carbon.energy_kwh", lambda line: line.tags == TAGS, timeout_s=30)
    assert energy is not None and energy.kind == "c" and energy.value == pytest.approx(record["energy_kwh"])
    [emissions] = statsd.named("carbon.emissions_g")
    assert emissions.tags == TAGS and emissions.kind == "c"
    assert emissions.value == pytest.approx(record["emissions_g"], rel=1e-4)
    [baseline] = statsd.named("carbon.baseline_emissions_g")
    assert baseline.value == pytest.approx(record["baseline_emissions_g"], rel=1e-4)
    [saved] = statsd.named("carbon.saved_g")  # it waited for the clean window: a positive saving
    assert saved.tags == TAGS and saved.value == pytest.approx(record["saved_g"], rel=1e-4) and saved.value > 0
    [delay] = statsd.named("carbon.delay")
    assert delay.tags == TAGS and delay.kind == "ms"
    assert delay.value == pytest.approx(record["delay_s"] * 1000, rel=1e-3)
    assert len(statsd.named("carbon.decided")) == 1  # resuming from the trigger is not a second decision
    assert not statsd.named("carbon.extra_emissions_g") and not statsd.named("carbon.forced_by_deadline")
    assert all(line.name.startswith("airflow.carbon.") for line in statsd.lines), "the allow list let others in"


def test_the_triggerer_reports_the_waiting_task_and_then_none(statsd):
    assert WAITING_WHILE_DEFERRED, ("no carbon.waiting >= 1 while the task was deferred; got: "
                                    f"{[(line.tags, line.value) for line in statsd.named('carbon.waiting')]}")
    assert WAITING_WHILE_DEFERRED[0].kind == "g"
    back_to_zero = statsd.wait_for("carbon.waiting", lambda line: line.tags == TAGS and line.value == 0,
                                   timeout_s=WAITING_SEEN_TIMEOUT_S)
    assert back_to_zero is not None, "carbon.waiting never went back to 0 after the task ran"
