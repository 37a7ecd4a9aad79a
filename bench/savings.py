"""The honest savings table: what the ``forecast`` policy keeps of the oracle's saving when it plans, as the trigger
does, on forecasts made from the measured past only.

For DE and FR 2020 (the bundled series), 10-minute jobs of 0.1 kWh ready at random whole minutes, 110 a day, max
delays 1, 4, 8 and 24 h; what the planner sees: ``perfect`` and ``noise:5%`` (references), ``persistence``,
``seasonal`` and ``model`` (forecasts from the past, each issued at the planning instant from the periods measured by
then). Waiting jobs are planned again every ``--refresh``. Also times one fit and one forecast of each forecaster.

Usage: ``.venv/bin/python bench/savings.py [--weeks N] [--refresh 15min|none] [--write]``. ``--weeks N`` replays
jobs in N weeks spread evenly over 2020 instead of the whole year (the forecasters still see all the history before
each instant); ``--write`` puts the table into bench/RESULTS.md between its markers.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_carbon.forecasting import FORECASTERS, forecast
from airflow_carbon.forecasting.methods import RidgeModel
from airflow_carbon.planning.policies import DEFAULT_SETTINGS
from airflow_carbon.signals import Series
from airflow_carbon.signals.bundled import bundled_intensity
from airflow_carbon.simulate import Jobs, simulate, summarize
from airflow_carbon.units import parse_duration
from bench.run import RESULTS_PATH, write_between_markers

BEGIN, END = "<!-- bench/savings.py: begin -->", "<!-- bench/savings.py: end -->"
REGIONS = ("DE", "FR")
DELAYS_H = (1, 4, 8, 24)
SEEN = ("perfect", "noise:5%", *FORECASTERS)
JOBS_PER_DAY = 110
JOB_DURATION_S = 600.0
JOB_ENERGY_KWH = 0.1
YEAR_START = datetime(2020, 1, 1, tzinfo=UTC)
YEAR_DAYS = 366
SEED = 14
#: The share of the oracle's saving the realistic row should keep at 4 h and 24 h (issue 14).
GOAL_SHARE = 0.70


def job_stream(days: Sequence[int], seed: int = SEED) -> Jobs:
    """``JOBS_PER_DAY`` jobs ready at random whole minutes of each of ``days`` (days since 2020-01-01)."""
    rng = np.random.default_rng(seed)
    first_s = int(YEAR_START.timestamp())
    minutes = np.concatenate([first_s // 60 + day * 1440 + rng.integers(0, 1440, JOBS_PER_DAY) for day in days])
    ready = np.sort(60 * minutes)
    count = ready.size
    return Jobs(np.char.add("job-", np.arange(count).astype(str)), ready, np.full(count, JOB_DURATION_S),
                np.full(count, JOB_ENERGY_KWH), np.arange(2, count + 2), f"<bench/savings.py seed={seed}>")


def sampled_days(weeks: int | None) -> list[int]:
    if not weeks:
        return list(range(YEAR_DAYS))
    firsts = np.linspace(0, YEAR_DAYS - 7, weeks).astype(int)
    return sorted({int(first) + day for first in firsts for day in range(7)})


@dataclass(frozen=True)
class Cell:
    saving_pct: float
    oracle_pct: float
    misses: int
    seconds: float

    @property
    def share(self) -> float:
        return self.saving_pct / self.oracle_pct if self.oracle_pct else 0.0


def run_region(series: Series, jobs: Jobs, refresh: timedelta | None) -> dict[tuple[str, int], Cell]:
    cells: dict[tuple[str, int], Cell] = {}
    for delay_h in DELAYS_H:
        max_delay = timedelta(hours=delay_h)
        began = time.perf_counter()
        oracle = summarize("oracle", simulate(jobs, series, ["oracle"], max_delay=max_delay)["oracle"])
        cells[("oracle", delay_h)] = Cell(oracle.saving_pct, oracle.saving_pct, oracle.deadline_misses,
                                          time.perf_counter() - began)
        for seen in SEEN:
            began = time.perf_counter()
            records = simulate(jobs, series, ["forecast"], max_delay=max_delay, forecast=seen, refresh=refresh)
            row = summarize("forecast", records["forecast"])
            cells[(seen, delay_h)] = Cell(row.saving_pct, oracle.saving_pct, row.deadline_misses,
                                          time.perf_counter() - began)
            print(f"{series.region} {delay_h} h {seen}: {row.saving_pct:.2f} % of {oracle.saving_pct:.2f} % "
                  f"({cells[(seen, delay_h)].share:.0%}) in {cells[(seen, delay_h)].seconds:.1f} s", file=sys.stderr)
    return cells


def forecaster_costs(series: Series, repeats: int = 50) -> list[str]:
    """Median wall time of one forecast (24 h ahead, from a day in mid-2020) and, for ``model``, of one fit."""
    now_s = int(YEAR_START.timestamp()) + 180 * 86400
    lines = []
    day = timedelta(hours=24)
    for name in FORECASTERS:
        forecast(name, series, now_s, day, quantiles=())  # warm: the model fits here
        point = [_timed(forecast, name, series, now_s, day, quantiles=()) for _ in range(repeats)]
        bands = [_timed(forecast, name, series, now_s, day) for _ in range(3)]
        lines.append(f"| {series.region} | `{name}` | {np.median(point) * 1e3:.2f} ms | "
                     f"{np.median(bands) * 1e3:.0f} ms |")
    past = series.values[:(now_s - series.first_epoch_s) // series.period_s]
    fits = [_timed(RidgeModel().coefficients, past, series.first_epoch_s, series.period_s, 101) for _ in range(5)]
    lines.append(f"| {series.region} | `model`, one fit (weekly) | {np.median(fits) * 1e3:.0f} ms | |")
    return lines


def _timed(call, *args, **kwargs) -> float:
    began = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - began


def markdown(results: dict[str, dict[tuple[str, int], Cell]], costs: list[str], command: str, days: int,
             refresh: timedelta | None, started: datetime, total_s: float) -> str:
    lines = [
        BEGIN,
        "## 5. Savings a user really gets: forecasts from the past only (issue 14)",
        "",
        f"Made by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {total_s:.0f} s on a shared 2-core machine. "
        f"{days} days of 2020 with {JOBS_PER_DAY} jobs a day ({JOB_DURATION_S / 60:.0f} min, {JOB_ENERGY_KWH} kWh "
        f"each, seed {SEED}); waiting jobs re-planned "
        f"{f'every {refresh}' if refresh else 'never (planned once)'} with a fresh forecast issued from the periods "
        "measured by then. Each cell: the `forecast` policy's saving (at its defaults: "
        f"`risk_aversion={DEFAULT_SETTINGS.risk_aversion:g}`, "
        f"`replan_margin_pct={DEFAULT_SETTINGS.replan_margin_pct:g}`, "
        f"`min_saving_pct={DEFAULT_SETTINGS.min_saving_pct:g}`) against running at once, and in brackets its "
        "share of the oracle's saving. `perfect` and `noise:5%` are references, not what a user gets.",
    ]
    for region, cells in results.items():
        lines += ["", f"### {region}", "", "| seen by the planner | " + " | ".join(f"{d} h" for d in DELAYS_H) + " |",
                  "|---|" + "---:|" * len(DELAYS_H)]
        for seen in ("oracle", *SEEN):
            lines.append(f"| `{seen}` | " + " | ".join(
                f"{cells[(seen, d)].saving_pct:.1f} % ({cells[(seen, d)].share:.0%})" for d in DELAYS_H) + " |")
        misses = sum(cell.misses for cell in cells.values())
        lines.append(f"\nDeadline misses over all cells: {misses}.")
    best = {region: max(FORECASTERS, key=lambda name, cells=cells: sum(cells[(name, d)].share for d in (4, 24)))
            for region, cells in results.items()}
    lines += ["", "Best forecaster from the past at 4 h and 24 h, against the goal of "
              f"{GOAL_SHARE:.0%} of the oracle:"]
    for region, name in best.items():
        for delay_h in (4, 24):
            share = results[region][(name, delay_h)].share
            lines.append(f"- {region} {delay_h} h: `{name}` keeps {share:.0%}: "
                         f"{'met' if share >= GOAL_SHARE else 'NOT met'}.")
    lines += ["", "Cost of each forecaster (median wall time; intervals re-issue the forecast over 14 past days):", "",
              "| region | forecaster | one forecast, 24 h | with p10/p90 intervals |", "|---|---|---:|---:|", *costs,
              END]
    return "\n".join(lines) + "\n"


def write_section(section: str, path: Path = RESULTS_PATH) -> None:
    write_between_markers(section, BEGIN, END, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, help="replay N weeks spread over 2020 instead of the whole year")
    parser.add_argument("--refresh", default="15min", help="re-planning interval, or none (default 15min)")
    parser.add_argument("--regions", default=",".join(REGIONS))
    parser.add_argument("--write", action="store_true", help="write the section into bench/RESULTS.md")
    args = parser.parse_args(argv)
    refresh = None if args.refresh == "none" else parse_duration(args.refresh)
    started, began = datetime.now(UTC), time.perf_counter()
    days = sampled_days(args.weeks)
    jobs = job_stream(days)
    results, costs = {}, []
    for region in args.regions.split(","):
        series = bundled_intensity(region)
        results[region] = run_region(series, jobs, refresh)
        costs += forecaster_costs(series)
    command = "python bench/savings.py " + " ".join(sys.argv[1:] if argv is None else argv)
    section = markdown(results, costs, command.strip(), len(days), refresh, started, time.perf_counter() - began)
    print(section)
    if args.write:
        write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
