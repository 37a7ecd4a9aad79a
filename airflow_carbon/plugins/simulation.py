"""The Carbon view's simulator: uploaded files in, what ``airflow-carbon simulate --json --plots`` prints out.

Each simulation runs in a process of its own (``simulation_worker``), never on the API server's event loop or its
threads, inside limits a person at the Carbon view cannot lift: how many at once, per user and in all, rows per
file, CPU time, wall time and memory. It is killed when its client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile, status
from fastapi.responses import Response

from airflow_carbon.errors import CarbonError
from airflow_carbon.planning import DEFAULT_MAX_DELAY, DEFAULT_MIN_SAVING_PCT, DEFAULT_THRESHOLD_G_PER_KWH
from airflow_carbon.plugins import simulation_worker
from airflow_carbon.plugins.auth import CurrentUser
from airflow_carbon.plugins.models import SimulationResult
from airflow_carbon.simulate.files import DEFAULT_JOB_DURATION, parse_forecast_error, parse_policies
from airflow_carbon.units import parse_duration

log = logging.getLogger(__name__)
router = APIRouter()

T = TypeVar("T")

MIB = 1024 * 1024
HTTP_413_CONTENT_TOO_LARGE = 413
#: A client that went away before its answer (nginx's convention); nobody reads it, the access log does.
HTTP_499_CLIENT_CLOSED_REQUEST = 499
UPLOAD_FIELDS = ("jobs", "carbon", "solar")
#: Per uploaded file.
MAX_UPLOAD_BYTES = 5 * MIB
#: Rows of a jobs file (10,000 jobs with a 24 h delay budget: about 15 s of CPU with every policy).
MAX_SIMULATION_JOBS = 10_000
#: Rows of a carbon or solar file: a leap year of 5-minute values is 105,408.
MAX_SERIES_POINTS = 120_000
#: Simulations running at once in one API server process, and for one user.
SIMULATIONS_AT_ONCE = 2
SIMULATIONS_PER_USER = 1
#: CPU seconds of one simulation: past them the kernel ends it.
SIMULATION_CPU_S = 60
#: Wall seconds of one simulation, waiting for the CPU included: past them the API server kills it.
SIMULATION_WALL_S = 120
#: Address space of one simulation's process (a 10,000-job simulation with figures peaks near 300 MiB).
SIMULATION_MEMORY_BYTES = 1024 * MIB
#: Largest file the simulation's process may write (its seven figures take about 0.5 MiB).
SIMULATION_FILE_BYTES = 64 * MIB
#: Pause between ASGI messages that are not the disconnect, while waiting for one.
DISCONNECT_POLL_S = 0.5
RETRY_AFTER_S = 30
#: The variables a simulation's process inherits: none of the API server's secrets (AIRFLOW__*, credentials).
WORKER_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV",
                      "MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")
#: One thread per process: the limits count one core, and the API server keeps the others.
WORKER_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "NUMEXPR_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def safe_file_name(name: str | None, fallback: str) -> str:
    """The uploaded file's own name, without any directory, safe to create in a temporary folder."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", base).strip(" .")[:100]
    return base or fallback


def max_rows(field: str) -> int:
    return MAX_SIMULATION_JOBS if field == "jobs" else MAX_SERIES_POINTS


async def save_upload(upload: UploadFile, field: str, folder: Path) -> Path:
    """Write an upload into ``folder/field/<its name>``; 413 past ``MAX_UPLOAD_BYTES`` or the field's rows.

    Rows are line breaks (``\\n`` or a lone ``\\r``) after the header, counted as the file is written: a file
    with too many is refused before the simulator reads it.
    """
    name = safe_file_name(upload.filename, f"{field}.csv")
    target = folder / field / name
    target.parent.mkdir(parents=True, exist_ok=True)
    size = newlines = returns = 0
    last = b""
    limit = max_rows(field)
    with target.open("wb") as out:
        while chunk := await upload.read(MIB):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise HTTPException(HTTP_413_CONTENT_TOO_LARGE,
                                    f"{field} file {name!r} is larger than {MAX_UPLOAD_BYTES // MIB} MiB")
            newlines, returns, last = newlines + chunk.count(b"\n"), returns + chunk.count(b"\r"), chunk[-1:]
            lines = max(newlines, returns) + (last not in (b"\n", b"\r"))
            if lines - 1 > limit:  # the header is not a row
                raise HTTPException(HTTP_413_CONTENT_TOO_LARGE,
                                    f"{field} file {name!r} has more than {limit:,} rows, the limit of a "
                                    f"simulation here: run airflow-carbon simulate for more")
            out.write(chunk)
    return target


# -- form fields --------------------------------------------------------------------------------

def _form_value(parse: Callable[[str], T], text: str | None, field: str, default: T) -> T:
    """``default`` for an empty field; 400 naming the field when ``parse`` refuses it."""
    if text is None or not text.strip():
        return default
    try:
        return parse(text.strip())
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{field}: {error}") from None


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a number >= 0, got {text!r}")
    return value


def _percentage(text: str) -> float:
    """A saving to wait for: 100 % or more could never be reached."""
    value = float(text)
    if not 0 <= value < 100:
        raise ValueError(f"must be a number in [0, 100), got {text!r}")
    return value


# -- limits -------------------------------------------------------------------------------------

class SimulationSlots:
    """Who runs a simulation now, in one API server process; 429 naming the limit when one is reached.

    Only the event loop touches it (one thread), so it needs no lock.
    """

    def __init__(self, at_once: int, per_user: int) -> None:
        self.at_once, self.per_user = at_once, per_user
        self.running: Counter[str] = Counter()

    @contextlib.contextmanager
    def take(self, user: str) -> Iterator[None]:
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        if self.running[user] >= self.per_user:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                                f"you already run {self.running[user]} simulation(s), the limit per user is "
                                f"{self.per_user}: wait for it to finish", headers=retry)
        if sum(self.running.values()) >= self.at_once:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                                f"{self.at_once} simulations are running, the limit of this server at once: "
                                f"try again in a minute", headers=retry)
        self.running[user] += 1
        try:
            yield
        finally:
            self.running[user] -= 1
            if not self.running[user]:
                del self.running[user]


slots = SimulationSlots(SIMULATIONS_AT_ONCE, SIMULATIONS_PER_USER)


def user_key(user: BaseUser) -> str:
    return str(user.get_id())


def worker_environment() -> dict[str, str]:
    """The environment of a simulation's process: the few variables it needs, and one thread."""
    return {**{key: os.environ[key] for key in WORKER_ENVIRONMENT if key in os.environ}, **WORKER_THREADS}


class ClientGone(CarbonError):
    """The client closed its connection while its simulation ran."""


async def _client_gone(request: Request) -> None:
    """Return once the client has closed its connection.

    The body is read by then, so the next ASGI message is the disconnect. Awaited, not polled with
    ``request.is_disconnected()``: behind Airflow's ``JWTRefreshMiddleware`` (a ``BaseHTTPMiddleware``) a poll's
    cancelled receive loses the disconnect.
    """
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(DISCONNECT_POLL_S)


async def run_in_worker(paths: dict[str, Path], folder: Path, options: dict[str, Any], plots: bool,
                        request: Request) -> dict[str, Any]:
    """``simulation_worker.run_simulation`` in a process of its own, killed past the limits or when the client goes.

    :raises HTTPException: 400 for input the simulator refused, 413 past a limit of CPU, wall time or memory.
    :raises ClientGone: the client went away; the process is killed.
    """
    payload = simulation_worker.encode_request(paths, folder, options, plots, cpu_s=SIMULATION_CPU_S,
                                               memory_bytes=SIMULATION_MEMORY_BYTES,
                                               file_bytes=SIMULATION_FILE_BYTES)
    stderr_path = folder / "worker.log"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", simulation_worker.__name__, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=stderr, cwd=folder, env=worker_environment(),
            start_new_session=True)
    output = asyncio.ensure_future(process.communicate(payload))
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        done, _ = await asyncio.wait({output, gone}, timeout=SIMULATION_WALL_S, return_when=asyncio.FIRST_COMPLETED)
        if output not in done:
            if gone in done:
                raise ClientGone from gone.exception()
            raise HTTPException(HTTP_413_CONTENT_TOO_LARGE,
                                f"the simulation ran longer than {SIMULATION_WALL_S} s, the limit here: "
                                f"use fewer jobs or a shorter max_delay")
        stdout, _ = output.result()
    finally:
        gone.cancel()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: nothing else has this group
            output.cancel()
            await process.wait()
    return _answer(process.returncode, stdout, stderr_path)


def _answer(returncode: int | None, stdout: bytes, stderr_path: Path) -> dict[str, Any]:
    if returncode == -signal.SIGXCPU:
        raise HTTPException(HTTP_413_CONTENT_TOO_LARGE,
                            f"the simulation used more than {SIMULATION_CPU_S} s of CPU, the limit here: "
                            f"use fewer jobs or a shorter max_delay")
    try:
        answer = json.loads(stdout) if returncode == 0 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        tail = stderr_path.read_text(errors="replace")[-4000:]
        log.error("Carbon simulation process failed (exit %s):\n%s", returncode, tail)
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, "the simulation process failed; see the "
                                                                   "API server's log")
    if answer["status"] != status.HTTP_200_OK:
        raise HTTPException(answer["status"], answer["detail"])
    return answer["result"]


@router.post("/simulate", response_model=SimulationResult, summary="Compare policies on uploaded files",
             responses={413: {"description": "a file, its rows, or the simulation's CPU, time or memory is over "
                                             "its limit (named in the message)"},
                        429: {"description": "too many simulations at once, for this user or this server"}})
async def post_simulate(
    request: Request,
    user: CurrentUser,
    jobs: Annotated[UploadFile, File(description="jobs CSV: job_id, timestamp, energy, optional duration_s")],
    carbon: Annotated[UploadFile, File(description="carbon intensity CSV")],
    solar: Annotated[UploadFile | None, File(description="on-site solar CSV (optional)")] = None,
    policies: Annotated[str | None, Form(description="comma-separated policies, or all")] = None,
    max_delay: Annotated[str | None, Form(description="delay budget per job, e.g. 4h")] = None,
    threshold: Annotated[str | None, Form(description="threshold policy: green at or below g/kWh "
                                                      f"({DEFAULT_THRESHOLD_G_PER_KWH:g})")] = None,
    solar_threshold_kw: Annotated[str | None, Form(description="threshold policy: enough solar, kW")] = None,
    forecast_error: Annotated[str | None, Form(description="relative forecast error, 0.05 or 5%")] = None,
    min_saving_pct: Annotated[str | None, Form(description="forecast policy: wait only to save this much")] = None,
    region: Annotated[str | None, Form(description="region of a carbon file that holds several")] = None,
    seed: Annotated[str | None, Form(description="random seed of the forecast error")] = None,
    job_duration: Annotated[str | None, Form(description="run time of jobs without duration_s "
                                                         f"({DEFAULT_JOB_DURATION.total_seconds() / 60:g}min)")]
    = None,
    plots: Annotated[bool, Form(description="draw the figures")] = True,
) -> Any:
    # An empty field takes the CLI's default.
    options = {
        "policies": _form_value(parse_policies, policies, "policies", parse_policies("all")),
        "max_delay": _form_value(parse_duration, max_delay, "max_delay", DEFAULT_MAX_DELAY),
        "threshold": _form_value(_non_negative_float, threshold, "threshold", DEFAULT_THRESHOLD_G_PER_KWH),
        "solar_threshold_kw": _form_value(_non_negative_float, solar_threshold_kw, "solar_threshold_kw", None),
        "forecast_error": _form_value(parse_forecast_error, forecast_error, "forecast_error", 0.0),
        "min_saving_pct": _form_value(_percentage, min_saving_pct, "min_saving_pct", DEFAULT_MIN_SAVING_PCT),
        "region": (region or "").strip() or None,
        "seed": _form_value(int, seed, "seed", 0),
        "job_duration": _form_value(parse_duration, job_duration, "job_duration", DEFAULT_JOB_DURATION),
    }
    with slots.take(user_key(user)), tempfile.TemporaryDirectory(prefix="carbon-simulate-") as tmp:
        folder = Path(tmp)
        paths = {"jobs": await save_upload(jobs, "jobs", folder), "carbon": await save_upload(carbon, "carbon", folder)}
        if solar is not None and solar.filename:
            paths["solar"] = await save_upload(solar, "solar", folder)
        try:
            return await run_in_worker(paths, folder, options, plots, request)
        except ClientGone:
            log.info("Carbon simulation of %s stopped: the client went away", user_key(user))
            return Response(status_code=HTTP_499_CLIENT_CLOSED_REQUEST)
