"""Energy meter overhead: what ``Metering.start`` + ``stop`` add to a task's run, and what they leave running.

* Per run: the same fixed CPU-bound work (a loop of as many iterations as take about 0.5 s here, counted once), timed
  with and without a meter around it (``Metering.start(meter)`` ... ``stop()``, after one first start), the two kinds
  alternating, ``--runs`` pairs. The meter's cost is its start and stop plus whatever its threads take from the work.
* First start: a fresh process per sample (``--samples``) times its first ``Metering.start`` + ``stop``: what every
  task pays, since Airflow runs each try in a process of its own.
* After stop: the CPU seconds the process uses over ``--idle-s`` seconds of sleep after its last meter stopped
  (``psutil`` process ``cpu_times``, children included), and the meters' threads still alive.

Usage: ``.venv/bin/python bench/energy.py [--runs 20] [--samples 3] [--idle-s 10] [--meter auto] [--append]``.
``--append`` puts the "## 6. Energy meter overhead" section at the end of bench/RESULTS.md (in place of an older one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow_carbon.meters import Metering  # noqa: E402
from bench.run import RESULTS_PATH, command_line, cpu_model, write_between_markers  # noqa: E402

SECTION_TITLE = "## 6. Energy meter overhead"
BEGIN, END = "<!-- bench/energy.py: begin -->", "<!-- bench/energy.py: end -->"
WORK_S = 0.5


def work(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate() -> int:
    """Iterations of ``work`` that take about ``WORK_S`` on a free core (the fastest of three probes)."""
    probe = 200_000
    fastest_s = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        work(probe)
        fastest_s = min(fastest_s, time.perf_counter() - started)
    return int(probe * WORK_S / fastest_s)


def per_run(meter: str, runs: int, iterations: int) -> dict[str, Any]:
    """Wall seconds of the work alone and with the meter around it, alternating; start and stop timed apart."""
    bare_s, metered_s, start_s, stop_s, readings = [], [], [], [], []
    for run in range(runs):
        for kind in (("bare", "metered") if run % 2 == 0 else ("metered", "bare")):
            began = time.perf_counter()
            if kind == "bare":
                work(iterations)
                bare_s.append(time.perf_counter() - began)
                continue
            metering = Metering.start(meter, "bench")
            started = time.perf_counter()
            work(iterations)
            worked = time.perf_counter()
            components, notes = metering.stop()
            ended = time.perf_counter()
            metered_s.append(ended - began)
            start_s.append(started - began)
            stop_s.append(ended - worked)
            readings.append(({c.name: [c.method, c.scope, c.energy_kwh] for c in components}, list(notes)))
    return {"bare_s": bare_s, "metered_s": metered_s, "start_s": start_s, "stop_s": stop_s, "readings": readings}


def first_start(meter: str) -> dict[str, float]:
    """In this (fresh) process: the first ``Metering.start`` + ``stop``."""
    began = time.perf_counter()
    metering = Metering.start(meter, "bench")
    started = time.perf_counter()
    metering.stop()
    return {"start_s": started - began, "start_stop_s": time.perf_counter() - began}


def after_stop(idle_s: float, threads_before: set[threading.Thread]) -> dict[str, Any]:
    """CPU seconds of this process (children included) over ``idle_s`` of sleep, and threads left by the meters."""
    import psutil

    process = psutil.Process()

    def cpu_s() -> float:
        times = process.cpu_times()
        return times.user + times.system + times.children_user + times.children_system

    left = [thread.name for thread in set(threading.enumerate()) - threads_before]
    before = cpu_s()
    time.sleep(idle_s)
    return {"idle_s": idle_s, "cpu_s": cpu_s() - before, "threads_left": left}


def child(args: argparse.Namespace) -> int:
    """A task's process has the carbon runtime loaded before its meter starts: so does this one."""
    import airflow_carbon.operators.runtime  # noqa: F401

    print(json.dumps(first_start(args.meter)))
    return 0


def fresh_first_starts(meter: str, samples: int) -> list[dict[str, float]]:
    results = []
    for _ in range(samples):
        out = subprocess.run([sys.executable, __file__, "--meter", meter, "--child"],
                             check=True, capture_output=True, text=True, cwd=ROOT)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def markdown(meter: str, runs: dict[str, Any], cold: list[dict], idle: dict[str, Any],
             iterations: int, command: str, started: datetime, total_s: float,
             load: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    bare, metered = runs["bare_s"], runs["metered_s"]
    added = [m - b for m, b in zip(metered, bare, strict=True)]
    ratio = _p50(metered) / _p50(bare)
    worst_s = max([*added, *(r["start_stop_s"] for r in cold)])
    components = runs["readings"][-1][0]
    notes = sorted({note for _, run_notes in runs["readings"] for note in run_notes})
    known_kwh: dict[str, list[float]] = {}
    for read, _ in runs["readings"]:
        for name, (_, _, kwh) in read.items():
            if kwh is not None:
                known_kwh.setdefault(name, []).append(kwh)
    energy = {name: statistics.mean(values) for name, values in known_kwh.items()}
    lines = [
        BEGIN,
        SECTION_TITLE,
        "",
        f"Made by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {total_s:.0f} s (`bench/energy.py`, separate from "
        "`bench/run.py`).",
        "",
        f"- `nproc`: {len(os.sched_getaffinity(0))}; CPU: {cpu_model()}; Python {platform.python_version()}, "
        f"{platform.platform()}",
        f"- Load average at start: {', '.join(f'{x:.2f}' for x in load[0])}; at end: "
        f"{', '.join(f'{x:.2f}' for x in load[1])} (shared machine: timings are upper bounds)",
        f"- `energy_meter={meter}`; what it read (the last run): "
        + ", ".join(f"`{name}` {method} / {scope}" for name, (method, scope, _) in components.items())
        + (f"; notes: {'; '.join(notes)}" if notes else "; no notes"),
        "",
        f"How: the same CPU-bound work ({iterations:,} loop iterations, about {WORK_S} s on a free core here) "
        f"{len(bare)} times alone and as many times with the meter started before it and stopped after it, the two "
        "kinds alternating, after one first start. *Added* is each metered run minus the bare run beside it.",
        "",
        "| | p50 | max |",
        "|---|---:|---:|",
        f"| work alone | {_p50(bare):.3f} s | {max(bare):.3f} s |",
        f"| work with the meter (start + work + stop) | {_p50(metered):.3f} s | {max(metered):.3f} s |",
        f"| added by the meter | {_p50(added) * 1000:+.1f} ms | {max(added) * 1000:+.1f} ms |",
        f"| of which `Metering.start` | {_p50(runs['start_s']) * 1000:.1f} ms | {max(runs['start_s']) * 1000:.1f} ms |",
        f"| of which `Metering.stop` | {_p50(runs['stop_s']) * 1000:.1f} ms | {max(runs['stop_s']) * 1000:.1f} ms |",
        "",
        f"- Ratio with / without the meter, p50: **{ratio:.3f}x**; worst added {max(added):.3f} s.",
        "- Energy read per metered run (mean): "
        + ", ".join(f"`{name}` {kwh * 3.6e6:.2f} J" for name, kwh in energy.items()) + ".",
        "",
        f"First start in a fresh process with the carbon runtime loaded, as in every task's own process ({len(cold)} "
        "processes; p50 / max):",
        "",
        "| first `Metering.start` | first start + stop |",
        "|---:|---:|",
        f"| {_p50([r['start_s'] for r in cold]):.3f} / {max(r['start_s'] for r in cold):.3f} s"
        f" | {_p50([r['start_stop_s'] for r in cold]):.3f} / {max(r['start_stop_s'] for r in cold):.3f} s |",
        "",
        f"- Goal (issue 16): a meter adds under 1 s to a task's run: {'met' if worst_s < 1.0 else 'NOT met'} (worst "
        f"first start + stop {worst_s:.3f} s). codecarbon's own first start probes the CPU with py-cpuinfo (a "
        "subprocess, 1.4-1.8 s here); the meter names the CPU model the kernel gives in /proc/cpuinfo instead "
        "(`meters/cpu.py`), so no task pays the probe.",
        "",
        f"After stop: the process used **{idle['cpu_s']:.3f} s** of CPU over {idle['idle_s']:.0f} s of sleep after "
        f"its last meter stopped; threads the meters left alive: "
        f"{', '.join(idle['threads_left']) if idle['threads_left'] else 'none'}. codecarbon's two timer threads run "
        "only between start and stop (`stop` waits for them to end), so nothing meters a deferred task.",
        END,
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="pairs of runs, bare and metered (default 20)")
    parser.add_argument("--samples", type=int, default=3, help="fresh processes per first-start figure (default 3)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds of sleep after stop (default 10)")
    parser.add_argument("--meter", default="auto", help="energy_meter to start (default auto)")
    parser.add_argument("--append", action="store_true", help="put the section into bench/RESULTS.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        return child(args)
    started, began, load_before = datetime.now(UTC), time.perf_counter(), os.getloadavg()
    cold = fresh_first_starts(args.meter, args.samples)
    threads_before = set(threading.enumerate())
    Metering.start(args.meter, "bench").stop()  # the first start is measured above, in fresh processes
    iterations = calibrate()
    runs = per_run(args.meter, args.runs, iterations)
    idle = after_stop(args.idle_s, threads_before)
    section = markdown(args.meter, runs, cold, idle, iterations, command_line(argv), started,
                       time.perf_counter() - began, (load_before, os.getloadavg()))
    print(section)
    if args.append:
        write_between_markers(section, BEGIN, END)
        print(f"appended to {RESULTS_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
