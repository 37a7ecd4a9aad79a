"""How the ``forecast`` policy's defaults were chosen: ``risk_aversion``, ``replan_margin_pct`` and
``min_saving_pct`` on the default forecaster, with waiting jobs re-planned every 15 minutes as the trigger does.

Same jobs and weeks as ``bench/savings.py --weeks 2`` (110 ten-minute jobs a day, seed 14). Each cell: the saving
against running at once and, in brackets, its share of the oracle's. Prints a markdown table.

Usage: ``.venv/bin/python bench/policy_defaults.py [--weeks 2] [--forecaster seasonal]``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from savings import job_stream, sampled_days

from airflow_carbon.forecasting.extend import DEFAULT_FORECASTER
from airflow_carbon.planning import PolicySettings
from airflow_carbon.signals.bundled import bundled_intensity
from airflow_carbon.simulate import simulate, summarize

#: (risk_aversion, replan_margin_pct, min_saving_pct): the previous defaults first, the chosen ones last.
SETTINGS = ((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, 3.0), (0.25, 0.0, 0.0), (0.5, 0.0, 0.0), (1.0, 0.0, 0.0),
            (0.0, 10.0, 0.0), (0.25, 10.0, 0.0), (0.5, 5.0, 0.0), (0.5, 20.0, 0.0), (0.5, 10.0, 1.0),
            (0.5, 10.0, 0.0))
CELLS = (("DE", 4), ("DE", 24), ("FR", 4), ("FR", 24))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=2)
    parser.add_argument("--forecaster", default=DEFAULT_FORECASTER)
    args = parser.parse_args()
    jobs = job_stream(sampled_days(args.weeks))
    oracle, shares = {}, {}
    for region, delay_h in CELLS:
        series, max_delay = bundled_intensity(region), timedelta(hours=delay_h)
        oracle[(region, delay_h)] = summarize("oracle", simulate(jobs, series, ["oracle"],
                                                                 max_delay=max_delay)["oracle"]).saving_pct
        for risk, margin, least in SETTINGS:
            row = summarize("forecast", simulate(
                jobs, series, ["forecast"], max_delay=max_delay, forecast=args.forecaster,
                refresh=timedelta(minutes=15),
                settings=PolicySettings(risk_aversion=risk, replan_margin_pct=margin,
                                        min_saving_pct=least))["forecast"])
            shares[(region, delay_h, risk, margin, least)] = (row.saving_pct,
                                                              row.saving_pct / oracle[(region, delay_h)])
            print(region, delay_h, risk, margin, least, f"{row.saving_pct:.2f} %", file=sys.stderr)
    print("| risk_aversion | replan_margin_pct | min_saving_pct | "
          f"{' | '.join(f'{r} {d} h' for r, d in CELLS)} | mean share |")
    print("|---:|---:|---:|" + "---:|" * (len(CELLS) + 1))
    for risk, margin, least in SETTINGS:
        cells = [shares[(region, delay_h, risk, margin, least)] for region, delay_h in CELLS]
        mean = sum(share for _, share in cells) / len(cells)
        print(f"| {risk:g} | {margin:g} | {least:g} | "
              + " | ".join(f"{pct:.1f} % ({share:.0%})" for pct, share in cells) + f" | {mean:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
