"""Triggerer load: N carbon triggers on one event loop, side by side with N of Airflow's ``DateTimeTrigger``.

Each run is a fresh child process playing one triggerer: N triggers are re-created from their
serialized kwargs (``import_string(classpath)(**kwargs)``, as the triggerer does) and each runs as
one task ``async for event in trigger.run()`` on ONE asyncio event loop (the loop of Airflow's
``TriggerRunner.run_trigger``, without its supervisor, log routing and database). The parent
process holds the fake signal server (``tests/fakes/signal_server.py``), so its threads' CPU is not
counted against the triggerer.

* ``carbon``: ``CarbonWindowTrigger``s, policy ``forecast``, spread over 3 WattTime connections
  (``AIRFLOW_CONN_WT_A/B/C``, one region each), ``refresh_s`` short, the deadline 24 h away. The
  server answers every ``/v3/forecast`` with the same 72 h, 5-minute forecast: dirty until a known
  moment ``green_at``, then clean for 2 h. Each trigger plans ``green_at`` as its start, wakes at
  its refreshes, and fires when the window opens.
* ``baseline``: ``DateTimeTrigger(moment=green_at)``.

Measured in the child: event-loop lag (a ticker sleeping 10 ms, how late it wakes), RSS per
waiting trigger (``/proc/self/statm``), CPU seconds (``time.process_time``) per refresh interval
while waiting, how long after ``green_at`` the last trigger fired; for carbon also the re-plans
(``decide`` calls) and their time. The parent counts ``/v3/forecast`` requests over the run.
Item 2, planning at scale: 10,000 ``decide("forecast", ...)`` calls on a 72 h, 5-minute forecast.

Usage: ``.venv/bin/python bench/triggerer.py [--quick] [--n 1000 --n 10000] [--append]``.
``--append`` puts the "## 4. Triggerer load" section into bench/RESULTS.md (in place of an older
section 4, leaving the other sections as they are).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import RESULTS_PATH, command_line, cpu_model  # noqa: E402

REGIONS = {"WT_A": "BENCH_REGION_A", "WT_B": "BENCH_REGION_B", "WT_C": "BENCH_REGION_C"}
REFRESH_S = 5.0
TICK_S = 0.010
#: Refresh intervals the triggers wait through before the window opens (after all are created and planned).
WAIT_REFRESHES = 4
DIRTY_LBS, CLEAN_LBS = 1000.0, 100.0
PLANNING_DECISIONS = 10_000
SECTION_TITLE = "## 4. Triggerer load"


# -- the child: one triggerer ------------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _prototype(kind: str, index: int, green_at: datetime, refresh_s: float):
    if kind == "baseline":
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        return DateTimeTrigger(moment=green_at)
    from airflow_carbon.triggers.carbon import CarbonWindowTrigger

    conn_id = sorted(REGIONS)[index % len(REGIONS)].lower()
    return CarbonWindowTrigger(
        ready_at=datetime.now(UTC), deadline=green_at + timedelta(hours=24), policy="forecast", duration_s=3600,
        energy_kwh=1.0, signals=[{"kind": "connection", "region": REGIONS[conn_id.upper()], "conn_id": conn_id}],
        refresh_s=refresh_s)


async def _triggerer(kind: str, n: int, green_at: datetime, refresh_s: float) -> dict[str, Any]:
    from airflow.sdk._shared.module_loading import import_string

    import airflow_carbon.triggers.carbon as carbon_module

    plans = {"calls": 0, "seconds": 0.0, "rounds": 0}
    decide = carbon_module.decide
    own_decide = carbon_module.CarbonWindowTrigger._decide

    def counted_round(self, *args: Any, **kwargs: Any):
        plans["rounds"] += 1
        return own_decide(self, *args, **kwargs)

    def counted_decide(*args: Any, **kwargs: Any):
        began = time.perf_counter()
        try:
            return decide(*args, **kwargs)
        finally:
            plans["calls"] += 1
            plans["seconds"] += time.perf_counter() - began

    carbon_module.decide = counted_decide
    carbon_module.CarbonWindowTrigger._decide = counted_round
    loop = asyncio.get_running_loop()
    lags: list[tuple[float, float]] = []  # (when, how late)
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            expected = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            now = loop.time()
            lags.append((time.time(), now - expected))

    ticking = asyncio.create_task(ticker())
    serialized = [_prototype(kind, i, green_at, refresh_s).serialize() for i in range(n)]
    if kind == "carbon":  # import what the first read imports lazily, so the RSS delta is the triggers' own
        import httpx  # noqa: F401

        from airflow_carbon.signals.source import source_types

        source_types()
        _waiting_in_the_store(n)
    gc.collect()
    await asyncio.sleep(0.2)
    rss_before = rss_bytes()
    fired: list[float] = []
    events: list[Any] = []

    async def run_trigger(trigger) -> None:  # TriggerRunner.run_trigger, less its logging, spans and database
        async for event in trigger.run():
            fired.append(time.time())
            events.append(event)

    triggers = [import_string(path)(**kwargs) for path, kwargs in serialized]
    if kind == "carbon":
        for index, trigger in enumerate(triggers):
            trigger.task_instance = SimpleNamespace(dag_id="bench", task_id=f"task_{index}", run_id="run",
                                                    map_index=-1, try_number=1)
    created_at = time.time()
    tasks = [asyncio.create_task(run_trigger(trigger)) for trigger in triggers]
    del triggers
    created_s = time.time() - created_at
    # Let every trigger start and (carbon) plan once, then measure the steady wait.
    while kind == "carbon" and plans["rounds"] < n and time.time() < green_at.timestamp():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    first_plans_done = time.time()
    gc.collect()
    rss_waiting = rss_bytes()
    waiting_from = time.time()  # the bench's own gc.collect() above stalls the loop: not the triggers' lag
    cpu0, wall0, plans0 = time.process_time(), time.time(), dict(plans)
    await asyncio.sleep(max(0.0, green_at.timestamp() - 0.5 - time.time()))
    cpu1, wall1, plans1 = time.process_time(), time.time(), dict(plans)
    rss_late = rss_bytes()
    _done, pending = await asyncio.wait(tasks, timeout=max(60.0, 2 * refresh_s))
    all_fired_at = time.time()
    await asyncio.sleep(0.2)
    stop.set()
    await ticking
    for task in pending:
        task.cancel()
    from airflow_carbon.signals.cache import shared_cache
    from airflow_carbon.triggers.control import control_watch

    control_polls = control_watch("carbon_metrics_default").polls if kind == "carbon" else 0
    reasons: dict[str, int] = {}
    for event in events:
        reason = event.payload.get("reason", "?") if isinstance(event.payload, dict) else "moment"
        reasons[reason] = reasons.get(reason, 0) + 1
    waiting_s = wall1 - wall0
    return {
        "kind": kind, "n": n, "refresh_s": refresh_s, "green_at": green_at.timestamp(),
        "created_s": created_s, "first_plans_done": first_plans_done, "waiting_from": waiting_from,
        "all_done_wall": all_fired_at,
        "fired": len(fired), "pending": len(pending), "reasons": reasons,
        "first_fired_after_s": min(fired) - green_at.timestamp() if fired else None,
        "last_fired_after_s": max(fired) - green_at.timestamp() if fired else None,
        "rss_before": rss_before, "rss_waiting": rss_waiting, "rss_late": rss_late,
        "cpu_waiting_s": cpu1 - cpu0, "waiting_s": waiting_s,
        "plans_waiting": plans1["calls"] - plans0["calls"], "plan_s_waiting": plans1["seconds"] - plans0["seconds"],
        "plans_total": plans["calls"], "plan_s_total": plans["seconds"], "rounds_total": plans["rounds"],
        "cache_loads": shared_cache().loads, "control_polls": control_polls,
        "lags": lags,
    }


def _waiting_in_the_store(n: int) -> None:
    """The N tries wait in a SQLite metrics store, and each trigger knows its try (``task_instance``, as the
    triggerer sets it): so every trigger joins the triggerer's poll of releases and switches, and its plans are
    written in batches. The store is opened here, before the RSS is read, as a triggerer has it open already."""
    from airflow_carbon.hooks.metrics import CarbonMetricsHook
    from airflow_carbon.metrics.record import DEFERRED
    from airflow_carbon.metrics.schema import TABLE

    store = CarbonMetricsHook().get_store()
    now = datetime.now(UTC)
    rows = [{"dag_id": "bench", "task_id": f"task_{index}", "run_id": "run", "map_index": -1, "try_number": 1,
             "state": DEFERRED, "ready_at": now, "updated_at": now} for index in range(n)]
    with store.engine.begin() as connection:
        connection.execute(TABLE.insert(), rows)


def child_main(kind: str, n: int, green_at_s: float, refresh_s: float, out: Path) -> None:
    green_at = datetime.fromtimestamp(green_at_s, UTC)
    result = asyncio.run(_triggerer(kind, n, green_at, refresh_s))
    out.write_text(json.dumps(result), encoding="utf-8")


# -- the parent: server, children, report ------------------------------------------------------------------------


def forecast_body(green_at_s: int) -> dict[str, Any]:
    """72 h of 5-minute points from 1 h before ``green_at``: dirty, then clean for 2 h from ``green_at``, then dirty."""
    first = green_at_s - 3600
    data = []
    for k in range(72 * 12):
        t = first + 300 * k
        clean = green_at_s <= t < green_at_s + 7200
        data.append({"point_time": datetime.fromtimestamp(t, UTC).isoformat(),
                     "value": CLEAN_LBS if clean else DIRTY_LBS + (k % 7)})
    meta = {"region": "BENCH", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh",
            "data_point_period_seconds": 300, "generated_at": datetime.fromtimestamp(first, UTC).isoformat()}
    return {"data": data, "meta": meta}


def run_child(kind: str, n: int, server, refresh_s: float, lead_s: float) -> dict[str, Any]:
    green_at_s = int(time.time() + lead_s) + 1
    server.clear_faults()
    server.fail("/v3/forecast", status=200, times=None, body=forecast_body(green_at_s))
    server.clear_requests()
    out = Path(f"/tmp/bench_triggerer_{os.getpid()}_{kind}_{n}.json")
    env = dict(os.environ)
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    store_path = out.with_suffix(".db")
    env["AIRFLOW_CONN_CARBON_METRICS_DEFAULT"] = json.dumps({"conn_type": "sqlite", "host": str(store_path)})
    began = time.time()
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--n", str(n), "--green-at", str(green_at_s),
                           "--refresh-s", str(refresh_s), "--out", str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} N={n} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text(encoding="utf-8"))
    out.unlink()
    for path in store_path.parent.glob(store_path.name + "*"):
        path.unlink()
    requests = server.requests
    result["forecast_requests"] = sum(r.path == "/v3/forecast" for r in requests)
    result["login_requests"] = sum(r.path == "/login" for r in requests)
    result["forecast_by_region"] = {region: sum(r.path == "/v3/forecast" and r.query.get("region") == region
                                                for r in requests) for region in REGIONS.values()}
    result["wall_s"] = time.time() - began
    result["stderr_tail"] = proc.stderr[-500:]
    return result


def lag_stats(result: dict[str, Any], phase: str) -> tuple[float, float, float, int]:
    """p50, p99, max (ms) and count of the ticker's lateness in a phase: ``waiting`` or ``firing``."""
    green = result["green_at"]
    if phase == "waiting":
        lo, hi = result.get("waiting_from", result["first_plans_done"]), green
    else:
        lo, hi = green, result["all_done_wall"]
    lags = np.array([lag for when, lag in result["lags"] if lo <= when <= hi] or [0.0]) * 1000.0
    return float(np.percentile(lags, 50)), float(np.percentile(lags, 99)), float(lags.max()), len(lags)


def derived(result: dict[str, Any], refresh_s: float) -> dict[str, float]:
    intervals = result["waiting_s"] / refresh_s
    per_trigger = (result["rss_waiting"] - result["rss_before"]) / result["n"]
    out = {"rss_per_trigger_kib": per_trigger / 1024.0, "cpu_per_refresh_s": result["cpu_waiting_s"] / intervals}
    if result["kind"] == "carbon":
        rounds = result["rounds_total"] / result["n"]
        out["plan_rounds"] = rounds
        out["requests_per_round"] = result["forecast_requests"] / rounds
        out["plan_s_per_refresh"] = result["plan_s_waiting"] / intervals
    return out


def planning_at_scale(decisions: int) -> dict[str, float]:
    from airflow_carbon.planning import Job, decide
    from bench.jobs import random_forecast

    rng = np.random.default_rng(7)
    forecasts = [random_forecast(rng, points=864, period_s=300, start_epoch_s=1_704_067_200 + 300 * i)
                 for i in range(100)]
    job = Job(timedelta(hours=1), 1.0)
    for forecast in forecasts[:10]:
        now = datetime.fromtimestamp(forecast.first_epoch_s, UTC)
        decide("forecast", now=now, deadline=now + timedelta(hours=71), job=job, intensity=forecast)
    cpu0, began = time.process_time(), time.perf_counter()
    for i in range(decisions):
        forecast = forecasts[i % len(forecasts)]
        now = datetime.fromtimestamp(forecast.first_epoch_s, UTC)
        decide("forecast", now=now, deadline=now + timedelta(hours=71), job=job, intensity=forecast)
    return {"decisions": decisions, "wall_s": time.perf_counter() - began, "cpu_s": time.process_time() - cpu0}


def _f(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def markdown(runs: list[tuple[dict, dict]], planning: dict[str, float], command: str, started: datetime,
             total_s: float, refresh_s: float, blocked: list[str], load: tuple[tuple, tuple]) -> str:
    import platform

    import airflow

    lines = [
        SECTION_TITLE, "",
        f"Made by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {total_s:.0f} s "
        "(`bench/triggerer.py`, separate from `bench/run.py`).",
        "",
        f"- `nproc`: {len(os.sched_getaffinity(0))}; CPU: {cpu_model()}; Python {platform.python_version()}, "
        f"Airflow {airflow.__version__}, {platform.platform()}; default asyncio event loop",
        f"- Load average at start: {', '.join(f'{x:.2f}' for x in load[0])}; at end: "
        f"{', '.join(f'{x:.2f}' for x in load[1])} (shared machine: timings are upper bounds)",
        "",
        "How: each row is a fresh child process playing one triggerer. N triggers are re-created from their "
        "serialized kwargs and each runs as one task `async for event in trigger.run()` on one asyncio loop "
        "(`TriggerRunner.run_trigger` without its supervisor, log routing and database; trigger logging at "
        "WARNING, so neither kind pays for its INFO lines). The fake signal server runs in the parent, so its CPU "
        "is not counted. *carbon*: `CarbonWindowTrigger`, policy `forecast`, 1 h job, deadline 24 h away, "
        f"`refresh_s={refresh_s:g}`, spread evenly over 3 WattTime connections (`AIRFLOW_CONN_WT_A/B/C`, one "
        "region each); every `/v3/forecast` answers a 72 h, 5-minute forecast that is dirty until `green_at` "
        "and clean for 2 h from it. Each carbon trigger knows its try (`task_instance`, as the triggerer sets "
        "it) and its try waits in a SQLite metrics store, so all of them join the triggerer's poll of releases "
        "and eco-mode switches (every 10 s, one query) and report their plans to be written in one batch per "
        "poll. *baseline*: Airflow's `DateTimeTrigger(moment=green_at)`. "
        f"Both wait through about {WAIT_REFRESHES} refresh intervals after all triggers are created (and, for "
        "carbon, planned once) before `green_at`.",
        "",
        "Columns: *lag* = how late a 10 ms ticker on the same loop woke (p50 / p99 / max), while waiting (from "
        "after the bench's own `gc.collect()` for the RSS reading, which stalls the loop for both kinds) and "
        "while firing; *RSS / trigger* = (RSS with all waiting - RSS before creating them) / N; *CPU / refresh* = "
        f"`process_time` over the waiting phase / ({refresh_s:g} s intervals in it); *last fired* = from "
        "`green_at` until the last of the N triggers had yielded its event; *requests / refresh* = "
        "`/v3/forecast` requests over the whole run / planning rounds per trigger (rounds / N).",
        "",
        "| N | trigger | requests / refresh | lag waiting p50 / p99 / max | lag firing p50 / p99 / max | "
        "RSS / trigger | CPU / refresh | last fired after `green_at` | fired |",
        "|---:|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for carbon, baseline in runs:
        for result in (carbon, baseline):
            if result is None:
                continue
            d = derived(result, refresh_s)
            wait, fire = lag_stats(result, "waiting"), lag_stats(result, "firing")
            requests = (f"{d['requests_per_round']:.2f} ({result['forecast_requests']} in "
                        f"{d['plan_rounds']:.1f} rounds)" if result["kind"] == "carbon" else "-")
            lines.append(
                f"| {result['n']:,} | {result['kind']} | {requests} | {wait[0]:.1f} / {wait[1]:.1f} / {wait[2]:.0f} ms"
                f" | {fire[0]:.1f} / {fire[1]:.1f} / {fire[2]:.0f} ms ({fire[3]} ticks) | "
                f"{_f(d['rss_per_trigger_kib'])} KiB | "
                f"{d['cpu_per_refresh_s']:.3f} s | {result['last_fired_after_s']:.3f} s | "
                f"{result['fired']:,} / {result['n']:,} |")
    lines += ["", "Ratios carbon / baseline:", ""]
    for carbon, baseline in runs:
        if carbon is None or baseline is None:
            continue
        dc, db = derived(carbon, refresh_s), derived(baseline, refresh_s)
        lc, lb = lag_stats(carbon, "waiting"), lag_stats(baseline, "waiting")
        fc, fb = lag_stats(carbon, "firing"), lag_stats(baseline, "firing")
        lines.append(
            f"- N = {carbon['n']:,}: RSS / trigger {dc['rss_per_trigger_kib'] / db['rss_per_trigger_kib']:.1f}x; "
            f"CPU / refresh {dc['cpu_per_refresh_s'] / max(db['cpu_per_refresh_s'], 1e-9):.1f}x; "
            f"lag p99 waiting {lc[1] / max(lb[1], 1e-9):.1f}x, firing {fc[1] / max(fb[1], 1e-9):.1f}x; "
            f"last fired {carbon['last_fired_after_s'] / max(baseline['last_fired_after_s'], 1e-9):.2f}x. "
            f"Carbon detail: {carbon['forecast_requests']} forecast requests "
            f"({', '.join(f'{k}: {v}' for k, v in carbon['forecast_by_region'].items())}), "
            f"{carbon['login_requests']} logins, {carbon['cache_loads']} cache loads, "
            f"{carbon['control_polls']} polls of releases and switches (one query each, with the batch of plans); "
            f"{carbon['rounds_total']:,} planning rounds made {carbon['plans_total']:,} `decide` calls (triggers with "
            f"the same inputs share one), {carbon['plan_s_total']:.2f} s in all, "
            f"{dc['plan_s_per_refresh']:.3f} s per refresh interval while waiting; creating the N tasks took "
            f"{carbon['created_s']:.2f} s (baseline {baseline['created_s']:.2f} s); events: {carbon['reasons']}.")
    lines += [
        "",
        "Requests per refresh count the first planning round too, and the last round before the window may "
        "find a read still fresh, so they stay just under 3 (one per region). An earlier run found each region "
        "re-read only every other refresh (2.00 and 2.25): the trigger timed its next wake from before its read, "
        "so it woke to a read not yet stale and planned on data up to 2 x `refresh_s` old. The trigger now times "
        "the wake from after the read and the cache treats an entry of exactly `refresh_s` as stale. Never more "
        "than one read per region and refresh was seen.",
    ]
    share = planning["wall_s"] / 300.0
    lines += [
        "",
        f"Planning at scale (item 2): {planning['decisions']:,} `decide(\"forecast\", ...)` calls, each on a 72 h, "
        f"5-minute forecast (864 points, `bench.jobs.random_forecast`, seed 7), 1 h job, deadline 71 h: "
        f"**{planning['wall_s']:.2f} s** wall ({planning['cpu_s']:.2f} s CPU), "
        f"{planning['wall_s'] / planning['decisions'] * 1e3:.3f} ms each, i.e. **{100 * share:.2f} %** of a "
        "5-minute refresh interval for 10,000 waiting triggers re-planning once each.",
    ]
    if blocked:
        lines += ["", *(f"- Not measured: {reason}" for reason in blocked)]
    return "\n".join(lines) + "\n"


def append_section(section: str) -> None:
    """Put section 4 in place of an older one, keeping every section before and after it."""
    text = RESULTS_PATH.read_text(encoding="utf-8")
    if SECTION_TITLE not in text:
        RESULTS_PATH.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")
        return
    head, rest = text.split(SECTION_TITLE, 1)
    after = rest.find("\n## ")
    marker = rest.find("\n<!-- bench/")
    ends = [at for at in (after, marker) if at >= 0]
    tail = rest[min(ends):] if ends else ""
    RESULTS_PATH.write_text(head.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n" + tail, encoding="utf-8")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 200 only")
    parser.add_argument("--n", type=int, action="append", help="trigger counts (default 1000 and 10000)")
    parser.add_argument("--refresh-s", type=float, default=REFRESH_S)
    parser.add_argument("--append", action="store_true", help="append section 4 to bench/RESULTS.md")
    parser.add_argument("--child", choices=("carbon", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--green-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        child_main(args.child, args.n[0], args.green_at, args.refresh_s, args.out)
        return 0
    from tests.fakes.signal_server import WATTTIME_PASSWORD, WATTTIME_USERNAME, FakeSignalServer

    sizes = [200] if args.quick else (args.n or [1000, 10_000])
    started, began, load0 = datetime.now(UTC), time.perf_counter(), os.getloadavg()
    runs, blocked = [], []
    with FakeSignalServer() as server:
        server.watttime_regions = set(REGIONS.values())
        for conn_id, region in REGIONS.items():
            os.environ[f"AIRFLOW_CONN_{conn_id}"] = json.dumps({
                "conn_type": "watttime", "login": WATTTIME_USERNAME, "password": WATTTIME_PASSWORD,
                "host": server.base_url, "extra": {"region": region}})
        for n in sizes:
            lead_s = 3.0 + n / 1000.0 + WAIT_REFRESHES * args.refresh_s
            pair = []
            for kind in ("carbon", "baseline"):
                try:
                    result = run_child(kind, n, server, args.refresh_s, lead_s)
                except RuntimeError as error:
                    blocked.append(str(error).splitlines()[0])
                    print(error, file=sys.stderr)
                    result = None
                pair.append(result)
                if result is not None:
                    d = derived(result, args.refresh_s)
                    print(f"{kind} N={n}: fired {result['fired']}/{n}, last after {result['last_fired_after_s']:.3f} s,"
                          f" waiting lag p99 {lag_stats(result, 'waiting')[1]:.1f} ms, firing lag p99 "
                          f"{lag_stats(result, 'firing')[1]:.1f} ms, {d}, requests {result['forecast_requests']},"
                          f" loads {result['cache_loads']}, wall {result['wall_s']:.0f} s", file=sys.stderr)
            runs.append(tuple(pair))
    planning = planning_at_scale(PLANNING_DECISIONS)
    print(f"planning: {planning}", file=sys.stderr)
    section = markdown(runs, planning, command_line(argv), started, time.perf_counter() - began, args.refresh_s,
                       blocked, (load0, os.getloadavg()))
    print(section)
    if args.append:
        append_section(section)
        print(f"appended to {RESULTS_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
