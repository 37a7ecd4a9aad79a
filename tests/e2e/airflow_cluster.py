"""A real Airflow 3.3 for end-to-end tests: its own processes, a temporary home on SQLite, the REST API v2.

``AirflowCluster`` runs ``airflow db migrate`` and then ``api-server``, ``scheduler``, ``dag-processor`` and
``triggerer`` as separate processes (each in its own process group, logs in ``<home>/process-logs``), waits until
``/api/v2/monitor/health`` reports them healthy, and then talks to Airflow only through ``/api/v2`` with a JWT from
``POST /auth/token`` (SimpleAuthManager, user ``admin`` with a per-run password). Everything listens on 127.0.0.1.

Every process it started is stopped in ``stop()`` / ``__exit__`` (SIGTERM to the process group and to every
descendant seen, SIGKILL after a grace period, then SIGKILL to anything still running with this AIRFLOW_HOME), and
again by an ``atexit`` hook if the interpreter exits first; a SIGTERM to the test process becomes ``SystemExit`` so
that runs too, and if the test process is SIGKILLed its Airflow processes get SIGTERM (``PR_SET_PDEATHSIG``).

    with AirflowCluster(Path("tests/e2e/dags_harness")) as cluster:
        cluster.wait_for_dag("harness_probe")
        run_id = cluster.trigger("harness_probe")
        ti = cluster.wait_for_state("harness_probe", run_id, "wait", {"deferred"}, timeout_s=60)
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
POLL_S = 0.5
TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowClusterError(RuntimeError):
    """The cluster did not start, a process died, or a wait timed out; the message carries the process logs."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (bind port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def faketime_library() -> str | None:
    """Debian's libfaketime (package ``faketime``), multithreaded build."""
    found = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    return found[0] if found else None


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class AirflowProcess:
    """One long-running Airflow component started by the cluster."""

    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen
    # psutil handles remember each process's start time, so a recycled pid is never mistaken for ours
    descendants: dict[int, psutil.Process] = field(default_factory=dict)
    linger_s: float | None = None  # see _terminate
    stopped: bool = False  # stopped on purpose: ``check_processes`` does not complain about it

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def remember_descendants(self) -> None:
        """Record the processes below this one (task supervisors put tasks in process groups of their own)."""
        if not self.alive():
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self.descendants.setdefault(child.pid, child)

    def all_pids(self) -> set[int]:
        return {self.pid, *self.descendants}

    def running_descendants(self) -> list[psutil.Process]:
        return [child for child in self.descendants.values() if _is_running(child)]


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the thread that started us dies (Linux), even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def processes_with_home(home: Path) -> list[psutil.Process]:
    """Running processes whose environment has ``AIRFLOW_HOME=<home>`` (anything a cluster left behind)."""
    wanted = str(home)
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            mine = proc.pid != os.getpid() and proc.environ().get("AIRFLOW_HOME") == wanted
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _is_running(proc: psutil.Process) -> bool:
    """Still the same process (not a recycled pid) and not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)  # psutil checks the pid was not recycled first


def _signal_group(proc: AirflowProcess, sig: int) -> None:
    """Signal the process group of ``proc``, only while its leader is unreaped (so the group id is still ours)."""
    if proc.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def _terminate(processes: list[AirflowProcess], grace_s: float) -> None:
    """SIGTERM every process group and every descendant seen, wait up to ``grace_s``, then SIGKILL what is left.

    A process with ``linger_s`` set is killed once its descendants are gone and ``linger_s`` has passed: a triggerer
    whose trigger runner has already exited otherwise sleeps out its full 10 s escalation delay (the supervisor's
    ``kill()`` selects on sockets that are already closed) before it notices.
    """
    for proc in processes:
        proc.remember_descendants()
    for proc in processes:
        _signal_group(proc, signal.SIGTERM)
        _signal(proc.running_descendants(), signal.SIGTERM)
    signalled = time.monotonic()
    deadline = signalled + grace_s
    while time.monotonic() < deadline:
        for proc in processes:
            proc.remember_descendants()
            lingered = proc.linger_s is not None and time.monotonic() - signalled >= proc.linger_s
            if lingered and proc.alive() and not proc.running_descendants():
                _signal_group(proc, signal.SIGKILL)
        if not any(proc.alive() or proc.running_descendants() for proc in processes):
            break
        time.sleep(0.1)
    for proc in processes:
        _signal_group(proc, signal.SIGKILL)
        _signal(proc.running_descendants(), signal.SIGKILL)
    for proc in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)


_LIVE_CLUSTERS: set[AirflowCluster] = set()  # strong references: stopped at exit even if the test dropped them


@atexit.register
def _stop_live_clusters() -> None:
    for cluster in list(_LIVE_CLUSTERS):
        cluster.stop()


def _exit_on_sigterm() -> None:
    """Turn a SIGTERM to this (test) process into SystemExit so ``finally``, fixtures and ``atexit`` still run."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


class AirflowCluster:
    """Airflow 3.3 in separate processes on 127.0.0.1 with a temporary AIRFLOW_HOME and SQLite.

    :param dags_folder: the folder the dag-processor parses.
    :param env: extra environment for every process (``AIRFLOW__SECTION__KEY`` overrides win over the defaults).
    :param home: the AIRFLOW_HOME to use (created if missing, kept); default a fresh temporary one, removed on stop
        unless ``keep_home`` is true.
    :param triggerers: how many ``airflow triggerer`` processes to start (more can be added with ``start_triggerer``).
    :param triggerer_clock: run every triggerer under libfaketime, its clock offset from the real one read from this
        file (``+0`` at first; ``set_triggerer_clock`` moves it). libfaketime moves the monotonic clock with the wall
        clock, as a paused and resumed VM sees it, so a trigger asleep until an instant wakes when the jump passes it.
    :param clock_offset_s: run every Airflow process under libfaketime, its clock this many seconds off the real one
        (the same for all, so they agree; a triggerer clock moves from there), for a test that must see the same time
        of day on every run. The test process and ``airflow db migrate`` keep the real clock.
    """

    def __init__(
        self,
        dags_folder: Path,
        env: Mapping[str, str] | None = None,
        *,
        home: Path | None = None,
        keep_home: bool = False,
        triggerers: int = 1,
        triggerer_clock: Path | None = None,
        clock_offset_s: float | None = None,
        startup_timeout_s: float = 150.0,
        stop_grace_s: float = 10.0,
        username: str = "admin",
    ) -> None:
        self.dags_folder = Path(dags_folder).resolve()
        self.extra_env = dict(env or {})
        self._own_home = home is None
        self.home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="airflow-e2e-"))
        self.keep_home = keep_home
        self.triggerers = triggerers
        self.triggerer_clock = triggerer_clock
        self.clock_offset_s = clock_offset_s
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.username = username
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.processes: list[AirflowProcess] = []
        self.env: dict[str, str] = {}
        self.startup_s: float | None = None
        self._client: httpx.Client | None = None
        self._token: str | None = None
        self._stopped = False
        _LIVE_CLUSTERS.add(self)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> AirflowCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _build_env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_"))}
        venv_bin = str(Path(sys.executable).parent)
        simple = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        env = {
            **inherited,
            "PATH": f"{venv_bin}{os.pathsep}{inherited.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": simple,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),  # HS512 wants >= 64 bytes
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # The task supervisor selects for up to this long, so it notices a finished task (and frees the
            # LocalExecutor slot, and lets the scheduler stop) up to this late; the default is 5 s.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        """Migrate the database, start the processes and wait until the API says they are healthy."""
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "process-logs").mkdir(exist_ok=True)
        self.port = free_port()
        self.env = self._build_env()
        (self.home / "passwords.json").write_text(json.dumps({self.username: self.password}))
        _exit_on_sigterm()
        if (self.triggerer_clock is not None or self.clock_offset_s is not None) and faketime_library() is None:
            raise AirflowClusterError("a clock of its own needs Debian's faketime package: make test installs it")
        if self.triggerer_clock is not None:
            self.set_triggerer_clock(0)

        migrate_log = self.home / "process-logs" / "db-migrate.log"
        with migrate_log.open("wb") as out:
            result = subprocess.run(
                [AIRFLOW, "db", "migrate"], env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=300
            )
        if result.returncode != 0:
            raise AirflowClusterError(f"airflow db migrate failed:\n{_tail(migrate_log, 60)}")
        if self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
            # WAL lets the API read while the scheduler writes; the setting is stored in the database file.
            with contextlib.closing(sqlite3.connect(self.home / "airflow.db")) as db:
                db.execute("PRAGMA journal_mode=WAL")

        self.spawn("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"])
        self.spawn("scheduler", ["scheduler", "--skip-serve-logs"])
        self.spawn("dag-processor", ["dag-processor"])
        for _ in range(self.triggerers):
            self.start_triggerer()
        self.start_workers()
        self.wait_until_healthy(timeout_s=self.startup_timeout_s - (time.monotonic() - started))
        self.startup_s = time.monotonic() - started

    def spawn(
        self, name: str, args: list[str], env: Mapping[str, str] | None = None, *, linger_s: float | None = None
    ) -> AirflowProcess:
        """Start ``airflow <args>`` in its own process group, output to ``<home>/process-logs/<name>.log``."""
        if any(proc.name == name for proc in self.processes):
            raise ValueError(f"a process named {name!r} already exists")
        log_path = self.home / "process-logs" / f"{name}.log"
        if self.clock_offset_s is not None and "FAKETIME_TIMESTAMP_FILE" not in (env or {}):
            env = {"LD_PRELOAD": faketime_library() or "", "FAKETIME": f"{self.clock_offset_s:+.0f}", **(env or {})}
        with log_path.open("ab") as out:
            popen = subprocess.Popen(
                [AIRFLOW, *args],
                env={**self.env, **(env or {})},
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        proc = AirflowProcess(name=name, args=args, log_path=log_path, popen=popen, linger_s=linger_s)
        self.processes.append(proc)
        return proc

    def start_workers(self) -> None:
        """Start the processes that run tasks outside the scheduler: none with LocalExecutor (subclasses add some)."""

    def start_triggerer(self, name: str | None = None, env: Mapping[str, str] | None = None) -> AirflowProcess:
        """Start one more ``airflow triggerer`` (without its log server, which would bind all interfaces)."""
        name = name or f"triggerer-{sum(p.name.startswith('triggerer') for p in self.processes) + 1}"
        if self.triggerer_clock is not None:
            faketime = {"LD_PRELOAD": faketime_library() or "", "FAKETIME_TIMESTAMP_FILE": str(self.triggerer_clock),
                        "FAKETIME_CACHE_DURATION": "1"}
            env = {**faketime, **(env or {})}
        return self.spawn(name, ["triggerer", "--skip-serve-logs"], env, linger_s=2.0)

    def set_triggerer_clock(self, offset_s: float) -> None:
        """Put the triggerers' clocks ``offset_s`` seconds ahead of the others' (they read it within a second)."""
        assert self.triggerer_clock is not None, "start the cluster with triggerer_clock to move its clock"
        staged = self.triggerer_clock.with_name(self.triggerer_clock.name + ".new")
        staged.write_text(f"{(self.clock_offset_s or 0) + offset_s:+.0f}\n")
        os.replace(staged, self.triggerer_clock)  # libfaketime never reads a half-written offset

    def stop_process(self, name: str, grace_s: float | None = None) -> None:
        """Stop one process (and its descendants) the way ``stop`` does, e.g. to kill one triggerer."""
        proc = self.process(name)
        proc.stopped = True
        _terminate([proc], self.stop_grace_s if grace_s is None else grace_s)

    def kill_process(self, name: str) -> None:
        """SIGKILL one process, its group and its descendants at once (a crash, not a shutdown)."""
        proc = self.process(name)
        proc.stopped = True
        proc.remember_descendants()
        _signal_group(proc, signal.SIGKILL)
        _signal(proc.running_descendants(), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)

    def process(self, name: str) -> AirflowProcess:
        for proc in self.processes:
            if proc.name == name:
                return proc
        raise KeyError(name)

    def pids(self) -> set[int]:
        """Every pid the cluster started or saw below one of its processes."""
        for proc in self.processes:
            proc.remember_descendants()
        return set().union(*(proc.all_pids() for proc in self.processes)) if self.processes else set()

    def running_pids(self) -> set[int]:
        """The cluster's processes (and descendants seen) that still run."""
        running = set()
        for proc in self.processes:
            proc.remember_descendants()
            if proc.alive():
                running.add(proc.pid)
            running.update(child.pid for child in proc.running_descendants())
        return running

    def stop(self) -> None:
        """Stop every process started (idempotent); remove the temporary home unless asked to keep it."""
        if self._stopped:
            return
        self._stopped = True
        _LIVE_CLUSTERS.discard(self)
        if self._client is not None:
            self._client.close()
        _terminate(self.processes, self.stop_grace_s)
        # Task processes started after the last look at the process tree, in process groups of their own.
        _signal(processes_with_home(self.home), signal.SIGKILL)
        if self._own_home and not self.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)

    # ------------------------------------------------------------------ diagnostics

    def process_logs(self, lines: int = 80) -> str:
        """The tail of each process's log file, for failure messages."""
        parts = []
        for path in sorted((self.home / "process-logs").glob("*.log")):
            state = ""
            for proc in self.processes:
                if proc.log_path == path:
                    code = proc.popen.poll()
                    state = f" (pid {proc.pid}, {'running' if code is None else f'exited {code}'})"
            parts.append(f"----- {path.name}{state} -----\n{_tail(path, lines)}")
        return "\n".join(parts)

    def _fail(self, message: str) -> AirflowClusterError:
        return AirflowClusterError(f"{message}\n{self.process_logs()}")

    def check_processes(self) -> None:
        dead = [f"{p.name} (exit {p.popen.returncode})" for p in self.processes if not p.alive() and not p.stopped]
        if dead:
            raise self._fail(f"Airflow process(es) died: {', '.join(dead)}")

    # ------------------------------------------------------------------ HTTP

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=30.0, trust_env=False)
        return self._client

    def login(self) -> str:
        """A JWT from SimpleAuthManager's ``POST /auth/token``."""
        response = self.client.post("/auth/token", json={"username": self.username, "password": self.password})
        if response.status_code != 201:
            raise self._fail(f"POST /auth/token answered {response.status_code}: {response.text}")
        self._token = response.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, *, expect: Iterable[int] = (200,), **kwargs: Any) -> httpx.Response:
        """An authenticated request to ``/api/v2<path>``; raises unless the status is in ``expect``."""
        url = path if path.startswith("/api/") else f"/api/v2{path}"
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in range(2):
            if self._token is None:
                self.login()
            headers["Authorization"] = f"Bearer {self._token}"
            response = self.client.request(method, url, headers=headers, **kwargs)
            if response.status_code == 401 and attempt == 0:
                self._token = None
                continue
            break
        if response.status_code not in set(expect):
            raise self._fail(f"{method} {url} answered {response.status_code}: {response.text[:2000]}")
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def health(self) -> dict:
        """``GET /api/v2/monitor/health`` (no authentication needed)."""
        response = self.client.get("/api/v2/monitor/health")
        response.raise_for_status()
        return response.json()

    def wait_until_healthy(
        self, timeout_s: float, components: Iterable[str] = ("scheduler", "triggerer", "dag_processor")
    ) -> dict:
        """Until the metadatabase and ``components`` report healthy and a token can be obtained."""
        deadline = time.monotonic() + timeout_s
        last: object = "no answer yet"
        while time.monotonic() < deadline:
            self.check_processes()
            try:
                health = self.health()
            except httpx.HTTPError as exc:
                last = exc
            else:
                last = health
                if all(health.get(c, {}).get("status") == "healthy" for c in ("metadatabase", *components)):
                    self.login()
                    self._warm_execution_api(deadline - time.monotonic())
                    return health
            time.sleep(POLL_S)
        raise self._fail(f"Airflow not healthy after {timeout_s:.0f}s; last health: {last}")

    def _warm_execution_api(self, timeout_s: float) -> None:
        """Build the execution API's versioned routes now, not on the first task's first call.

        The api-server builds them (Cadwyn) on the first request under ``/execution``, in its event loop: on a busy
        2-core machine that blocks every request, the test's own included, for longer than a client's timeout.
        """
        try:
            self.client.get("/execution/health", timeout=max(timeout_s, 1.0)).raise_for_status()
        except httpx.HTTPError as exc:
            raise self._fail(f"GET /execution/health failed: {exc!r}") from exc

    # ------------------------------------------------------------------ DAGs, runs, task instances

    def wait_for_dag(self, dag_id: str, timeout_s: float = 60.0) -> dict:
        """Until the dag-processor has parsed ``dag_id``; unpauses it through the API if it is paused."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_processes()
            response = self.request("GET", f"/dags/{dag_id}", expect=(200, 404))
            if response.status_code == 200:
                dag = response.json()
                if dag.get("is_paused"):
                    dag = self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).json()
                return dag
            time.sleep(POLL_S)
        errors = self.get("/importErrors")
        raise self._fail(f"DAG {dag_id!r} not parsed after {timeout_s:.0f}s; import errors: {errors}")

    def trigger(self, dag_id: str, conf: dict | None = None, *, run_id: str | None = None) -> str:
        """Create a manual DAG run (``logical_date`` null) and return its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id is not None:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body).json()["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_run(
        self, dag_id: str, run_id: str, states: Iterable[str] = TERMINAL_RUN_STATES, timeout_s: float = 120.0
    ) -> dict:
        """Until the DAG run's state is one of ``states``."""
        wanted = set(states)
        deadline = time.monotonic() + timeout_s
        run: dict = {}
        while time.monotonic() < deadline:
            self.check_processes()
            run = self.dag_run(dag_id, run_id)
            if run["state"] in wanted:
                return run
            time.sleep(POLL_S)
        raise self._fail(f"DAG run {dag_id}/{run_id} not in {sorted(wanted)} after {timeout_s:.0f}s: {run}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """All task instances of a run (every map index)."""
        items: list[dict] = []
        while True:
            page = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"offset": len(items)})
            items.extend(page["task_instances"])
            if not page["task_instances"] or len(items) >= page["total_entries"]:
                return items

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict | None:
        """One task instance, or None while it does not exist yet (e.g. before mapped tasks expand)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        response = self.request("GET", path, expect=(200, 404))
        return response.json() if response.status_code == 200 else None

    def wait_for_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: str | Iterable[str],
        timeout_s: float = 120.0,
        map_index: int = -1,
        *,
        fail_on_terminal: bool = True,
    ) -> dict:
        """Poll one task instance until its state is in ``states``.

        Returns the task instance with ``"history"``: the distinct states seen in order (``None`` for no state,
        ``"<absent>"`` while the instance does not exist). Raises once the instance reaches another terminal
        state (unless ``fail_on_terminal`` is false), or on timeout, with the process logs.
        """
        wanted = {states} if isinstance(states, str) else set(states)
        history: list[str | None] = []
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_processes()
            ti = self.task_instance(dag_id, run_id, task_id, map_index)
            state = ti["state"] if ti is not None else "<absent>"
            if not history or history[-1] != state:
                history.append(state)
            if ti is not None and state in wanted:
                return {**ti, "history": history}
            where = f"{dag_id}/{run_id}/{task_id}[{map_index}]"
            if fail_on_terminal and state in TERMINAL_TI_STATES:
                raise self._fail(f"{where} ended {state!r}, wanted {sorted(wanted)}; history {history}")
            if time.monotonic() >= deadline:
                raise self._fail(f"{where} not in {sorted(wanted)} after {timeout_s:.0f}s; history {history}")
            time.sleep(POLL_S)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """An XCom value as JSON (the API's native format); ``KeyError`` if there is none."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        response = self.request("GET", path, params={"map_index": map_index}, expect=(200, 404))
        if response.status_code == 404:
            raise KeyError(f"no XCom {key!r} for {dag_id}/{run_id}/{task_id}[{map_index}]")
        return response.json()["value"]

    def logs(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """A task try's log as text (one line per structured log event)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        response = self.request(
            "GET", path, params={"map_index": map_index, "full_content": True}, headers={"Accept": "application/json"}
        )
        content = response.json().get("content", [])
        lines = []
        for item in content if isinstance(content, list) else [content]:
            if isinstance(item, dict):
                extra = {k: v for k, v in item.items() if k not in {"event", "timestamp", "level", "logger"}}
                lines.append(" ".join(str(x) for x in (item.get("timestamp"), item.get("level"), item.get("event"))))
                if extra:
                    lines[-1] += f" {extra}"
            else:
                lines.append(str(item))
        return "\n".join(lines)
