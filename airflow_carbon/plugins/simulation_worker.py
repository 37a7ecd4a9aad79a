"""One simulation of the Carbon view, in a process of its own: ``python -m airflow_carbon.plugins.simulation_worker``.

The API server (``simulation.py``) starts one per simulation and can kill it; the kernel enforces the limits it
cannot enforce on a thread: CPU time, address space, file size. The request (saved file paths, options, limits)
comes as JSON on stdin and the answer goes as JSON on stdout. The module imports neither FastAPI nor Airflow, so
the process starts in about a second, and it runs with an environment that holds none of the server's secrets.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_carbon.errors import CarbonConfigError

MIB = 1024 * 1024
#: Status of an answer the simulator refused (the message names the file, line and column).
BAD_INPUT = 400
#: Status of a simulation that needed more than its limits.
TOO_LARGE = 413
_PR_SET_PDEATHSIG = 1


class SimulationInputError(CarbonConfigError):
    """An uploaded file or option the simulator refused; the message names the file as it was uploaded."""


def encode_duration(value: timedelta) -> list[int]:
    """A duration as exact integers: JSON has no timedelta and a float of seconds loses microseconds."""
    return [value.days, value.seconds, value.microseconds]


def decode_duration(parts: list[int]) -> timedelta:
    days, seconds, microseconds = parts
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)


def run_simulation(paths: dict[str, Path], folder: Path, options: dict[str, Any], plots: bool) -> dict[str, Any]:
    """What ``airflow-carbon simulate --json --plots`` computes, as one JSON answer; figures as data URLs.

    :raises SimulationInputError: a file or an option the simulator refused.
    """
    from airflow_carbon.planning import PolicySettings
    from airflow_carbon.signals import SignalDataError
    from airflow_carbon.simulate.files import simulate_files
    from airflow_carbon.simulate.report import as_json

    names = {field: path.name for field, path in paths.items()}
    try:
        settings = PolicySettings(threshold_g_per_kwh=options["threshold"],
                                  solar_threshold_kw=options["solar_threshold_kw"],
                                  min_saving_pct=options["min_saving_pct"])
        run = simulate_files(paths["jobs"], paths["carbon"], paths.get("solar"), region=options["region"],
                             policies=options["policies"], max_delay=options["max_delay"], settings=settings,
                             forecast_error=options["forecast_error"], seed=options["seed"],
                             job_duration=options["job_duration"])
    except (SignalDataError, ValueError) as error:
        message = str(error)
        for field, path in paths.items():  # name the file as uploaded, not where it was saved
            message = message.replace(str(path), names[field]).replace(str(path.parent) + os.sep, "")
        raise SimulationInputError(message) from None
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


def encode_request(paths: dict[str, Path], folder: Path, options: dict[str, Any], plots: bool, *,
                   cpu_s: int, memory_bytes: int, file_bytes: int) -> bytes:
    """What the API server writes to the worker's stdin."""
    durations = {"max_delay", "job_duration"}
    return json.dumps({
        "paths": {field: str(path) for field, path in paths.items()}, "folder": str(folder), "plots": plots,
        "options": {key: encode_duration(value) if key in durations else value for key, value in options.items()},
        "limits": {"cpu_s": cpu_s, "memory_bytes": memory_bytes, "file_bytes": file_bytes},
        "parent_pid": os.getpid(),
    }).encode()


def _limit_this_process(cpu_s: int, memory_bytes: int, file_bytes: int, parent_pid: int) -> None:
    """Below the API server in priority, inside the limits, and gone when the API server is gone."""
    with contextlib.suppress(OSError):
        os.nice(10)
    # Past the soft CPU limit the kernel sends SIGXCPU, which ends the process; the hard one is the backstop.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the API server went before the line above took effect
        sys.exit(1)


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers, as FastAPI would write them."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    limits = request["limits"]
    _limit_this_process(limits["cpu_s"], limits["memory_bytes"], limits["file_bytes"], request["parent_pid"])
    options = dict(request["options"])
    for key in ("max_delay", "job_duration"):
        options[key] = decode_duration(options[key])
    paths = {field: Path(path) for field, path in request["paths"].items()}
    try:
        answer = {"status": 200, "result": run_simulation(paths, Path(request["folder"]), options,
                                                          request["plots"])}
    except SimulationInputError as error:
        answer = {"status": BAD_INPUT, "detail": str(error)}
    except MemoryError:
        answer = {"status": TOO_LARGE, "detail": f"the simulation needs more than "
                                                 f"{limits['memory_bytes'] // MIB} MiB of memory, the limit here"}
    sys.stdout.buffer.write(json.dumps(answer, default=_plain).encode())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
