"""Carbon figures in the deployment's own monitoring, through Airflow's ``Stats`` (StatsD, Datadog or OpenTelemetry).

Thin glue: each function turns a task try's record (or the triggerer's count of waiting tasks, or a budget) into
metrics under ``carbon.``; nothing here plans or accounts. Airflow adds its ``[metrics] statsd_prefix``
(``airflow.carbon.decided`` on the wire by default).

Tags go through Airflow's ``tags=`` argument, as Airflow's own metrics do: OpenTelemetry and Datadog always carry
them; plain StatsD carries them only with ``[metrics] statsd_influxdb_enabled = True`` (InfluxDB-style
``name,dag_id=...:1|c``, which Prometheus's statsd_exporter reads as labels). No dotted legacy names
(``carbon.decided.<dag_id>.<task_id>``) are sent: Airflow keeps those only for its old metrics, and one name per
figure keeps the list and the exporter mapping short. Every metric always carries the same tags, so an exporter
never sees one name with two label sets: a record without a region is tagged ``region=unknown``; the budget
gauges carry ``dag_id`` only.

Counters never go down (statsd_exporter drops a negative increment, OpenTelemetry refuses it), so a try that
emitted more than its baseline adds to ``carbon.extra_emissions_g`` instead of subtracting from ``carbon.saved_g``:
the net saving is ``saved_g - extra_emissions_g``.

Emitting a metric never fails a task or a trigger: an error is logged (a warning the first time, then at debug).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, ParamSpec

from airflow.sdk.observability import stats as airflow_stats

from airflow_carbon.metrics.record import DEFERRED, DELAYED_AFTER_S, TaskTryRecord

log = logging.getLogger(__name__)

COUNTER, GAUGE, TIMER = "counter", "gauge", "timer"
TASK_TAGS = ("dag_id", "task_id", "region")
#: The tag value of a record that names no region.
NO_REGION = "unknown"
#: Reasons a person gave the task its start: a release, or carbon awareness switched off for its DAG.
RELEASE_REASONS = ("released", "eco_off")


@dataclass(frozen=True)
class Metric:
    """One metric: its name under ``[metrics] statsd_prefix``, kind, tags, unit and how it is obtained."""

    name: str
    kind: str
    tags: tuple[str, ...]
    unit: str
    obtained: str


DECIDED = Metric("carbon.decided", COUNTER, TASK_TAGS, "tries", "a decision was written: the try defers or runs")
DEFERRED_COUNT = Metric("carbon.deferred", COUNTER, TASK_TAGS, "tries", "the decision was to wait")
DELAYED = Metric("carbon.delayed", COUNTER, TASK_TAGS, "tries",
                 f"a finished try started at least {DELAYED_AFTER_S:.0f} s after it became ready")
RELEASED = Metric("carbon.released", COUNTER, (*TASK_TAGS, "reason"), "tries",
                  "a finished try ran because a person released it (reason released) or switched awareness off "
                  "(reason eco_off)")
FORCED_BY_DEADLINE = Metric("carbon.forced_by_deadline", COUNTER, TASK_TAGS, "tries",
                            "a finished try ran because its deadline came")
SERVED_BY_FALLBACK = Metric("carbon.served_by_fallback", COUNTER, TASK_TAGS, "tries",
                            "a finished try's signal came from another source than its configured one")
SOURCE_FAILURES = Metric("carbon.source_failures", COUNTER, TASK_TAGS, "failures",
                         "sources that failed on the way (the record's failed_sources)")
EMISSIONS_G = Metric("carbon.emissions_g", COUNTER, TASK_TAGS, "gCO2eq", "the record's emissions_g")
BASELINE_EMISSIONS_G = Metric("carbon.baseline_emissions_g", COUNTER, TASK_TAGS, "gCO2eq",
                              "the record's baseline_emissions_g: had it run when ready")
SAVED_G = Metric("carbon.saved_g", COUNTER, TASK_TAGS, "gCO2eq", "the record's saved_g where it is positive")
EXTRA_EMISSIONS_G = Metric("carbon.extra_emissions_g", COUNTER, TASK_TAGS, "gCO2eq",
                           "minus the record's saved_g where it is negative (it emitted more than its baseline)")
ENERGY_KWH = Metric("carbon.energy_kwh", COUNTER, TASK_TAGS, "kWh", "the record's energy_kwh")
DELAY = Metric("carbon.delay", TIMER, TASK_TAGS, "ms", "the record's delay_s: from ready to started")
WAITING = Metric("carbon.waiting", GAUGE, TASK_TAGS, "tasks", "deferred tries now, counted by the triggerer")
BUDGET_SPENT_G = Metric("carbon.budget.spent_g", GAUGE, ("dag_id",), "gCO2eq", "emissions counted against the "
                        "DAG's carbon budget")
BUDGET_SPENT_PCT = Metric("carbon.budget.spent_pct", GAUGE, ("dag_id",), "%", "spent_g as a share of the budget")

#: Every metric this module emits, for the README, the exporter mapping and its test.
METRICS = (DECIDED, DEFERRED_COUNT, DELAYED, RELEASED, FORCED_BY_DEADLINE, SERVED_BY_FALLBACK, SOURCE_FAILURES,
           EMISSIONS_G, BASELINE_EMISSIONS_G, SAVED_G, EXTRA_EMISSIONS_G, ENERGY_KWH, DELAY, WAITING, BUDGET_SPENT_G,
           BUDGET_SPENT_PCT)

P = ParamSpec("P")
_warned: set[str] = set()
_initialized_pid: int | None = None
#: What ``tasks_waiting`` last sent per (dag_id, task_id, region) above zero, in this process, and when it last sent
#: every key: a gauge keeps its value, so only changes go out, and all of them again now and then (UDP may drop one).
_waiting_reported: dict[tuple[str, str, str | None], int] = {}
_waiting_all_sent_at: list[float] = [0.0]
WAITING_RESEND_EVERY_S = 300.0


def _never_raises(fn: Callable[P, None]) -> Callable[P, None]:
    """Metrics are a side show: a failure to emit is logged (a warning once per function), never raised."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            first = fn.__name__ not in _warned
            _warned.add(fn.__name__)
            log.log(logging.WARNING if first else logging.DEBUG, "carbon: could not emit metrics in %s",
                    fn.__name__, exc_info=True)

    return wrapper


def _backend() -> Any:
    """Airflow's stats module, set up from ``[metrics]`` once per process where Airflow has not done it.

    Airflow sets up the SDK's stats in task processes; the triggerer sets up another copy (``airflow._shared``) and
    its trigger runner, like ``airflow dags test``, may leave the SDK's unset, which would drop every metric.
    """
    global _initialized_pid
    if _initialized_pid != os.getpid():
        _initialized_pid = os.getpid()
        from airflow.sdk._shared.observability.metrics import stats as shared_stats

        if getattr(shared_stats, "_factory", None) is None:
            from airflow.sdk.configuration import conf
            from airflow.sdk.observability.metrics.stats_utils import get_stats_factory

            airflow_stats.initialize(factory=get_stats_factory(),
                                     export_legacy_names=conf.getboolean("metrics", "legacy_names_on"))
    return airflow_stats


def _tag(value: Any) -> str:
    """A tag value every backend accepts: Airflow drops a StatsD line whose tags hold other characters."""
    return airflow_stats.normalize_name_for_stats(str(value), log_warning=False)


def task_tags(dag_id: str, task_id: str, region: str | None) -> dict[str, str]:
    return {"dag_id": _tag(dag_id), "task_id": _tag(task_id), "region": _tag(region or NO_REGION)}


def _record_tags(record: TaskTryRecord) -> dict[str, str]:
    return task_tags(record.dag_id, record.task_id, record.region)


def _count(stats: Any, metric: Metric, amount: float | None, tags: dict[str, str]) -> None:
    if amount is None or not math.isfinite(amount) or amount <= 0:
        return
    stats.incr(metric.name, count=amount, tags=tags)


@_never_raises
def task_decided(record: TaskTryRecord) -> None:
    """A try's decision was written (state deferred or running)."""
    stats, tags = _backend(), _record_tags(record)
    stats.incr(DECIDED.name, tags=tags)
    if record.state == DEFERRED:
        stats.incr(DEFERRED_COUNT.name, tags=tags)


@_never_raises
def task_finished(record: TaskTryRecord) -> None:
    """A try ended (state completed or failed): its outcome counters, its figures and its delay."""
    stats, tags = _backend(), _record_tags(record)
    if record.delay_s is not None and record.delay_s >= DELAYED_AFTER_S:
        stats.incr(DELAYED.name, tags=tags)
    if record.reason in RELEASE_REASONS:
        stats.incr(RELEASED.name, tags={**tags, "reason": record.reason})
    if record.reason == "deadline":
        stats.incr(FORCED_BY_DEADLINE.name, tags=tags)
    if record.served_by is not None and record.served_by != record.source:
        stats.incr(SERVED_BY_FALLBACK.name, tags=tags)
    _count(stats, SOURCE_FAILURES, len(record.failed_sources), tags)
    _count(stats, EMISSIONS_G, record.emissions_g, tags)
    _count(stats, BASELINE_EMISSIONS_G, record.baseline_emissions_g, tags)
    if record.saved_g is not None:
        _count(stats, SAVED_G, record.saved_g, tags)
        _count(stats, EXTRA_EMISSIONS_G, -record.saved_g, tags)
    _count(stats, ENERGY_KWH, record.energy_kwh, tags)
    if record.delay_s is not None and math.isfinite(record.delay_s):
        # A start before ready is a clock's skew between hosts, not a negative wait.
        stats.timing(DELAY.name, timedelta(seconds=max(record.delay_s, 0.0)), tags=tags)


@_never_raises
def tasks_waiting(counts: Mapping[tuple[str, str, str | None], int]) -> None:
    """The deferred tries now, per (dag_id, task_id, region); a key reported before and now absent is set to 0.

    A triggerer with 10,000 waiting tasks calls this at every poll: only the counts that changed are sent, and
    every count again each ``WAITING_RESEND_EVERY_S``."""
    stats = _backend()
    resend = time.monotonic() - _waiting_all_sent_at[0] >= WAITING_RESEND_EVERY_S
    if resend:
        _waiting_all_sent_at[0] = time.monotonic()
    for key in sorted(set(_waiting_reported) - set(counts), key=str):
        stats.gauge(WAITING.name, 0, tags=task_tags(*key))
        del _waiting_reported[key]
    for key, count in counts.items():
        if resend or _waiting_reported.get(key) != count:
            stats.gauge(WAITING.name, count, tags=task_tags(*key))
            _waiting_reported[key] = count


@_never_raises
def budget_spent(dag_id: str, spent_g: float, budget_g: float) -> None:
    """How much of a DAG's carbon budget is spent, in grams and, for a positive budget, in percent."""
    stats, tags = _backend(), {"dag_id": _tag(dag_id)}
    stats.gauge(BUDGET_SPENT_G.name, spent_g, tags=tags)
    if budget_g > 0:
        stats.gauge(BUDGET_SPENT_PCT.name, 100.0 * spent_g / budget_g, tags=tags)
