"""Where as well as when: waiting only, moving only, and both, over the bundled DE and FR 2020 series (issue 17).

The job stream of ``bench/savings.py`` (110 ten-minute jobs of 0.1 kWh a day, seed 14), each at home in one region
and free to run in the other; max delays 0, 1, 4 and 24 h. The planners see the default forecaster's forecasts
(``seasonal``), each region's made from its own measured past, and re-plan waiting jobs every ``--refresh``. Each
cell: the mode's saving against every job run at once at home, and in brackets its share of the oracle's saving, the
best (region, start) of each job on both real series.

Usage: ``.venv/bin/python bench/regions.py [--weeks N] [--refresh 15min|none] [--home DE,FR] [--write]``.
``--weeks N`` replays N weeks spread evenly over 2020; ``--write`` puts the section into bench/RESULTS.md between
its markers.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from airflow_carbon.forecasting.extend import DEFAULT_FORECASTER
from airflow_carbon.planning.policies import DEFAULT_SETTINGS
from airflow_carbon.signals.bundled import bundled_intensity
from airflow_carbon.simulate import ModeSummary, simulate_regions, summarize_regions
from airflow_carbon.simulate.regions import MODES
from airflow_carbon.units import parse_duration
from bench.run import RESULTS_PATH, command_line, write_between_markers
from bench.savings import JOB_DURATION_S, JOB_ENERGY_KWH, JOBS_PER_DAY, SEED, job_stream, sampled_days

BEGIN, END = "<!-- bench/regions.py: begin -->", "<!-- bench/regions.py: end -->"
REGIONS = ("DE", "FR")
DELAYS_H = (0, 1, 4, 24)
#: The weeks replayed by default: the run stays within a few minutes on a shared 2-core machine.
DEFAULT_WEEKS = 2


def run_home(home: str, weeks: int, refresh: timedelta | None) -> dict[int, dict[str, ModeSummary]]:
    """Every mode at every delay, with ``home`` the region each job runs in when ready."""
    jobs = job_stream(sampled_days(weeks))
    ordered = (home, *(region for region in REGIONS if region != home))
    intensities = {region: bundled_intensity(region) for region in ordered}
    rows: dict[int, dict[str, ModeSummary]] = {}
    for delay_h in DELAYS_H:
        began = time.perf_counter()
        results = simulate_regions(jobs, intensities, max_delay=timedelta(hours=delay_h), forecast=DEFAULT_FORECASTER,
                                   refresh=refresh)
        rows[delay_h] = {row.mode: row for row in summarize_regions(results)}
        print(f"home {home}, {delay_h} h: " + ", ".join(
            f"{mode} {_cell(row)}" for mode, row in rows[delay_h].items())
            + f" in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return rows


def _cell(row: ModeSummary) -> str:
    """The saving and its share of the oracle's; no share where the oracle saved nothing."""
    share = "-" if row.oracle_share is None else f"{row.oracle_share:.0%}"
    return f"{row.saving_pct:.1f} % ({share})"


def markdown(results: Mapping[str, dict[int, dict[str, ModeSummary]]], command: str, days: int,
             refresh: timedelta | None, started: datetime, total_s: float) -> str:
    lines = [
        BEGIN,
        "## 7. Where as well as when: DE and FR",
        "",
        f"Made by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {total_s:.0f} s on a shared 2-core machine. "
        f"{days} days of 2020 with {JOBS_PER_DAY} jobs a day ({JOB_DURATION_S / 60:.0f} min, {JOB_ENERGY_KWH} kWh "
        f"each, seed {SEED}), each at home in one region and free to run in the other. The planners see the "
        f"`{DEFAULT_FORECASTER}` forecaster's forecasts, each region's from its own measured past, waiting jobs "
        f"re-planned {f'every {refresh}' if refresh else 'never (planned once)'}, at the `forecast` policy's "
        f"defaults (`risk_aversion={DEFAULT_SETTINGS.risk_aversion:g}`, "
        f"`replan_margin_pct={DEFAULT_SETTINGS.replan_margin_pct:g}`). Modes: `time` waits at home; `place` runs "
        "at once where the forecaster's value for now is least; `time+place` plans over every (region, start) pair; "
        "`oracle` is the best pair on both real series. Each cell: the saving against every job run at once at "
        "home, and in brackets its share of the oracle's saving over both regions. At 0 h only moving is left.",
    ]
    for home, by_delay in results.items():
        lines += ["", f"### Home {home}", "", "| mode | " + " | ".join(f"{d} h" for d in DELAYS_H) + " |",
                  "|---|" + "---:|" * len(DELAYS_H)]
        for mode in MODES:
            lines.append(f"| `{mode}` | " + " | ".join(_cell(by_delay[d][mode]) for d in DELAYS_H) + " |")
        split = " | ".join(f"{by_delay[d]['time+place'].time_kg:.1f} / {by_delay[d]['time+place'].place_kg:.1f}"
                           for d in DELAYS_H)
        lines.append(f"| `time+place`: kg saved by time / by place | {split} |")
        moved = " | ".join(f"{by_delay[d]['time+place'].moved / by_delay[d]['time+place'].jobs:.0%}"
                           for d in DELAYS_H)
        lines.append(f"| `time+place`: jobs moved | {moved} |")
        misses = sum(row.deadline_misses for rows in by_delay.values() for row in rows.values())
        lines.append(f"\nDeadline misses over all cells: {misses}.")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(section: str, path: Path = RESULTS_PATH) -> None:
    write_between_markers(section, BEGIN, END, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=DEFAULT_WEEKS,
                        help="replay N weeks spread over 2020 (default %(default)s)")
    parser.add_argument("--refresh", default="15min", help="re-planning interval, or none (default 15min)")
    parser.add_argument("--home", default=",".join(REGIONS), help="the home regions to tabulate, each in turn")
    parser.add_argument("--write", action="store_true", help="write the section into bench/RESULTS.md")
    args = parser.parse_args(argv)
    refresh = None if args.refresh == "none" else parse_duration(args.refresh)
    homes = [home.strip().upper() for home in args.home.split(",") if home.strip()]
    unknown = [home for home in homes if home not in REGIONS]
    if unknown or not homes:
        parser.error(f"--home: choose among {', '.join(REGIONS)}")
    started, began = datetime.now(UTC), time.perf_counter()
    results = {home: run_home(home, args.weeks, refresh) for home in homes}
    command = command_line(sys.argv[1:] if argv is None else list(argv))
    section = markdown(results, command, len(sampled_days(args.weeks)), refresh, started,
                       time.perf_counter() - began)
    print(section)
    if args.write:
        write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
