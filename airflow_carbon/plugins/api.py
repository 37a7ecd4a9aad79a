"""The Carbon plugin's JSON API, mounted at ``/carbon/api`` in Airflow's API server.

Every route needs an Airflow user (``CurrentUser``: 401 without a token) and returns rows of the
DAGs that user may read only. Database work and the simulator run in threads, so the API
server's event loop never waits on them.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile, status
from fastapi.responses import Response
from pydantic import BaseModel

from airflow_carbon.metrics.store import MetricsStore
from airflow_carbon.plugins import queries
from airflow_carbon.plugins.auth import CurrentUser, readable_dag_ids
from airflow_carbon.signals.series import Series, from_epoch_s

router = APIRouter(tags=["Carbon"])

R = TypeVar("R")

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
HTTP_413_CONTENT_TOO_LARGE = 413
UPLOAD_FIELDS = ("jobs", "carbon", "solar")
INTENSITY_CACHE_S = 300.0
INTENSITY_WINDOW = timedelta(hours=24)
MAX_INTENSITY_HISTORY = timedelta(days=7)
MAX_INTENSITY_SPAN = timedelta(days=10)
STORE_CACHE_S = 60.0
SIMULATIONS_AT_ONCE = 2


def utcnow() -> datetime:
    return datetime.now(UTC)


async def _in_thread(function: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    return await asyncio.to_thread(function, *args, **kwargs)


# -- the store ----------------------------------------------------------------------------------

_store_cache: dict[str, tuple[float, MetricsStore]] = {}
_store_lock = threading.Lock()


def metrics_store() -> MetricsStore:
    """The store of ``carbon_metrics_default``; the connection is looked up again after a minute."""
    with _store_lock:
        cached = _store_cache.get("store")
        if cached and time.monotonic() - cached[0] < STORE_CACHE_S:
            return cached[1]
    from airflow_carbon.hooks.metrics import CarbonMetricsHook

    store = CarbonMetricsHook().get_store()
    with _store_lock:
        _store_cache["store"] = (time.monotonic(), store)
    return store


def reset_store_cache() -> None:
    with _store_lock:
        _store_cache.clear()


async def store_dependency() -> MetricsStore:
    try:
        return await _in_thread(metrics_store)
    except Exception as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"carbon metrics store unavailable: {type(error).__name__}: {error}") from None


Store = Annotated[MetricsStore, Depends(store_dependency)]


# -- response shapes (for /carbon/docs) -------------------------------------------------------------

class TaskTryFields(BaseModel):
    """The fields every row of a task try has, waiting or done."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    region: str | None = None
    source: str | None = None
    served_by: str | None = None
    policy: str | None = None
    reason: str | None = None
    ready_at: datetime | None = None
    deadline: datetime | None = None
    planned_start: datetime | None = None


class DeferredTask(TaskTryFields):
    current_intensity_g_per_kwh: float | None = None
    expected_emissions_now_g: float | None = None
    expected_emissions_at_start_g: float | None = None
    expected_saving_g: float | None = None
    waited_s: float | None = None
    remaining_s: float | None = None


class HistoryDay(BaseModel):
    dag_id: str
    day: str
    tasks_run: int
    delayed: int
    forced_by_deadline: int
    served_by_fallback: int
    energy_kwh: float
    emissions_g: float
    baseline_emissions_g: float
    saved_g: float
    saved_pct: float | None = None


class TaskRun(TaskTryFields):
    started_at: datetime | None = None
    ended_at: datetime | None = None
    delay_s: float | None = None
    intensity_g_per_kwh: float | None = None
    baseline_intensity_g_per_kwh: float | None = None
    energy_kwh: float | None = None
    solar_kwh: float | None = None
    grid_kwh: float | None = None
    emissions_g: float | None = None
    baseline_emissions_g: float | None = None
    saved_g: float | None = None
    estimated: bool | None = None


class TaskTry(TaskRun):
    """One try of a task instance as the store holds it, with what the pages derive from it."""

    state: str
    signal: str | None = None
    decided_at: datetime | None = None
    expected_emissions_now_g: float | None = None
    expected_emissions_at_start_g: float | None = None
    failed_sources: list[str] | None = None
    updated_at: datetime | None = None
    current_intensity_g_per_kwh: float | None = None
    expected_saving_g: float | None = None
    waited_s: float | None = None
    remaining_s: float | None = None


class IntensitySeries(BaseModel):
    region: str
    source: str
    requested_source: str
    period_s: int
    unit: str
    kind: str
    replayed: bool
    estimated: bool
    failed_sources: list[str]
    points: list[tuple[datetime, float]]


class SimulationResult(BaseModel):
    inputs: dict[str, Any]
    headline: str
    policies: list[dict[str, Any]]
    table: str
    figures: dict[str, str]


# -- query parameters ---------------------------------------------------------------------------

def history_filters(
    dag_id: Annotated[str | None, Query(description="only this DAG")] = None,
    task_id: Annotated[str | None, Query(description="only this task id")] = None,
    region: Annotated[str | None, Query(description="only this grid region")] = None,
    start: Annotated[date | None, Query(description="first UTC day, YYYY-MM-DD (included)")] = None,
    end: Annotated[date | None, Query(description="last UTC day, YYYY-MM-DD (included)")] = None,
) -> queries.Filters:
    try:
        return queries.Filters(dag_id=dag_id or None, task_id=task_id or None, region=region or None, start=start,
                               end=end)
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None


FiltersDep = Annotated[queries.Filters, Depends(history_filters)]


def parse_map_index(text: str | None) -> int:
    """``-1`` when absent or left as the UI's literal ``{MAP_INDEX}`` (it fills it on mapped tasks only)."""
    if text is None or not text.strip() or "MAP_INDEX" in text:
        return -1
    try:
        return int(text)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"map_index: not an integer: {text!r}") from None


# -- routes -------------------------------------------------------------------------------------

@router.get("/deferred", response_model=list[DeferredTask], summary="Tasks waiting for a cleaner grid")
async def get_deferred(user: CurrentUser, store: Store, dag_id: str | None = None, task_id: str | None = None
                       ) -> list[dict[str, Any]]:
    dag_ids = await readable_dag_ids(user)
    return await _in_thread(queries.deferred, store.engine, dag_ids, utcnow(), dag_id=dag_id or None,
                            task_id=task_id or None)


@router.get("/history", response_model=list[HistoryDay], summary="Completed tasks per DAG and UTC day")
async def get_history(user: CurrentUser, store: Store, filters: FiltersDep) -> list[dict[str, Any]]:
    dag_ids = await readable_dag_ids(user)
    return await _in_thread(queries.history, store.engine, dag_ids, filters)


@router.get("/history.csv", response_class=Response, summary="The history as a CSV download",
            responses={200: {"content": {"text/csv": {}}}})
async def get_history_csv(user: CurrentUser, store: Store, filters: FiltersDep) -> Response:
    dag_ids = await readable_dag_ids(user)
    rows = await _in_thread(queries.history, store.engine, dag_ids, filters)
    parts = ["carbon-history", filters.dag_id, filters.task_id, filters.region,
             filters.start.isoformat() if filters.start else None, filters.end.isoformat() if filters.end else None]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(part for part in parts if part))
    return Response(queries.history_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


@router.get("/tasks", response_model=list[TaskRun], summary="Completed task tries, most recent, oldest first")
async def get_tasks(user: CurrentUser, store: Store, filters: FiltersDep,
                    limit: Annotated[int, Query(ge=1, le=queries.MAX_TASK_LIMIT)] = queries.DEFAULT_TASK_LIMIT
                    ) -> list[dict[str, Any]]:
    dag_ids = await readable_dag_ids(user)
    return await _in_thread(queries.tasks, store.engine, dag_ids, filters, limit)


@router.get("/decision/{dag_id}/{run_id}/{task_id}", response_model=list[TaskTry],
            summary="Every try of one task instance")
async def get_decision(user: CurrentUser, store: Store, dag_id: str, run_id: str, task_id: str,
                       map_index: str | None = "-1") -> list[dict[str, Any]]:
    index = parse_map_index(map_index)
    dag_ids = await readable_dag_ids(user)
    rows = await _in_thread(queries.decision, store.engine, dag_ids, dag_id, run_id, task_id, index, utcnow())
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no carbon record of task {task_id!r} (map index {index}) in run {run_id!r} of DAG "
                            f"{dag_id!r}, or you may not read that DAG")
    return rows


# -- intensity ----------------------------------------------------------------------------------

def signal_spec(source: str | None, region: str | None) -> Any:
    """A source as rows name it (``bundled:DE``, ``conn:<id>``) back to a ``SignalSpec``.

    File sources (``csv:<path>``) are refused: a query string must not make the server read a file.
    """
    from airflow_carbon.signals.source import SignalSpec

    region = (region or "").strip()
    if not source:
        if not region:
            raise ValueError("give a source (bundled:<region> or conn:<connection id>) or a bundled region")
        return SignalSpec("bundled", region)
    kind, _, rest = source.partition(":")
    if kind == "bundled" and rest:
        return SignalSpec("bundled", rest)
    if kind == "conn" and rest:
        return SignalSpec("connection", region, conn_id=rest)
    if kind == "csv":
        raise ValueError(f"source {source!r}: file sources are not read on request; a chart can show bundled "
                         "data or a connection's source")
    raise ValueError(f"source {source!r}: expected bundled:<region> or conn:<connection id> (a completed try's "
                     "source says where its data came from; its served_by names the source)")


_intensity_cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
_intensity_locks: dict[tuple[Any, ...], threading.Lock] = {}
_intensity_guard = threading.Lock()


def load_intensity(spec: Any, now: datetime, history: timedelta) -> tuple[Series | None, str | None, list[str]]:
    """``load_first`` for one source, cached for five minutes per source, region and hours of history.

    One load per key at a time: a page opened by many users at once reads the service once.
    """
    from airflow_carbon.hooks.sources import load_first

    hours = max(1, math.ceil(history.total_seconds() / 3600) + 1)
    key = (spec.name, spec.region, hours)
    with _intensity_guard:
        lock = _intensity_locks.setdefault(key, threading.Lock())
    with lock:
        cached = _intensity_cache.get(key)
        if cached and time.monotonic() - cached[0] < INTENSITY_CACHE_S:
            return cached[1]
        result = load_first([spec], now, timedelta(hours=hours))
        with _intensity_guard:
            for old in [k for k, (at, _) in _intensity_cache.items() if time.monotonic() - at >= INTENSITY_CACHE_S]:
                del _intensity_cache[old]
            if result[0] is not None:  # a failure is not cached: the next request tries again
                _intensity_cache[key] = (time.monotonic(), result)
        return result


def clear_intensity_cache() -> None:
    with _intensity_guard:
        _intensity_cache.clear()


def _instant(text: str | None, field: str) -> datetime | None:
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"{field}: not a date or an ISO 8601 instant: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get("/intensity", response_model=IntensitySeries, summary="Grid carbon intensity for a chart")
async def get_intensity(
    user: CurrentUser,
    source: Annotated[str | None, Query(description="bundled:<region> or conn:<connection id>, as rows name it")]
    = None,
    region: Annotated[str | None, Query(description="grid region")] = None,
    start: Annotated[str | None, Query(description="YYYY-MM-DD or ISO instant (default: a day ago)")] = None,
    end: Annotated[str | None, Query(description="YYYY-MM-DD or ISO instant (default: a day ahead)")] = None,
) -> dict[str, Any]:
    try:
        spec = signal_spec(source, region)
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    if spec.kind == "connection":
        dag_ids = await readable_dag_ids(user)
        store = await store_dependency()
        if not await _in_thread(queries.source_in_use, store.engine, dag_ids, spec.name):
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"no task of a DAG you may read uses the source {spec.name!r}")
    now = utcnow()
    first = _instant(start, "start") or now - INTENSITY_WINDOW
    last = _instant(end, "end") or first + 2 * INTENSITY_WINDOW
    if end and len(end.strip()) == 10:
        last += timedelta(days=1)  # a day given as the end is included
    if last <= first or last - first > MAX_INTENSITY_SPAN:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"start must be before end, at most {MAX_INTENSITY_SPAN.days} days apart")
    history = min(max(now - first, timedelta(0)), MAX_INTENSITY_HISTORY)
    series, served_by, failures = await _in_thread(load_intensity, spec, now, history)
    if series is None:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"no carbon signal from {spec.name}: {'; '.join(failures)}")
    part = series.between(first, last)
    return {
        "region": series.region, "source": served_by or spec.name, "requested_source": spec.name,
        "period_s": series.period_s, "unit": series.unit, "kind": series.kind, "replayed": series.replayed,
        "estimated": series.estimated, "failed_sources": failures,
        "points": [(from_epoch_s(t), float(v)) for t, v in zip(part.start_epoch_s, part.values, strict=True)],
    }


# -- simulation ---------------------------------------------------------------------------------

_simulations = threading.BoundedSemaphore(SIMULATIONS_AT_ONCE)


def safe_file_name(name: str | None, fallback: str) -> str:
    """The uploaded file's own name, without any directory, safe to create in a temporary folder."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", base).strip(" .")[:100]
    return base or fallback


async def save_upload(upload: UploadFile, field: str, folder: Path) -> Path:
    """Write an upload into ``folder/field/<its name>``; 413 past ``MAX_UPLOAD_BYTES``."""
    name = safe_file_name(upload.filename, f"{field}.csv")
    target = folder / field / name
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with target.open("wb") as out:
        while chunk := await upload.read(1024 * 1024):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise HTTPException(HTTP_413_CONTENT_TOO_LARGE,
                                    f"{field} file {name!r} is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
            out.write(chunk)
    return target


def _form_value(parse: Callable[[str], R], text: str | None, field: str, default: R) -> R:
    import argparse

    if text is None or not text.strip():
        return default
    try:
        return parse(text.strip())
    except (argparse.ArgumentTypeError, ValueError) as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{field}: {error}") from None


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a number >= 0, got {text!r}")
    return value


def run_simulation(paths: dict[str, Path], folder: Path, options: dict[str, Any], plots: bool) -> dict[str, Any]:
    """What ``airflow-carbon simulate --json --plots`` computes, as one JSON answer; figures as data URLs."""
    from airflow_carbon.cli import simulate_files
    from airflow_carbon.planning import PolicySettings
    from airflow_carbon.signals import SignalDataError
    from airflow_carbon.simulate.report import as_json

    names = {field: path.name for field, path in paths.items()}
    settings = PolicySettings(threshold_g_per_kwh=options["threshold"],
                              solar_threshold_kw=options["solar_threshold_kw"],
                              min_saving_pct=options["min_saving_pct"])
    try:
        run = simulate_files(paths["jobs"], paths["carbon"], paths.get("solar"), region=options["region"],
                             policies=options["policies"], max_delay=options["max_delay"], settings=settings,
                             forecast_error=options["forecast_error"], seed=options["seed"],
                             job_duration=options["job_duration"])
    except (SignalDataError, ValueError) as error:
        message = str(error)
        for field, path in paths.items():  # name the file as uploaded, not where it was saved
            message = message.replace(str(path), names[field]).replace(str(path.parent) + os.sep, "")
        raise HTTPException(status.HTTP_400_BAD_REQUEST, message) from None
    inputs = run.inputs(names["jobs"], names["carbon"], names.get("solar"), options["max_delay"],
                        options["forecast_error"])
    figures: dict[str, str] = {}
    if plots:
        from airflow_carbon.simulate.plots import write_plots

        for path in write_plots(run.results, run.intensity, run.solar, folder / "figures"):
            figures[path.stem] = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return {**as_json(run.rows, inputs), "headline": run.headline(names["carbon"], options["max_delay"],
                                                                   options["forecast_error"]),
            "table": run.table(), "figures": figures}


def _simulate_in_folder(uploads: dict[str, Path], folder: Path, options: dict[str, Any], plots: bool
                        ) -> dict[str, Any]:
    if not _simulations.acquire(timeout=60):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "too many simulations at once; try again")
    try:
        return run_simulation(uploads, folder, options, plots)
    finally:
        _simulations.release()


@router.post("/simulate", response_model=SimulationResult, summary="Compare policies on uploaded files")
async def post_simulate(
    user: CurrentUser,
    jobs: Annotated[UploadFile, File(description="jobs CSV: job_id, timestamp, energy, optional duration_s")],
    carbon: Annotated[UploadFile, File(description="carbon intensity CSV")],
    solar: Annotated[UploadFile | None, File(description="on-site solar CSV (optional)")] = None,
    policies: Annotated[str | None, Form(description="comma-separated policies, or all")] = None,
    max_delay: Annotated[str | None, Form(description="delay budget per job, e.g. 4h")] = None,
    threshold: Annotated[str | None, Form(description="threshold policy: green at or below g/kWh (250)")] = None,
    solar_threshold_kw: Annotated[str | None, Form(description="threshold policy: enough solar, kW")] = None,
    forecast_error: Annotated[str | None, Form(description="relative forecast error, 0.05 or 5%")] = None,
    min_saving_pct: Annotated[str | None, Form(description="forecast policy: wait only to save this much")] = None,
    region: Annotated[str | None, Form(description="region of a carbon file that holds several")] = None,
    seed: Annotated[str | None, Form(description="random seed of the forecast error")] = None,
    job_duration: Annotated[str | None, Form(description="run time of jobs without duration_s (1min)")] = None,
    plots: Annotated[bool, Form(description="draw the figures")] = True,
) -> dict[str, Any]:
    from airflow_carbon.cli import duration, fraction, policy_list

    options = {
        "policies": _form_value(policy_list, policies, "policies", policy_list("all")),
        "max_delay": _form_value(duration, max_delay, "max_delay", timedelta(hours=4)),
        "threshold": _form_value(_positive_float, threshold, "threshold", 250.0),
        "solar_threshold_kw": _form_value(_positive_float, solar_threshold_kw, "solar_threshold_kw", None),
        "forecast_error": _form_value(fraction, forecast_error, "forecast_error", 0.0),
        "min_saving_pct": _form_value(_positive_float, min_saving_pct, "min_saving_pct", 0.0),
        "region": (region or "").strip() or None,
        "seed": _form_value(int, seed, "seed", 0),
        "job_duration": _form_value(duration, job_duration, "job_duration", timedelta(minutes=1)),
    }
    with tempfile.TemporaryDirectory(prefix="carbon-simulate-") as tmp:
        folder = Path(tmp)
        paths = {"jobs": await save_upload(jobs, "jobs", folder), "carbon": await save_upload(carbon, "carbon", folder)}
        if solar is not None and solar.filename:
            paths["solar"] = await save_upload(solar, "solar", folder)
        return await _in_thread(_simulate_in_folder, paths, folder, options, plots)
