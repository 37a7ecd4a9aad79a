"""The Carbon view's simulator: uploaded files in, what ``airflow-carbon simulate --json --plots`` prints out."""

from __future__ import annotations

import base64
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status

from airflow_carbon.planning import DEFAULT_MAX_DELAY, DEFAULT_THRESHOLD_G_PER_KWH, PolicySettings
from airflow_carbon.plugins.auth import CurrentUser
from airflow_carbon.plugins.common import in_thread
from airflow_carbon.plugins.models import SimulationResult
from airflow_carbon.simulate.files import (
    DEFAULT_JOB_DURATION,
    parse_forecast_error,
    parse_policies,
    simulate_files,
)
from airflow_carbon.units import parse_duration

router = APIRouter()

T = TypeVar("T")

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
HTTP_413_CONTENT_TOO_LARGE = 413
UPLOAD_FIELDS = ("jobs", "carbon", "solar")
SIMULATIONS_AT_ONCE = 2

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


# -- the run ------------------------------------------------------------------------------------

def run_simulation(paths: dict[str, Path], folder: Path, options: dict[str, Any], plots: bool) -> dict[str, Any]:
    """What ``airflow-carbon simulate --json --plots`` computes, as one JSON answer; figures as data URLs."""
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
) -> dict[str, Any]:
    # An empty field takes the CLI's default.
    options = {
        "policies": _form_value(parse_policies, policies, "policies", parse_policies("all")),
        "max_delay": _form_value(parse_duration, max_delay, "max_delay", DEFAULT_MAX_DELAY),
        "threshold": _form_value(_non_negative_float, threshold, "threshold", DEFAULT_THRESHOLD_G_PER_KWH),
        "solar_threshold_kw": _form_value(_non_negative_float, solar_threshold_kw, "solar_threshold_kw", None),
        "forecast_error": _form_value(parse_forecast_error, forecast_error, "forecast_error", 0.0),
        "min_saving_pct": _form_value(_non_negative_float, min_saving_pct, "min_saving_pct", 0.0),
        "region": (region or "").strip() or None,
        "seed": _form_value(int, seed, "seed", 0),
        "job_duration": _form_value(parse_duration, job_duration, "job_duration", DEFAULT_JOB_DURATION),
    }
    with tempfile.TemporaryDirectory(prefix="carbon-simulate-") as tmp:
        folder = Path(tmp)
        paths = {"jobs": await save_upload(jobs, "jobs", folder), "carbon": await save_upload(carbon, "carbon", folder)}
        if solar is not None and solar.filename:
            paths["solar"] = await save_upload(solar, "solar", folder)
        return await in_thread(_simulate_in_folder, paths, folder, options, plots)
