"""Airflow 3.3 as a distributed deployment, without Docker: PostgreSQL, Redis, CeleryExecutor, two triggerers.

``PostgresServer`` is Debian's PostgreSQL, initialised with ``initdb`` in a temporary directory and started with
``pg_ctl`` on a free port of 127.0.0.1 (and a Unix socket in that directory, not in /var/run); it refuses to run as
root, so as root it runs as the ``postgres`` user. It uses scram-sha-256 with a per-run password, ``fsync=off``, and
is stopped with ``pg_ctl stop -m immediate`` (then SIGKILL to anything of it still running).

``RedisServer`` is ``redis-server --bind 127.0.0.1`` on a free port, nothing saved to disk; killed at the end.

``DistributedAirflowCluster`` is ``AirflowCluster`` with its metadata database on Postgres (``airflow``; psycopg 3
for both the sync and the async engine), ``CeleryExecutor`` with broker and result backend on Redis, one ``airflow
celery worker`` on the default queue (concurrency 2, no log server) and optionally one more per named queue, as a
deployment with workers in several regions has, two triggerers, and the carbon metrics store on the Postgres database
``carbon`` through ``AIRFLOW_CONN_CARBON_METRICS_DEFAULT``. Triggerers heartbeat every 2 s and count as dead after
``TRIGGERER_HEALTH_CHECK_THRESHOLD_S``, so a killed triggerer's triggers move within seconds; each triggerer claims at
most one trigger per loop, so the two share the work. Postgres and Redis are started before Airflow and stopped
after it, also when the start fails, at exit, and on SIGTERM (the base class's guarantees).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil

from tests.e2e.airflow_cluster import (
    AirflowCluster,
    AirflowClusterError,
    _die_with_parent,
    _is_running,
    _signal,
    _tail,
    free_port,
)

TRIGGERER_HEARTBEAT_S = 2
TRIGGERER_HEALTH_CHECK_THRESHOLD_S = 8  # an integer: Airflow reads it with getint


def postgres_bindir() -> Path | None:
    """Debian's ``/usr/lib/postgresql/<version>/bin`` (the newest), or None if PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def missing_services() -> list[str]:
    """What ``make test-distributed`` would install: empty when the distributed test can run here."""
    missing = [] if postgres_bindir() else ["postgresql"]
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    return missing


class PostgresServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with the given databases."""

    def __init__(self, databases: tuple[str, ...] = ("airflow", "carbon")) -> None:
        self.databases = databases
        self.bindir = postgres_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="carbon-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = 0
        self.user = "postgres"
        self.password = secrets.token_urlsafe(16)
        self._as_root = os.geteuid() == 0
        self._pids: dict[int, psutil.Process] = {}
        self._options = ""
        self.started = False
        self._stopped = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        result = subprocess.run(cmd, env={**env, "LC_ALL": "C"}, capture_output=True, text=True, timeout=timeout,
                                cwd=self.root)
        if result.returncode != 0:
            raise AirflowClusterError(f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}\n"
                                      f"{result.stderr}\n{_tail(self.log_path, 40)}")
        return result

    def start(self) -> None:
        if self.bindir is None:
            raise AirflowClusterError("PostgreSQL is not installed (make test-distributed installs it)")
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        self._run("initdb", "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        self.port = free_port()
        self._options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
                         " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self.started = True
        self.resume()
        import psycopg

        with psycopg.connect(self.url("postgres", driver=""), autocommit=True) as conn:
            for name in self.databases:
                conn.execute(f'CREATE DATABASE "{name}"')

    def pause(self) -> None:
        """Shut the server down (``pg_ctl stop -m fast``), keeping its data, until ``resume``."""
        self.remember_pids()
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop", timeout=40)

    def resume(self) -> None:
        """Start (or start again) the server on its port."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", self._options, "-w", "-t", "60",
                  "start")
        self.remember_pids()

    def url(self, database: str, driver: str = "+psycopg") -> str:
        return f"postgresql{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a database made for the caller alone (a test module, a store of its own)."""
        import psycopg

        name = f"carbon_{secrets.token_hex(6)}"
        with psycopg.connect(self.url("postgres", driver=""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remember_pids(self) -> None:
        """The postmaster (first line of ``postmaster.pid``) and its children, as psutil handles."""
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            postmaster = psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))
            self._pids.setdefault(postmaster.pid, postmaster)
            for child in postmaster.children(recursive=True):
                self._pids.setdefault(child.pid, child)

    def running(self) -> list[psutil.Process]:
        return [proc for proc in self._pids.values() if _is_running(proc)]

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.started:
            self.remember_pids()
            with contextlib.suppress(AirflowClusterError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop", timeout=40)
            _signal(self.running(), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """``redis-server`` on 127.0.0.1, a free port, no persistence."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="carbon-redis-"))
        self.log_path = self.root / "redis.log"
        self.port = 0
        self.popen: subprocess.Popen | None = None
        self.proc: psutil.Process | None = None

    def start(self, timeout_s: float = 20) -> None:
        import redis

        self.port = free_port()
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.root), "--logfile", str(self.log_path)]
        self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        self.proc = psutil.Process(self.popen.pid)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        while True:
            try:
                client.ping()
                return
            except redis.RedisError as exc:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    raise AirflowClusterError(f"redis-server did not start: {exc}\n{_tail(self.log_path, 20)}") from exc
                time.sleep(0.1)
            finally:
                client.close()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def running(self) -> list[psutil.Process]:
        return [self.proc] if self.proc is not None and _is_running(self.proc) else []

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def celery_executions(log_path: Path, task_id: str, run_id: str) -> int:
    """How many times a Celery worker's log shows it executing a try of ``task_id`` in ``run_id``."""
    return sum(1 for line in log_path.read_text(errors="replace").splitlines()
               if "Executing workload in Celery" in line and f"task_id='{task_id}'" in line
               and f"run_id='{run_id}'" in line)


class DistributedAirflowCluster(AirflowCluster):
    """``AirflowCluster`` on Postgres + Redis with CeleryExecutor, Celery workers and (by default) two triggerers.

    The metrics store's URL is ``metrics_url``; ``service_pids()`` and ``running_service_pids()`` cover Postgres and
    Redis the way ``pids()`` / ``running_pids()`` cover Airflow's processes.

    :param triggerers: how many triggerers to start, one at a time.
    :param worker_concurrency: task slots of each Celery worker.
    :param queues: one more Celery worker per queue, consuming that queue alone (``--queues fr``), named
        ``celery-worker-<queue>`` with the Celery hostname ``<queue>@<host>``; the worker ``celery-worker`` keeps the
        default queue.
    """

    def __init__(self, dags_folder: Path, env=None, *, triggerers: int = 2, worker_concurrency: int = 2,
                 queues: Sequence[str] = (), **kwargs) -> None:
        # The base class would start its triggerers all at once; start_workers starts them one by one instead.
        super().__init__(dags_folder, env, triggerers=0, **kwargs)
        self.n_triggerers = triggerers
        self.triggerer_jobs: dict[str, int] = {}  # process name -> its TriggererJob id
        self.worker_concurrency = worker_concurrency
        self.queues = tuple(queues)
        self.postgres = PostgresServer()
        self.redis = RedisServer()
        self.services_startup_s: float | None = None

    @property
    def metrics_url(self) -> str:
        return self.postgres.url("carbon")

    def _build_env(self) -> dict[str, str]:
        env = super()._build_env()
        metrics = {"conn_type": "postgres", "host": "127.0.0.1", "port": self.postgres.port, "schema": "carbon",
                   "login": self.postgres.user, "password": self.postgres.password}
        env.update({
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url("airflow"),
            # The default async URL would be postgresql+asyncpg; psycopg 3 does async too, one driver for both.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": self.postgres.url("airflow", driver="+psycopg_async"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url(0),
            "AIRFLOW__CELERY__RESULT_BACKEND": self.redis.url(1),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": str(TRIGGERER_HEARTBEAT_S),
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH_CHECK_THRESHOLD_S),
            "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "1",
            "AIRFLOW_CONN_CARBON_METRICS_DEFAULT": json.dumps(metrics),
        })
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        self.postgres.start()
        self.services_startup_s = time.monotonic() - started
        super().start()
        self.startup_s = time.monotonic() - started

    def start_workers(self) -> None:
        """The Celery workers (without the log server, which would listen on every interface), then the triggerers
        one at a time, so that each process is known with its job id (``triggerer_jobs``)."""
        common = ["celery", "worker", "--concurrency", str(self.worker_concurrency), "--skip-serve-logs",
                  "--without-gossip", "--without-mingle"]
        workers = [self.spawn("celery-worker", [*common, "--celery-hostname", "worker1@%h"])]
        workers += [self.spawn(f"celery-worker-{queue}", [*common, "--queues", queue, "--celery-hostname",
                                                          f"{queue}@%h"]) for queue in self.queues]
        for _ in range(self.n_triggerers):
            self.start_triggerer()
        deadline = time.monotonic() + 90 * len(workers)  # they start together, on two shared cores
        for worker in workers:
            while "ready." not in worker.log_path.read_text(errors="replace"):
                self.check_processes()
                if time.monotonic() > deadline:
                    raise self._fail(f"{worker.name} did not say it was ready in time")
                time.sleep(0.5)

    def triggerer_job_ids(self) -> set[int]:
        return {job["id"] for job in self.get("/jobs", params={"job_type": "TriggererJob", "limit": 100})["jobs"]}

    def start_triggerer(self, name: str | None = None, env=None):
        """Start a triggerer and wait for its TriggererJob to appear in the API; record its id in ``triggerer_jobs``."""
        deadline = time.monotonic() + 90
        while True:  # the API server may still be starting
            self.check_processes()
            try:
                known = self.triggerer_job_ids()
                break
            except (httpx.HTTPError, AirflowClusterError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        proc = super().start_triggerer(name, env)
        while not (new := self.triggerer_job_ids() - known):
            self.check_processes()
            if time.monotonic() > deadline:
                raise self._fail(f"{proc.name} registered no TriggererJob within 90 s")
            time.sleep(0.5)
        [self.triggerer_jobs[proc.name]] = new
        return proc

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.postgres.stop()
            self.redis.stop()

    def service_pids(self) -> set[int]:
        self.postgres.remember_pids()
        return {*self.postgres._pids, *(p.pid for p in ([self.redis.proc] if self.redis.proc else []))}

    def running_service_pids(self) -> set[int]:
        return {p.pid for p in (*self.postgres.running(), *self.redis.running())}

    def listening(self) -> list[tuple[int, str, int]]:
        """(pid, address, port) of every TCP socket in LISTEN state held by a process of this deployment."""
        pids = self.running_pids() | self.running_service_pids()
        return [(c.pid, c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN and c.pid in pids]

    def process_logs(self, lines: int = 80) -> str:
        services = [f"----- {p.name} -----\n{_tail(p, lines)}" for p in (self.postgres.log_path, self.redis.log_path)
                    if p.exists()]
        return "\n".join([super().process_logs(lines), *services])
