"""The ``airflow-carbon`` command: replay a job stream against a carbon series with every policy, read the metrics
store, and put people in control (release a waiting task, switch eco-mode off, budgets, the audit log)."""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import math
import re
import stat
import sys
from collections.abc import Callable, Sequence
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
    parse_regions,
    simulate_files,
    simulate_region_files,
)
from airflow_carbon.simulate.foresight import parse_forecast
from airflow_carbon.simulate.report import as_json
from airflow_carbon.units import parse_duration, parse_instant

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from airflow_carbon.hooks.metrics import CarbonMetricsHook

#: The largest input file ``simulate`` reads; a larger one is refused before it is opened.
MAX_INPUT_BYTES = 100 * 1024 * 1024
#: How ``metrics`` prints rows; the first is the default.
METRICS_FORMATS = ("json", "csv", "table")
#: The columns of ``metrics --format table``; ``json`` and ``csv`` print every column of the record.
TABLE_COLUMNS = ("dag_id", "task_id", "run_id", "map_index", "try_number", "state", "reason", "region", "ready_at",
                 "started_at", "delay_s", "emissions_g", "saved_g")


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


def region_list(text: str) -> list[str]:
    """An argparse type over ``parse_regions``."""
    try:
        return parse_regions(text)
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


def aware_instant(text: str) -> datetime:
    """An ISO 8601 instant with its zone (``2026-03-01T18:00Z``): a person's naive time is refused, not guessed."""
    try:
        return parse_instant(text.strip().replace("z", "Z"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def map_index(text: str) -> int:
    """Airflow's map index: -1 (not mapped) or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < -1:
        raise argparse.ArgumentTypeError(f"must be -1 (not mapped) or more, got {value}")
    return value


def budget_grams(text: str) -> float:
    """Grams of CO2e: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of grams: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of grams above 0, got {text!r}")
    return value


def filter_value(text: str) -> str:
    """A DAG, task or run id to match exactly: an empty one would match nothing and say nothing."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def audit_limit(text: str) -> int:
    value = missing_periods(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
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
        "--solar, the net columns subtract the on-site solar the jobs shared. With --regions, compare instead "
        "waiting only (time), moving only (place), both (time+place) and hindsight (oracle) over several regions, "
        "against every job run when ready in its home region. Each input must be a regular file "
        f"of at most {MAX_INPUT_BYTES // (1024 * 1024)} MiB."))
    sim.add_argument("jobs", type=Path, help="jobs CSV: job_id, timestamp, energy (expected_power_kwh or energy_kwh), "
                                             "optional duration_s, optional region (with --regions, pins "
                                             f"a job to it); at most {MAX_INPUT_BYTES // (1024 * 1024)} MiB, "
                                             "as every input")
    sim.add_argument("carbon", type=Path, nargs="+",
                     help="carbon intensity CSV (seed, ENTSO-E or Electricity Maps export); with --regions, one per "
                          "region in its order, or one file with a region column")
    sim.add_argument("--regions", type=region_list, metavar="DE,FR",
                     help="simulate over these regions, the first the home of every job its jobs file does not pin "
                          "to one (a region column); prints one row per mode: time, place, time+place, oracle")
    sim.add_argument("--solar", type=Path, help="on-site solar CSV: timestamp, solar_kw_available")
    sim.add_argument("--region", help="region to read from a carbon file that holds several")
    sim.add_argument("--max-missing-periods", type=missing_periods, default=0, metavar="N",
                     help="fill each gap in the carbon CSV of at most N missing periods by linear interpolation "
                          "between the rows either side, and mark the series estimated; a longer gap is still "
                          "refused. Solar gaps are always refused (default 0: every gap is refused)")
    sim.add_argument("--policy", type=policy_list, default=None,
                     help="comma-separated policies, or all (the default); not with --regions")
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
    metrics = commands.add_parser("metrics", help="print the metrics store's rows (needs Airflow's configuration)",
                                  description="Print the store's task tries, in key order, on stdout; every log "
                                              "line goes to stderr, so the output can be piped (| jq).")
    metrics.add_argument("--format", choices=METRICS_FORMATS, default=None,
                         help="json: one JSON object a line (the default); csv: a header, then one row a try, every "
                              "column of the record; table: the main columns, aligned, times in UTC")
    metrics.add_argument("--dag-id", type=filter_value, help="only this DAG's tries")
    metrics.add_argument("--task-id", type=filter_value, help="only this task's tries")
    metrics.add_argument("--run-id", type=filter_value, help="only this run's tries")
    metrics.add_argument("--conn-id", default="carbon_metrics_default")
    metrics.add_argument("--flush", action="store_true",
                         help="write the records this host kept while the store was down; exit 1 if any remain")
    metrics.add_argument("--upgrade", action="store_true",
                         help="bring the store to the current schema (before --flush); say from which revision")
    add_control_commands(commands)
    return root


def add_control_commands(commands: argparse._SubParsersAction) -> None:
    """``release``, ``eco``, ``budget`` and ``audit``: what the Carbon view's Control page does, from a shell."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--conn-id", default="carbon_metrics_default", help="the metrics store's connection "
                                                                            "(default %(default)s)")
    reason = argparse.ArgumentParser(add_help=False)
    reason.add_argument("--reason", help="why, kept in the audit log")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print one JSON object a line")
    release = commands.add_parser("release", parents=[store, reason], help="run a waiting task instance now",
                                  description="Its trigger fires with reason released at its next poll; the release, "
                                              "who (cli:<login name>) and why go into its record and the audit log.")
    release.add_argument("dag_id")
    release.add_argument("run_id")
    release.add_argument("task_id")
    release.add_argument("--map-index", type=map_index, default=-1, help="of a mapped task (default -1: not mapped)")
    eco = commands.add_parser("eco", help="switch carbon-awareness off or on again, or show where it is off")
    eco_commands = eco.add_subparsers(dest="eco_command", required=True)
    off = eco_commands.add_parser("off", parents=[store, reason], help="switch carbon-awareness off",
                                  description="While it is off, carbon-aware tasks run at once (reason eco_off) and "
                                              "those waiting are released at the next poll. Setting it again "
                                              "replaces the scope's switch.")
    off.add_argument("--dag-id", help="only this DAG (default: every DAG)")
    off.add_argument("--until", type=aware_instant, help="when it ends, ISO 8601 with a zone: 2026-03-01T18:00Z "
                                                         "(default: when switched on again)")
    off.add_argument("--window", action="append", default=[], dest="windows", metavar="TEXT",
                     help='only in this recurring UTC window, repeatable: "weekdays 08:00-10:00", '
                          '"daily 22:00-02:00", "mon,wed 09:00-11:00", "0 8 * * 1-5 for 2h"')
    on = eco_commands.add_parser("on", parents=[store, reason], help="switch carbon-awareness on again")
    on.add_argument("--dag-id", help="only this DAG's switch (default: the switch for every DAG)")
    eco_commands.add_parser("status", parents=[store, as_json], help="where carbon-awareness is off, now or later")
    budget = commands.add_parser("budget", help="carbon budgets per DAG: set, clear, status")
    budget_commands = budget.add_subparsers(dest="budget_command", required=True)
    budget_set = budget_commands.add_parser("set", parents=[store, reason], help="set a DAG's carbon budget",
                                            description="Never a cap: no task misses its deadline for a budget.")
    budget_set.add_argument("dag_id")
    budget_set.add_argument("grams", type=budget_grams, help="grams of CO2e per period")
    budget_set.add_argument("--period", choices=("day", "week", "month"), required=True,
                            help="UTC day, week (from Monday) or month")
    budget_set.add_argument("--strict", action="store_true", help="once over the budget, plan with the stricter policy")
    budget_clear = budget_commands.add_parser("clear", parents=[store, reason], help="clear a DAG's carbon budget")
    budget_clear.add_argument("dag_id")
    budget_commands.add_parser("status", parents=[store, as_json], help="spent, projected and over, per DAG")
    audit = commands.add_parser("audit", parents=[store, as_json], help="who released, switched or budgeted what")
    audit.add_argument("--dag-id", help="only this DAG's entries")
    audit.add_argument("--limit", type=audit_limit, default=200, help="newest entries to show (default %(default)s)")


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

    logs_to_stderr()
    reading = {"--format": args.format, "--dag-id": args.dag_id, "--task-id": args.task_id, "--run-id": args.run_id}
    if args.flush or args.upgrade:
        given = [option for option, value in reading.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: for reading rows, not with --flush or --upgrade")
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
        rows = hook.get_store().rows(dag_id=args.dag_id, task_id=args.task_id, run_id=args.run_id)
    except (SQLAlchemyError, MigrationError) as error:
        print(f"airflow-carbon: the metrics store at {hook.where()} did not answer: {store_error(hook, error)}",
              file=sys.stderr)
        return 1
    print_metrics(rows, args.format or METRICS_FORMATS[0])
    return 0


def logs_to_stderr() -> None:
    """Send Airflow's log handlers, which it sets up on stdout, to stderr: stdout is this command's output alone."""
    import logging

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            handler.setStream(sys.stderr)


def print_metrics(rows: list[dict], output_format: str) -> None:
    """The store's rows on stdout as ``json`` (one object a line), ``csv`` or an aligned ``table``."""
    if output_format == "json":
        for row in rows:
            print(json.dumps(row, default=str, sort_keys=True))
    elif output_format == "csv":
        from airflow_carbon.metrics.record import FIELD_NAMES

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(FIELD_NAMES)
        writer.writerows([_csv_cell(row.get(name)) for name in FIELD_NAMES] for row in rows)
    elif not rows:
        print("no task try in the metrics store matches")
    else:
        cells = [list(TABLE_COLUMNS)] + [[_table_cell(row.get(name)) for name in TABLE_COLUMNS] for row in rows]
        widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_COLUMNS))]
        for line in cells:
            print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _csv_cell(value: object) -> object:
    """A value a spreadsheet reads: ISO 8601 instants, JSON lists and maps, empty for none."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value


def _table_cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


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


def actor() -> str:
    """``cli:<login name>``: who changed something from a shell, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name: a container's uid without a passwd entry
        import os

        return f"cli:uid-{os.getuid()}"


def control_engine(conn_id: str) -> tuple[Engine, CarbonMetricsHook]:
    """The store's engine, as ``metrics`` reaches it, with logs on stderr so ``--json`` output pipes.
    :raises ValueError: an unknown ``--conn-id``."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from airflow_carbon.hooks.metrics import CarbonMetricsHook

    logs_to_stderr()
    hook = CarbonMetricsHook(conn_id)
    try:
        hook.url()
    except AirflowNotFoundException as error:
        raise ValueError(f"--conn-id: {error}") from None
    return hook.get_store().engine, hook


def run_control(args: argparse.Namespace) -> int:
    """One control command; a refusal (nothing waiting, a bad window, an unknown store) is one line and exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_carbon.metrics.migrations import MigrationError

    hook = None
    try:
        engine, hook = control_engine(args.conn_id)
        return CONTROL_COMMANDS[control_name(args)](engine, args, utcnow())
    except (SQLAlchemyError, MigrationError) as error:
        where = hook.where() if hook else f"connection {args.conn_id!r}"
        detail = store_error(hook, error) if hook else str(error)
        print(f"airflow-carbon: the metrics store at {where} did not answer: {detail}", file=sys.stderr)
    except (CarbonError, ValueError) as error:
        print(f"airflow-carbon: error: {error}", file=sys.stderr)
    return 1


def control_name(args: argparse.Namespace) -> str:
    sub = getattr(args, "eco_command", None) or getattr(args, "budget_command", None)
    return f"{args.command} {sub}" if sub else args.command


def _when(instant: datetime | None) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if instant else "-"


def _print_rows(rows: list[dict], as_json: bool, line: Callable[[dict], str], none: str) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row, default=str, sort_keys=True))
    elif not rows:
        print(none)
    else:
        for row in rows:
            print(line(row))


def run_release(engine: Engine, args: argparse.Namespace, now: datetime) -> int:
    from airflow_carbon.metrics import control

    try:
        done = control.release(engine, args.dag_id, args.run_id, args.task_id, args.map_index, actor=actor(),
                               reason=args.reason, now=now)
    except control.NotWaitingError as error:
        raise ValueError(f"DAG_ID RUN_ID TASK_ID --map-index: {error}") from None
    index = f" (map index {done['map_index']})" if done["map_index"] >= 0 else ""
    print(f"released {done['task_id']}{index} in run {done['run_id']} of {done['dag_id']}, try "
          f"{done['try_number']}: by {done['released_by']} at {_when(done['released_at'])}; it runs at its "
          f"trigger's next poll")
    return 0


def _scope(dag_id: str | None) -> str:
    return "every DAG" if dag_id is None else f"DAG {dag_id}"


def _switch_line(switch: dict) -> str:
    windows = "; ".join(switch["windows"]) if switch["windows"] else "all the time"
    until = _when(switch["until"]) if switch["until"] else "switched on again"
    return (f"{_scope(switch['dag_id'])}: {'OFF NOW' if switch['active'] else 'not now'}; in {windows}; until "
            f"{until}; set by {switch['set_by']} at {_when(switch['set_at'])}: {switch['reason'] or '(no reason)'}")


def run_eco_off(engine: Engine, args: argparse.Namespace, now: datetime) -> int:
    from airflow_carbon.metrics import control

    try:
        switch = control.set_eco_off(engine, args.dag_id, until=args.until, windows=args.windows, actor=actor(),
                                     reason=args.reason, now=now)
    except control.ControlInputError as error:
        option = "--window" if str(error).startswith("windows[") else "--until"
        raise ValueError(f"{option}: {error}") from None
    print(f"carbon-awareness switched off: {_switch_line(switch)}")
    return 0


def run_eco_on(engine: Engine, args: argparse.Namespace, now: datetime) -> int:
    from airflow_carbon.metrics import control

    if control.clear_eco_off(engine, args.dag_id, actor=actor(), reason=args.reason, now=now):
        print(f"carbon-awareness is on again for {_scope(args.dag_id)}")
    else:
        print(f"carbon-awareness was not switched off for {_scope(args.dag_id)}: nothing changed")
    return 0


def run_eco_status(engine: Engine, args: argparse.Namespace, now: datetime) -> int:
    from airflow_carbon.metrics import control

    _print_rows(control.eco_switches(engine, now), args.json, _switch_line,
                "carbon-awareness is on everywhere: no switch is set")
    return 0


def run_budget_set(engine: Engine, args: argparse.Namespace, now: datetime) -> int:
    from airflow_carbon.metrics import control

    control.set_budget(engine, args.dag_id, grams=args.grams, period=args.period, strict=args.strict, actor=actor(),
                       reason=args.reason, now=now)
    [row] = control.budget_status(engine, [args.dag_id], now)
    print(f"budget set: {_budget_line(row)}")
    return 0


def run_budget_clear(engine: Engine, args: argparse.Namespace, now: datetime) -> int:
    from airflow_carbon.metrics import control

    if control.clear_budget(engine, args.dag_id, actor=actor(), reason=args.reason, now=now):
        print(f"the budget of DAG {args.dag_id} is cleared")
    else:
        print(f"DAG {args.dag_id} had no budget to clear: nothing changed")
    return 0


def _budget_line(row: dict) -> str:
    pct = f"{row['spent_pct']:.1f}%" if row["spent_pct"] is not None else "-"
    projected = f"{row['projected_g']:g} g" if row["projected_g"] is not None else "-"
    return (f"{row['dag_id']}: {row['spent_g']:g} g of {row['budget_g']:g} g per {row['period']} ({pct}) since "
            f"{_when(row['period_start'])}, projected {projected}{', OVER' if row['over'] else ''}"
            f"{', strict' if row['strict'] else ''}; from {row['source']}")


def run_budget_status(engine: Engine, args: argparse.Namespace, now: datetime) -> int:
    from airflow_carbon.metrics import control

    _print_rows(control.budget_status(engine, None, now), args.json, _budget_line, "no DAG has a carbon budget")
    return 0


def _audit_line(entry: dict) -> str:
    instance = ""
    if entry["task_id"]:
        index = f"[{entry['map_index']}]" if entry["map_index"] is not None and entry["map_index"] >= 0 else ""
        instance = f" {entry['task_id']}{index} in run {entry['run_id']}"
    detail = f" {json.dumps(entry['detail'], default=str, sort_keys=True)}" if entry["detail"] else ""
    return (f"{_when(entry['at'])} {entry['actor']} {entry['action']} {_scope(entry['dag_id'])}{instance}:"
            f" {entry['reason'] or '(no reason)'}{detail}")


def run_audit(engine: Engine, args: argparse.Namespace, now: datetime) -> int:
    from airflow_carbon.metrics import control

    _print_rows(control.audit(engine, None, dag_id=args.dag_id, limit=args.limit), args.json, _audit_line,
                "the audit log is empty")
    return 0


CONTROL_COMMANDS: dict[str, Callable[[Engine, argparse.Namespace, datetime], int]] = {
    "release": run_release, "eco off": run_eco_off, "eco on": run_eco_on, "eco status": run_eco_status,
    "budget set": run_budget_set, "budget clear": run_budget_clear, "budget status": run_budget_status,
    "audit": run_audit,
}


def simulation_settings(args: argparse.Namespace) -> PolicySettings:
    return PolicySettings(threshold_g_per_kwh=args.threshold, solar_threshold_kw=args.solar_threshold_kw,
                          min_saving_pct=args.min_saving_pct, risk_aversion=args.risk_aversion,
                          replan_margin_pct=args.replan_margin_pct)


def run_simulate(args: argparse.Namespace) -> int:
    if args.regions is not None:
        return run_simulate_regions(args)
    if len(args.carbon) > 1:
        raise ValueError(f"{len(args.carbon)} carbon files ({', '.join(map(str, args.carbon))}): several need "
                         "--regions, naming the region of each in order")
    (carbon,) = args.carbon
    for what, path in (("jobs", args.jobs), ("carbon", carbon), ("solar", args.solar)):
        if path is not None:
            check_input_file(path, what)
    if args.records is not None and args.records.is_dir():
        raise ValueError(f"--records {str(args.records)!r}: a directory; give the CSV file to write")
    if args.plots is not None and args.plots.exists() and not args.plots.is_dir():
        raise ValueError(f"--plots {str(args.plots)!r}: not a directory")
    settings = simulation_settings(args)
    run = simulate_files(args.jobs, carbon, args.solar, region=args.region,
                         policies=args.policy or list(POLICIES),
                         max_delay=args.max_delay, settings=settings, forecast_error=args.forecast_error,
                         seed=args.seed, job_duration=args.job_duration, forecast=args.forecast,
                         refresh=args.refresh, max_missing_periods=args.max_missing_periods)
    if args.json:
        inputs = run.inputs(args.jobs, carbon, args.solar, args.max_delay, args.forecast_error, args.forecast,
                            args.refresh)
        print(json.dumps(as_json(run.rows, inputs), indent=2))
    else:
        print(run.headline(carbon, args.max_delay, args.forecast_error, args.forecast, args.refresh))
        print(run.table())
    if args.records:
        write_records(args.records, run.results)
    if args.plots:
        from airflow_carbon.simulate.plots import write_plots  # matplotlib loads only when figures are asked for

        for path in write_plots(run.results, run.intensity, run.solar, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def run_simulate_regions(args: argparse.Namespace) -> int:
    """``simulate JOBS CARBON [CARBON ...] --regions DE,FR``: one row per mode (time, place, time+place, oracle)."""
    for option, given, why in (
            ("--solar", args.solar, "a site's solar feeds one region's workers"),
            ("--plots", args.plots, "the figures draw one region"),
            ("--region", args.region, "--regions names the region of each carbon file"),
            ("--policy", args.policy, "the modes are fixed: time, place, time+place, oracle")):
        if given is not None:
            raise ValueError(f"{option} does not go with --regions: {why}")
    check_input_file(args.jobs, "jobs")
    for path in args.carbon:
        check_input_file(path, "carbon")
    if args.records is not None and args.records.is_dir():
        raise ValueError(f"--records {str(args.records)!r}: a directory; give the CSV file to write")
    run = simulate_region_files(args.jobs, args.carbon, args.regions, max_delay=args.max_delay,
                                settings=simulation_settings(args), forecast_error=args.forecast_error, seed=args.seed,
                                job_duration=args.job_duration, forecast=args.forecast, refresh=args.refresh,
                                max_missing_periods=args.max_missing_periods)
    if args.json:
        inputs = run.inputs(args.jobs, args.carbon, args.max_delay, args.forecast_error, args.forecast, args.refresh)
        print(json.dumps({"inputs": inputs, "modes": [row.to_dict() for row in run.rows]}, indent=2))
    else:
        print(run.headline(args.max_delay, args.forecast_error, args.forecast, args.refresh))
        print(run.table())
    if args.records:
        write_records(args.records, run.results)
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
                "metrics": run_metrics, "release": run_control, "eco": run_control, "budget": run_control,
                "audit": run_control}[args.command](args)
    except (CarbonError, SignalDataError, ValueError, OSError) as error:  # a person's input: one line, no traceback
        print(f"airflow-carbon: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
