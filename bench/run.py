"""Benchmarks of the planner and the simulator, written to bench/RESULTS.md with the command that made them.

Three sections, each also a check of correctness, not only of speed:

* ``planning``: one ``forecast`` decision over a 72 h, 5-minute forecast, against a
  cats-style window search (``bench/baseline.py``); both must find the same emissions.
* ``simulate``: 100,000 jobs over the German year with the ``forecast`` policy, against
  the same run with ``immediate`` only.
* ``savings``: the saving of every policy on the German and French years, for several
  delay budgets and forecast errors; no job may miss its deadline or beat the oracle.

Usage: ``.venv/bin/python bench/run.py [--quick] [--only planning|simulate|savings] [--output PATH]``.
A full run (no ``--quick``, no ``--only``) writes bench/RESULTS.md; other runs print only,
unless ``--output`` says where to write. The exit status is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_carbon.planning import Decision, Job, PolicySettings, decide
from airflow_carbon.signals import Series
from airflow_carbon.signals.bundled import bundled_intensity
from airflow_carbon.signals.series import from_epoch_s
from airflow_carbon.simulate.engine import PolicySummary, simulate, summarize
from bench.baseline import PointEstimate, cats_style_best, point_estimates
from bench.jobs import random_forecast, random_jobs

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"
#: Where the sections of bench/triggerer.py and bench/savings.py begin; a full run keeps them.
LATER_SECTIONS = "\n## 4. "
SECTIONS = ("planning", "simulate", "savings")
#: Emissions of two planners agree when they differ by less than this (grams).
AGREEMENT_G = 1e-6
#: A policy beats the oracle on a job when it emits less by more than this share: a bug.
ORACLE_TOLERANCE = 1e-9

PLANNING_SEED = 1
SIMULATE_SEED = 2
SAVINGS_SEEDS = {"DE": 3, "FR": 4}
NOISE_SEED = 5

FORECAST_HOURS = 72
FORECAST_PERIOD_S = 300
PLANNING_JOB = Job(timedelta(hours=1), 1.0)
SIMULATE_DELAY = timedelta(hours=8)
SAVINGS_DELAYS = (timedelta(hours=1), timedelta(hours=4), timedelta(hours=8), timedelta(hours=24))
SAVINGS_ERRORS = (0.0, 0.05, 0.10)
THRESHOLD_PERCENTILE = 30
#: Longer jobs, timed on fewer forecasts, to show how each planner's cost grows with the job.
SCALING_HOURS = (6, 24)
#: Untimed decisions before timing, so imports and caches are warm.
WARM_UP = 10


@dataclass(frozen=True)
class Sizes:
    """How much work each section does: the full run, or a smoke run that finishes in seconds."""

    decisions: int
    scaling_decisions: int
    simulate_jobs: int
    savings_jobs: int


FULL = Sizes(decisions=1_000, scaling_decisions=200, simulate_jobs=100_000, savings_jobs=10_000)
QUICK = Sizes(decisions=100, scaling_decisions=20, simulate_jobs=5_000, savings_jobs=500)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _ms(seconds: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds), q)) * 1000.0


# -- planning ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Per-decision latency of our planner and the cats-style baseline for one job length, on the same forecasts."""

    job: Job
    ours_s: list[float]
    baseline_s: list[float]
    same_start: int
    max_diff_g: float

    @property
    def decisions(self) -> int:
        return len(self.ours_s)

    @property
    def hours(self) -> str:
        return _hours(self.job.duration)

    def ratio(self, q: float) -> float:
        return _ms(self.baseline_s, q) / _ms(self.ours_s, q)


@dataclass
class PlanningResult:
    """The headline comparison (a 1 h job) and how the gap grows with the job's length."""

    headline: Comparison
    scaling: list[Comparison]
    peak_rss_mib: float

    @property
    def failures(self) -> list[str]:
        return [f"planning: for a {c.hours} job our planner and the cats-style baseline disagree on the best "
                f"emissions by up to {c.max_diff_g:.3g} g (tolerance {AGREEMENT_G:g} g)"
                for c in (self.headline, *self.scaling) if not c.max_diff_g <= AGREEMENT_G]

    def markdown(self) -> str:
        head = self.headline
        ours_median = _ms(head.ours_s, 50)
        points = FORECAST_HOURS * 3600 // FORECAST_PERIOD_S
        scaling = [f"| {c.hours} | {c.decisions:,} | {_ms(c.ours_s, 50):.3f} ms | {_ms(c.baseline_s, 50):.2f} ms | "
                   f"{c.ratio(50):.0f}x | {c.max_diff_g:.2g} g |" for c in (head, *self.scaling)]
        return "\n".join([
            "## 1. One planning decision",
            "",
            f"A {FORECAST_HOURS} h forecast at {FORECAST_PERIOD_S // 60}-minute resolution ({points} points), a "
            f"{head.hours} job of 1 kWh, the deadline {FORECAST_HOURS} h - {head.hours} after now, the `forecast` "
            f"policy through `decide(...)`. {head.decisions:,} random forecasts (seed {PLANNING_SEED}: a daily cycle "
            "with random phase, drift and noise), each planned once by each planner; `now` is the first data point.",
            "",
            "| planner | median | p95 |",
            "|---|---:|---:|",
            f"| ours: `decide(\"forecast\", ...)` | {ours_median:.3f} ms | {_ms(head.ours_s, 95):.3f} ms |",
            f"| cats-style baseline (`bench/baseline.py`) | {_ms(head.baseline_s, 50):.3f} ms | "
            f"{_ms(head.baseline_s, 95):.3f} ms |",
            "",
            f"- Baseline / ours, median: **{head.ratio(50):.0f}x** (p95: {head.ratio(95):.0f}x). Goal: median < 1 ms, "
            f"{'met' if ours_median < 1.0 else 'NOT met'}.",
            "- Our time includes all of `decide` (validation, datetimes, the `Decision` object); the baseline's "
            "excludes turning the series into point objects, which cats does when it parses a forecast, so the ratio "
            "is conservative.",
            f"- Agreement: the largest difference in the best emissions is {head.max_diff_g:.2g} g (check: "
            f"<= {AGREEMENT_G:g} g); the same start in {head.same_start:,} of {head.decisions:,} decisions. The "
            "baseline tries starts only at data points; with `now` on a data point and a job of a whole number of "
            "periods, our candidate starts are data points too, so both optima coincide.",
            "",
            "The baseline's cost grows with the job's length (every window is summed point by point), ours hardly "
            "does; the same forecasts, deadline 72 h minus the job:",
            "",
            "| job | decisions | ours, median | baseline, median | baseline / ours | largest difference |",
            "|---|---:|---:|---:|---:|---:|",
            *scaling,
            "",
            f"Peak RSS after this section: {self.peak_rss_mib:.0f} MiB.",
        ])


def bench_planning(decisions: int, scaling_decisions: int, seed: int = PLANNING_SEED) -> PlanningResult:
    """Time ``decide`` and the baseline on the same seeded forecasts: the 1 h headline, then longer jobs."""
    rng = np.random.default_rng(seed)
    points = FORECAST_HOURS * 3600 // FORECAST_PERIOD_S
    forecasts = [
        random_forecast(rng, points=points, period_s=FORECAST_PERIOD_S,
                        start_epoch_s=1_704_067_200 + FORECAST_PERIOD_S * int(rng.integers(0, 105_120)))
        for _ in range(max(decisions, scaling_decisions))
    ]
    headline = compare_planners(forecasts[:decisions], PLANNING_JOB)
    scaling = [compare_planners(forecasts[:scaling_decisions], Job(timedelta(hours=hours), 1.0))
               for hours in SCALING_HOURS]
    return PlanningResult(headline, scaling, peak_rss_mib())


def compare_planners(forecasts: Sequence[Series], job: Job) -> Comparison:
    """Plan ``job`` on each forecast with both planners, timing each call; ``now`` is the forecast's first point."""
    ours_s, baseline_s, ours_best, baseline_best = [], [], [], []
    for forecast in forecasts[:WARM_UP]:
        _plan_ours(forecast, job)
        _plan_baseline(forecast, point_estimates(forecast), job)
    for forecast in forecasts:
        began = time.perf_counter()
        decision = _plan_ours(forecast, job)
        ours_s.append(time.perf_counter() - began)
        ours_best.append((decision.start.timestamp(), decision.expected_emissions_at_start_g))
    for forecast in forecasts:
        points = point_estimates(forecast)
        began = time.perf_counter()
        best = _plan_baseline(forecast, points, job)
        baseline_s.append(time.perf_counter() - began)
        baseline_best.append(best)
    ours, theirs = np.array(ours_best, dtype=float), np.array(baseline_best, dtype=float)
    return Comparison(job, ours_s, baseline_s, same_start=int(np.sum(ours[:, 0] == theirs[:, 0])),
                      max_diff_g=float(np.max(np.abs(ours[:, 1] - theirs[:, 1]))))


def _deadline_s(forecast: Series, job: Job) -> float:
    return forecast.end_epoch_s - job.duration_s


def _plan_ours(forecast: Series, job: Job) -> Decision:
    return decide("forecast", now=from_epoch_s(forecast.first_epoch_s),
                  deadline=from_epoch_s(_deadline_s(forecast, job)), job=job, intensity=forecast)


def _plan_baseline(forecast: Series, points: list[PointEstimate], job: Job) -> tuple[float, float]:
    return cats_style_best(points, forecast.period_s, now_s=forecast.first_epoch_s,
                           deadline_s=_deadline_s(forecast, job), duration_s=job.duration_s, energy_kwh=job.energy_kwh)


# -- simulate ---------------------------------------------------------------------------------------------------


@dataclass
class SimulateResult:
    """Wall time of a year's simulation with ``forecast`` (which also runs the immediate pass) and ``immediate``."""

    jobs: int
    forecast_s: float
    immediate_s: float
    forecast: PolicySummary
    peak_rss_mib: float

    @property
    def failures(self) -> list[str]:
        if not self.forecast.deadline_misses:
            return []
        return [f"simulate: {self.forecast.deadline_misses} deadline misses with the forecast policy"]

    def markdown(self) -> str:
        forecast_only_s = max(self.forecast_s - self.immediate_s, 1e-9)
        return "\n".join([
            f"## 2. Simulating {self.jobs:,} jobs over the German year",
            "",
            "`simulate(jobs, de, [\"forecast\"], max_delay=timedelta(hours="
            f"{SIMULATE_DELAY.total_seconds() / 3600:g}))` on `bundled_intensity(\"DE\")`; jobs from `random_jobs` "
            f"(seed {SIMULATE_SEED}): ready at whole minutes uniformly over the series less its last 2 days, 1 h, "
            "1 kWh each. `simulate` always runs the immediate pass first, as every policy's baseline, so the "
            "`forecast` call does both.",
            "",
            "| run | wall time | jobs/s |",
            "|---|---:|---:|",
            f"| `[\"forecast\"]` (immediate pass + forecast pass) | {self.forecast_s:.1f} s | "
            f"{self.jobs / self.forecast_s:,.0f} |",
            f"| `[\"immediate\"]` only (baseline) | {self.immediate_s:.1f} s | {self.jobs / self.immediate_s:,.0f} |",
            f"| forecast pass alone (difference) | {forecast_only_s:.1f} s | "
            f"{self.jobs / forecast_only_s:,.0f} |",
            "",
            f"- Forecast run / immediate-only run: **{self.forecast_s / self.immediate_s:.1f}x**. Goal: < 30 s, "
            f"{'met' if self.forecast_s < 30 else 'NOT met'}.",
            f"- Result of the run: saving {self.forecast.saving_pct:.1f} % of "
            f"{self.forecast.baseline_kg:,.0f} kg, {self.forecast.delayed:,} jobs delayed, "
            f"{self.forecast.deadline_misses} deadline misses.",
            f"- Peak RSS after this section: {self.peak_rss_mib:.0f} MiB.",
        ])


def bench_simulate(jobs_count: int, seed: int = SIMULATE_SEED) -> SimulateResult:
    """Time the forecast simulation and the immediate-only one on the same jobs."""
    de = bundled_intensity("DE")
    jobs = random_jobs(de, jobs_count, seed=seed)
    began = time.perf_counter()
    immediate = simulate(jobs, de, ["immediate"], max_delay=SIMULATE_DELAY)
    immediate_s = time.perf_counter() - began
    del immediate
    began = time.perf_counter()
    records = simulate(jobs, de, ["forecast"], max_delay=SIMULATE_DELAY)
    forecast_s = time.perf_counter() - began
    return SimulateResult(jobs_count, forecast_s, immediate_s, summarize("forecast", records["forecast"]),
                          peak_rss_mib())


# -- savings ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavingsCell:
    """Every policy's summary for one delay budget and one forecast error."""

    max_delay: timedelta
    error: float
    summaries: dict[str, PolicySummary]

    def of_oracle_pct(self, policy: str) -> float:
        oracle = self.summaries["oracle"]
        saved = self.summaries[policy].baseline_kg - self.summaries[policy].scheduled_kg
        best = oracle.baseline_kg - oracle.scheduled_kg
        return 100.0 * saved / best if best else 0.0


@dataclass
class RegionSavings:
    """The savings matrix of one region, and every job on which a policy emitted less than the oracle."""

    region: str
    series: Series
    threshold_g_per_kwh: float
    jobs: int
    seed: int
    cells: list[SavingsCell] = field(default_factory=list)
    oracle_beaten: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failures(self) -> list[str]:
        failures = [f"savings {self.region}: {cell.summaries[p].deadline_misses} deadline misses with {p} at "
                    f"max_delay {_hours(cell.max_delay)}, error {cell.error:.0%}"
                    for cell in self.cells for p in cell.summaries if cell.summaries[p].deadline_misses]
        failures += [f"savings {self.region}: with a perfect forecast, forecast emitted {forecast!r} kg but the oracle "
                     f"{oracle!r} kg at max_delay {_hours(cell.max_delay)}"
                     for cell in self.cells if cell.error == 0
                     for forecast, oracle in [(cell.summaries["forecast"].scheduled_kg,
                                               cell.summaries["oracle"].scheduled_kg)]
                     if not np.isclose(forecast, oracle, rtol=1e-12)]
        return failures + self.oracle_beaten

    def markdown(self) -> str:
        first, end = from_epoch_s(self.series.first_epoch_s), from_epoch_s(self.series.end_epoch_s)
        head = (
            f"### {self.region}\n\n"
            f"`bundled_intensity(\"{self.region}\")`: {len(self.series):,} periods of "
            f"{self.series.period_s // 60} min, {first:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, mean "
            f"{self.series.values.mean():.0f} g/kWh. Threshold: the {THRESHOLD_PERCENTILE}th percentile of the "
            f"series, **{self.threshold_g_per_kwh:.1f} g/kWh**. {self.jobs:,} jobs (seed {self.seed}). "
            f"Wall time {self.wall_s:.0f} s.\n\n"
            "| max delay | error | threshold saving | threshold / oracle | threshold delayed | forecast saving | "
            "forecast / oracle | forecast delayed | oracle saving | oracle delayed | misses |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )
        rows = []
        for cell in self.cells:
            s = cell.summaries
            misses = sum(summary.deadline_misses for summary in s.values())
            rows.append(
                f"| {_hours(cell.max_delay)} | {cell.error:.0%} | "
                + " | ".join(f"{s[p].saving_pct:.1f} % | {cell.of_oracle_pct(p):.0f} % | {_share(s[p]):.0f} %"
                             for p in ("threshold", "forecast"))
                + f" | {s['oracle'].saving_pct:.1f} % | {_share(s['oracle']):.0f} % | {misses} |")
        return "\n".join([head, *rows])


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g} h"


def _share(summary: PolicySummary) -> float:
    return 100.0 * summary.delayed / summary.jobs if summary.jobs else 0.0


def bench_savings(jobs_count: int, regions: Sequence[str] = ("DE", "FR"),
                  max_delays: Sequence[timedelta] = SAVINGS_DELAYS,
                  errors: Sequence[float] = SAVINGS_ERRORS) -> list[RegionSavings]:
    """Simulate every policy per region, delay budget and error; the oracle, never blurred, runs once per budget."""
    return [_region_savings(region, jobs_count, max_delays, errors) for region in regions]


def _region_savings(region: str, jobs_count: int, max_delays: Sequence[timedelta],
                    errors: Sequence[float]) -> RegionSavings:
    began = time.perf_counter()
    series = bundled_intensity(region)
    seed = SAVINGS_SEEDS.get(region, 0)
    result = RegionSavings(region, series, float(np.percentile(series.values, THRESHOLD_PERCENTILE)), jobs_count, seed)
    settings = PolicySettings(threshold_g_per_kwh=result.threshold_g_per_kwh)
    jobs = random_jobs(series, jobs_count, seed=seed)
    for max_delay in max_delays:
        oracle: dict[str, list] = {}
        for error in errors:
            policies = ["immediate", "threshold", "forecast", *([] if oracle else ["oracle"])]
            records = simulate(jobs, series, policies, max_delay=max_delay, settings=settings,
                               forecast_error=error, seed=NOISE_SEED)
            oracle = oracle or {"oracle": records["oracle"]}
            records |= oracle
            result.cells.append(SavingsCell(max_delay, error, {p: summarize(p, records[p]) for p in records}))
            result.oracle_beaten += _oracle_beaten(records, region, jobs_count, seed, max_delay, error, settings)
    result.wall_s = time.perf_counter() - began
    return result


def _oracle_beaten(records: dict[str, list], region: str, jobs_count: int, seed: int, max_delay: timedelta,
                   error: float, settings: PolicySettings) -> list[str]:
    """One message with a reproducer per policy that emitted less than the oracle on some job."""
    oracle_g = np.array([r.emissions_g for r in records["oracle"]], dtype=float)
    messages = []
    for policy in ("immediate", "threshold", "forecast"):
        policy_g = np.array([r.emissions_g for r in records[policy]], dtype=float)
        beaten = np.flatnonzero(policy_g < oracle_g * (1 - ORACLE_TOLERANCE) - ORACLE_TOLERANCE)
        if not beaten.size:
            continue
        index = int(beaten[0])
        messages.append(
            f"savings {region}: {policy} emitted less than the oracle on {beaten.size} jobs at max_delay "
            f"{_hours(max_delay)}, error {error:.0%}; first: job {records[policy][index].job_id} "
            f"({policy_g[index]!r} g < {oracle_g[index]!r} g). Reproduce from the repository root:\n\n"
            "```python\n"
            "import sys; sys.path.insert(0, '.')\n"
            "from datetime import timedelta\n"
            "from airflow_carbon.planning import PolicySettings\n"
            "from airflow_carbon.signals.bundled import bundled_intensity\n"
            "from airflow_carbon.simulate.engine import simulate\n"
            "from bench.jobs import random_jobs\n"
            f"series = bundled_intensity({region!r})\n"
            f"jobs = random_jobs(series, {jobs_count}, seed={seed})\n"
            f"records = simulate(jobs, series, [{policy!r}, 'oracle'], max_delay=timedelta(seconds="
            f"{max_delay.total_seconds():g}), settings=PolicySettings(threshold_g_per_kwh="
            f"{settings.threshold_g_per_kwh!r}), forecast_error={error!r}, seed={NOISE_SEED})\n"
            f"print(records[{policy!r}][{index}], records['oracle'][{index}], sep='\\n')\n"
            "```")
    return messages


def savings_markdown(regions: list[RegionSavings], peak_rss: float) -> str:
    """The section: how to read the tables, then one table per region."""
    beaten = any(region.oracle_beaten for region in regions)
    return "\n\n".join([
        "## 3. Savings matrix",
        "Each row is one `simulate(...)` of the region's job stream (1 h, 1 kWh jobs, same generator as above) "
        "with that `max_delay` and `forecast_error`; the error blurs what `threshold` and `forecast` see (a random "
        "walk, 1 sigma = the error at 24 h ahead), never the oracle, so the oracle's figures are the same for every "
        "error of a budget (it ran once per budget). *Saving* is the grid-only `saving_pct` against running every "
        "job when ready (`immediate`); */ oracle* is the policy's saving as a share of the oracle's; *delayed* "
        "is the share of jobs that did not start when ready; *misses* counts deadline misses over all policies "
        "(run.py fails if any). "
        + ("**Some jobs emitted less under a policy than under the oracle: see the failed checks.**" if beaten else
           "Checked job by job: no job emitted less under any policy than under the oracle."),
        *(region.markdown() for region in regions),
        f"Peak RSS after this section: {peak_rss:.0f} MiB.",
    ])


# -- report -----------------------------------------------------------------------------------------------------


def write_between_markers(section: str, begin: str, end: str, path: Path = RESULTS_PATH) -> None:
    """Put ``section`` (which opens with ``begin`` and closes with ``end``) in place of the one between those markers
    in RESULTS.md, else at its end; every other section is left as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line(argv: Sequence[str]) -> str:
    """The command as typed from the repository root, with the interpreter path made relative when it can be."""
    relative = os.path.relpath(sys.executable)
    python = sys.executable if relative.startswith("..") else relative
    return shlex.join([python, sys.argv[0], *argv])


def machine_facts(load_before: tuple[float, float, float]) -> list[str]:
    return [
        f"- `nproc`: {len(os.sched_getaffinity(0))}; CPU: {cpu_model()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, {platform.platform()}",
        f"- Load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in load_before)}; at end: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (the machine was shared, so timings are upper bounds)",
    ]


def render(command: str, started: datetime, facts: list[str], sections: list[str], failures: list[str],
           total_s: float, quick: bool) -> str:
    status = "all checks passed" if not failures else f"**{len(failures)} CHECKS FAILED**"
    lines = [
        "# Benchmarks",
        "",
        f"Made by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {total_s:.0f} s{' (quick run)' if quick else ''}; "
        f"{status}.",
        "",
        *facts,
        "",
        "\n\n".join(sections),
    ]
    if failures:
        lines += ["", "## Failed checks", "", *(f"- {failure}" for failure in failures)]
    return "\n".join(lines) + "\n"


def with_later_sections(report: str, path: Path) -> str:
    """The report, then the sections other benchmarks wrote into the same file (4 on: the triggerer, savings)."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    later = old.find(LATER_SECTIONS)
    return report if later < 0 else report.rstrip("\n") + "\n" + old[later:]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (seconds, not minutes)")
    parser.add_argument("--only", choices=SECTIONS, help="run one section")
    parser.add_argument("--output", type=Path,
                        help="where to write the Markdown (default: bench/RESULTS.md for a full run, else nowhere)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    output = args.output or (RESULTS_PATH if not args.quick and not args.only else None)
    started, began, load_before = datetime.now(UTC), time.perf_counter(), os.getloadavg()
    sections: list[str] = []
    failures: list[str] = []
    if args.only in (None, "planning"):
        planning = bench_planning(sizes.decisions, sizes.scaling_decisions)
        sections.append(planning.markdown())
        failures += planning.failures
        print(f"planning done in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    if args.only in (None, "simulate"):
        simulated = bench_simulate(sizes.simulate_jobs)
        sections.append(simulated.markdown())
        failures += simulated.failures
        print(f"simulate done in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    if args.only in (None, "savings"):
        regions = bench_savings(sizes.savings_jobs)
        sections.append(savings_markdown(regions, peak_rss_mib()))
        failures += [failure for region in regions for failure in region.failures]
    report = render(command_line(argv), started, machine_facts(load_before), sections, failures,
                    time.perf_counter() - began, args.quick)
    print(report)
    if output is not None:
        output.write_text(with_later_sections(report, output), encoding="utf-8")
        print(f"written to {output}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} checks FAILED:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
