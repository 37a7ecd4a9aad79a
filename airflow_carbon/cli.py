"""The ``airflow-carbon`` command: replay a job stream against a carbon series with every policy."""

from __future__ import annotations

import argparse
import csv
import json
import re
import stat
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_carbon.clock import utcnow
from airflow_carbon.errors import CarbonError
from airflow_carbon.planning import (
    DEFAULT_MAX_DELAY,
    DEFAULT_MIN_SAVING_PCT,
    DEFAULT_REPLAN_MARGIN_PCT,
    DEFAULT_RISK_AVERSION,
    DEFAULT_THRESHOLD_G_PER_KWH,
    POLICIES,
    PolicySettings,
)
from airflow_carbon.signals import SignalDataError
from airflow_carbon.simulate.files import (
    DEFAULT_JOB_DURATION,
    DEFAULT_REFRESH,
    parse_forecast_error,
    parse_policies,
    simulate_files,
)
from airflow_carbon.simulate.foresight import parse_forecast
from airflow_carbon.simulate.report import as_json
from airflow_carbon.units import parse_duration

if TYPE_CHECKING:
    from airflow_carbon.hooks.metrics import CarbonMetricsHook

#: The largest input file ``simulate`` reads; a larger one is refused before it is opened.
MAX_INPUT_BYTES = 100 * 1024 * 1024


def duration(text: str) -> timedelta:
    """An argparse type over ``parse_duration``."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def fraction(text: str) -> float:
    """``0.05`` or ``5%``: an argparse type over ``parse_forecast_error``."""
    try:
        return parse_forecast_error(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def forecast_name(text: str) -> str:
    """An argparse type over ``parse_forecast``."""
    try:
        parse_forecast(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip()


def refresh_interval(text: str) -> timedelta | None:
    """``15min`` or ``none`` (plan once)."""
    if text.strip().lower() == "none":
        return None
    value = duration(text)
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"a refresh must be positive or none, got {text!r}")
    return value


def policy_list(text: str) -> list[str]:
    """An argparse type over ``parse_policies``."""
    try:
        return parse_policies(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def missing_periods(text: str) -> int:
    """A whole number of periods, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def check_input_file(path: Path, what: str) -> None:
    """Refuse, before opening it, an input that is missing, not a regular file (a directory, ``/dev/zero``, a
    pipe) or larger than ``MAX_INPUT_BYTES``: reading one would fail half-way, never end, or fill the memory."""
    try:
        info = path.stat()
    except OSError as error:
        raise ValueError(f"{what} file {str(path)!r}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{what} file {str(path)!r}: not a regular file")
    if info.st_size > MAX_INPUT_BYTES:
        raise ValueError(f"{what} file {str(path)!r}: {info.st_size} bytes, more than the "
                         f"{MAX_INPUT_BYTES // (1024 * 1024)} MiB an input may have")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="airflow-carbon", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate", help="compare policies on a job stream", description=(
        "Replay JOBS against CARBON with each policy and print the table side by side. Baseline: every job "
        "run when it became ready. Grid-only columns count energy x intensity where each job ran; with "
        "--solar, the net columns subtract the on-site solar the jobs shared. Each input must be a regular file "
        f"of at most {MAX_INPUT_BYTES // (1024 * 1024)} MiB."))
    sim.add_argument("jobs", type=Path, help="jobs CSV: job_id, timestamp, energy (expected_power_kwh or energy_kwh), "
                                             f"optional duration_s; at most {MAX_INPUT_BYTES // (1024 * 1024)} MiB, "
                                             "as every input")
    sim.add_argument("carbon", type=Path, help="carbon intensity CSV (seed, ENTSO-E or Electricity Maps export)")
    sim.add_argument("--solar", type=Path, help="on-site solar CSV: timestamp, solar_kw_available")
    sim.add_argument("--region", help="region to read from a carbon file that holds several")
    sim.add_argument("--max-missing-periods", type=missing_periods, default=0, metavar="N",
                     help="fill each gap in the carbon CSV of at most N missing periods by linear interpolation "
                          "between the rows either side, and mark the series estimated; a longer gap is still "
                          "refused. Solar gaps are always refused (default 0: every gap is refused)")
    sim.add_argument("--policy", type=policy_list, default=list(POLICIES), help="comma-separated policies, or all")
    sim.add_argument("--max-delay", type=duration, default=DEFAULT_MAX_DELAY,
                     help="delay budget per job (default %(default)s)")
    sim.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD_G_PER_KWH,
                     help="threshold policy: green at or below g/kWh (default %(default)g)")
    sim.add_argument("--solar-threshold-kw", type=float, default=None,
                     help="threshold policy: enough solar at or above this kW (default: the job's power; "
                          "the seed used 0.05)")
    sim.add_argument("--min-saving-pct", type=float, default=DEFAULT_MIN_SAVING_PCT,
                     help="forecast policy: wait only to save this much (default %(default)s)")
    sim.add_argument("--replan-margin-pct", type=float, default=DEFAULT_REPLAN_MARGIN_PCT,
                     help="forecast policy, with --refresh: a waiting job keeps its planned start unless a new "
                          "forecast's best beats it by this share (default %(default)s)")
    sim.add_argument("--risk-aversion", type=float, default=DEFAULT_RISK_AVERSION,
                     help="forecast policy, with a forecaster: 0..1, how far toward its 90th percentile the forecast "
                          "is taken when windows are compared (default %(default)s)")
    sim.add_argument("--forecast", type=forecast_name, default="perfect",
                     help="what threshold and forecast plan on: perfect (the real series, a reference), noise:5%% "
                          "(the real series with a random-walk error, a reference), or a forecast from the measured "
                          "past only: persistence, seasonal, model (default %(default)s)")
    sim.add_argument("--refresh", type=refresh_interval, default=DEFAULT_REFRESH, metavar="DURATION",
                     help="plan a waiting job again this often with a fresh forecast, as the trigger does; none "
                          "plans once (default 15min)")
    sim.add_argument("--forecast-error", type=fraction, default=0.0,
                     help="the same as --forecast noise:ERROR: relative error at 24 h ahead (0.05 or 5%%)")
    sim.add_argument("--seed", type=int, default=0, help="random seed of the forecast error")
    sim.add_argument("--job-duration", type=duration, default=DEFAULT_JOB_DURATION,
                     help="run time of jobs without a duration_s column (default %(default)s)")
    sim.add_argument("--json", action="store_true", help="print JSON instead of the table")
    sim.add_argument("--plots", type=Path, metavar="DIR", help="write the figures as PNG into DIR")
    sim.add_argument("--records", type=Path, metavar="FILE", help="write every job's record as CSV")
    example = commands.add_parser("example-signal", help="write a synthetic intensity CSV around now, for demos",
                                  description="Write OUT: a dirty grid (400 g/kWh) until --green-in from now, then a "
                                              "clean one (120 g/kWh), so a carbon-aware task visibly waits and runs.")
    example.add_argument("out", type=Path)
    example.add_argument("--green-in", type=duration, default=timedelta(seconds=40), help="when it turns green (40s)")
    example.add_argument("--period", type=duration, default=timedelta(seconds=10), help="period of the values (10s)")
    example.add_argument("--region", default="DEMO")
    solar = commands.add_parser("example-solar", help="write a synthetic on-site solar CSV around now, for demos",
                                description="Write OUT: a site's forecast output, 0 kW until --sun-in from now and "
                                            "--kw after (timestamp,solar_kw_available); with --measured, also a "
                                            "stand-in for the site's logger file (timestamp,solar_kw) at "
                                            "--measured-kw.")
    solar.add_argument("out", type=Path)
    solar.add_argument("--sun-in", type=duration, default=timedelta(seconds=30), help="when the sun comes (30s)")
    solar.add_argument("--kw", type=float, default=1.8, help="the forecast output once sunny (1.8)")
    solar.add_argument("--period", type=duration, default=timedelta(seconds=10), help="period of the values (10s)")
    solar.add_argument("--measured", type=Path, help="also write this logger file")
    solar.add_argument("--measured-kw", type=float, default=1.5, help="the logged output once sunny (1.5)")
    metrics = commands.add_parser("metrics", help="print the metrics store's rows (needs Airflow's configuration)")
    metrics.add_argument("--dag-id")
    metrics.add_argument("--conn-id", default="carbon_metrics_default")
    metrics.add_argument("--flush", action="store_true",
                         help="write the records this host kept while the store was down; exit 1 if any remain")
    metrics.add_argument("--upgrade", action="store_true",
                         help="bring the store to the current schema (before --flush); say from which revision")
    return root


def run_example_signal(args: argparse.Namespace) -> int:
    green = write_step_csv(args.out, ["timestamp", "region", "carbon_intensity"], [args.region, 400],
                           [args.region, 120], args.green_in, args.period)
    print(f"wrote {args.out}: 400 g/kWh until {green.isoformat()}, then 120")
    return 0


def write_step_csv(path: Path, header: list[str], before: list, after: list, switch_in: timedelta,
                   period: timedelta) -> datetime:
    """A synthetic CSV from an hour ago to two days ahead: ``before`` until ``switch_in`` from now, then ``after``.

    Returns the instant it switches.
    """
    now_s = int(utcnow().timestamp())
    period_s = max(int(period.total_seconds()), 1)
    switch_s = now_s + switch_in.total_seconds()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for start_s in range(now_s - now_s % period_s - 3600, now_s + 2 * 86400, period_s):
            instant = datetime.fromtimestamp(start_s, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            writer.writerow([instant, *(after if start_s >= switch_s else before)])
    return datetime.fromtimestamp(switch_s, UTC)


def run_example_solar(args: argparse.Namespace) -> int:
    files = [(args.out, "solar_kw_available", args.kw)]
    if args.measured is not None:
        files.append((args.measured, "solar_kw", args.measured_kw))
    for path, column, kw in files:
        sun = write_step_csv(path, ["timestamp", column], [0.0], [kw], args.sun_in, args.period)
        print(f"wrote {path}: 0 kW until {sun.isoformat()}, then {kw:g} kW")
    return 0


def run_metrics(args: argparse.Namespace) -> int:
    from airflow.sdk.exceptions import AirflowNotFoundException
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_carbon.hooks.metrics import CarbonMetricsHook
    from airflow_carbon.metrics.migrations import MigrationError

    hook = CarbonMetricsHook(args.conn_id)
    try:
        hook.url()
    except AirflowNotFoundException as error:
        raise ValueError(f"--conn-id: {error}") from None
    if args.upgrade:
        status = upgrade_store(hook)
        if status or not args.flush:
            return status
    if args.flush:
        return flush_spool(hook)
    try:
        rows = hook.get_store().rows(dag_id=args.dag_id)
    except (SQLAlchemyError, MigrationError) as error:
        print(f"airflow-carbon: the metrics store at {hook.where()} did not answer: {store_error(hook, error)}",
              file=sys.stderr)
        return 1
    for row in rows:
        print(json.dumps(row, default=str, sort_keys=True))
    return 0


def store_error(hook: CarbonMetricsHook, error: BaseException) -> str:
    """The store's error on one line, its password blanked out, without SQLAlchemy's link to its docs."""
    text = re.sub(r"\(Background on this error at: [^)]*\)", "", hook.describe_error(error))
    return " ".join(text.split())


def upgrade_store(hook: CarbonMetricsHook) -> int:
    """Run the store's migrations and say from which schema revision to which; 1 if it cannot be upgraded."""
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_carbon.metrics.migrations import MigrationError
    from airflow_carbon.metrics.store import MetricsStore

    store = MetricsStore(hook.url(), upgrade=False)
    try:
        done = store.upgrade()
    except MigrationError as error:
        print(f"airflow-carbon: error: {error}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        print(f"airflow-carbon: the metrics store at {hook.where()} could not be upgraded: "
              f"{store_error(hook, error)}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if done.from_revision is None:
        print(f"created the carbon metrics store at {hook.where()} at schema revision {done.to_revision}")
    elif done.changed:
        print(f"upgraded the carbon metrics store at {hook.where()} from schema revision {done.from_revision} "
              f"to {done.to_revision}")
    else:
        print(f"the carbon metrics store at {hook.where()} is already at schema revision {done.to_revision}")
    return 0


def flush_spool(hook: CarbonMetricsHook) -> int:
    """Replay this host's spool for the hook's store: 0 once it is empty, 1 while records remain."""
    spool = hook.spool()
    try:
        written, remaining = spool.replay(hook.get_store())
    except Exception as error:  # the store cannot even be opened
        written, remaining = 0, len(spool.pending())
        print(f"airflow-carbon: the metrics store at {hook.where()} did not answer: {store_error(hook, error)}",
              file=sys.stderr)
    print(f"{written} spooled record(s) written to {hook.where()}; {remaining} remain in {spool.directory}")
    return 1 if remaining else 0


def run_simulate(args: argparse.Namespace) -> int:
    for what, path in (("jobs", args.jobs), ("carbon", args.carbon), ("solar", args.solar)):
        if path is not None:
            check_input_file(path, what)
    if args.records is not None and args.records.is_dir():
        raise ValueError(f"--records {str(args.records)!r}: a directory; give the CSV file to write")
    if args.plots is not None and args.plots.exists() and not args.plots.is_dir():
        raise ValueError(f"--plots {str(args.plots)!r}: not a directory")
    settings = PolicySettings(threshold_g_per_kwh=args.threshold, solar_threshold_kw=args.solar_threshold_kw,
                              min_saving_pct=args.min_saving_pct, risk_aversion=args.risk_aversion,
                              replan_margin_pct=args.replan_margin_pct)
    run = simulate_files(args.jobs, args.carbon, args.solar, region=args.region, policies=args.policy,
                         max_delay=args.max_delay, settings=settings, forecast_error=args.forecast_error,
                         seed=args.seed, job_duration=args.job_duration, forecast=args.forecast,
                         refresh=args.refresh, max_missing_periods=args.max_missing_periods)
    if args.json:
        inputs = run.inputs(args.jobs, args.carbon, args.solar, args.max_delay, args.forecast_error, args.forecast,
                            args.refresh)
        print(json.dumps(as_json(run.rows, inputs), indent=2))
    else:
        print(run.headline(args.carbon, args.max_delay, args.forecast_error, args.forecast, args.refresh))
        print(run.table())
    if args.records:
        write_records(args.records, run.results)
    if args.plots:
        from airflow_carbon.simulate.plots import write_plots  # matplotlib loads only when figures are asked for

        for path in write_plots(run.results, run.intensity, run.solar, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def write_records(path: Path, results: dict) -> None:
    rows = [record.to_dict() for records in results.values() for record in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return {"simulate": run_simulate, "example-signal": run_example_signal, "example-solar": run_example_solar,
                "metrics": run_metrics}[args.command](
            args)
    except (CarbonError, SignalDataError, ValueError, OSError) as error:  # a person's input: one line, no traceback
        print(f"airflow-carbon: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
