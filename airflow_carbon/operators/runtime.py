"""What every carbon-aware task does around its work: plan, defer, then account and record.

Shared by the operator wrapper, the task decorators and the sensor, so the four ways in
behave alike. Planning itself is ``airflow_carbon.planning``; this module only gathers the
task's settings, the signal and the metrics store around it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_carbon.accounting import account
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.hooks.sources import load_first
from airflow_carbon.metrics.store import DEFERRED, RUNNING, TaskTryKey
from airflow_carbon.planning import Decision, Job, decide
from airflow_carbon.settings import CarbonSettings, CarbonSettingsError, default_power_kw
from airflow_carbon.signals.series import SignalDataError
from airflow_carbon.signals.services import signal_kind
from airflow_carbon.signals.source import SignalSpec
from airflow_carbon.triggers.carbon import CarbonWindowTrigger, event_payload
from airflow_carbon.units import parse_instant

log = logging.getLogger(__name__)

XCOM_KEY = "carbon"
RESUME_METHOD = "carbon_resume"


def utcnow() -> datetime:
    return datetime.now(UTC)


def signal_specs(task_id: str, settings: CarbonSettings) -> list[SignalSpec]:
    """The task's source, then its fallbacks: bundled data for its region, or what each connection names.

    A connection that does not exist or is not a signal source fails the task at its start,
    naming the task and the connection, never in the middle of a wait.
    """
    from airflow.sdk import BaseHook

    from airflow_carbon.hooks.sources import service_hooks

    specs = []
    if settings.source is None:
        try:
            specs.append(SignalSpec("bundled", settings.region))
        except ValueError as error:
            raise CarbonSettingsError(f"task {task_id!r}: carbon setting region={settings.region!r}: {error}") from None
    for conn_id in ([settings.source] if settings.source is not None else []) + list(settings.fallback):
        try:
            conn_type = BaseHook.get_connection(conn_id).conn_type
        except Exception as error:
            raise CarbonSettingsError(f"task {task_id!r}: signal source connection {conn_id!r} cannot be read: "
                                      f"{type(error).__name__}") from None
        if conn_type not in service_hooks():
            raise CarbonSettingsError(f"task {task_id!r}: connection {conn_id!r} has type {conn_type!r}, which is not "
                                      f"a carbon signal source ({', '.join(sorted(service_hooks()))})")
        specs.append(SignalSpec("connection", settings.region, conn_id=conn_id))
    return specs


@dataclass
class CarbonTaskRun:
    """One try of a carbon-aware task: its key, settings, ready time and deadline.

    ``check_files`` is true until the first decision of a task instance that has made none yet:
    that decision refuses a missing or malformed source file instead of falling back from it.
    """

    task_id: str
    key: TaskTryKey
    settings: CarbonSettings
    ready_at: datetime
    deadline: datetime
    specs: list[SignalSpec]
    check_files: bool = False

    @classmethod
    def start(cls, task: Any, context: Any, settings: CarbonSettings, event: dict[str, Any] | None = None
              ) -> CarbonTaskRun:
        """The deadline is the moment the task first became ready plus ``max_delay``: retries never extend it.

        A resumed task takes both from its trigger's event; a new try from the first try's row.
        """
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        map_index = -1 if map_index is None else map_index
        key = TaskTryKey(ti.dag_id, ti.task_id, ti.run_id, map_index, ti.try_number)
        if event and event.get("ready_at") and event.get("deadline"):
            ready_at, deadline = parse_instant(event["ready_at"]), parse_instant(event["deadline"])
            return cls(task.task_id, key, settings, ready_at, deadline, signal_specs(task.task_id, settings))
        earlier = _first_ready_at(settings, key)
        ready_at = earlier or utcnow()
        deadline = settings.deadline or ready_at + settings.max_delay
        if deadline < ready_at:
            raise CarbonSettingsError(f"task {task.task_id!r}: deadline {deadline.isoformat()} is before the task "
                                      f"became ready ({ready_at.isoformat()})")
        return cls(task.task_id, key, settings, ready_at, deadline, signal_specs(task.task_id, settings),
                   check_files=earlier is None)

    def wait_if_needed(self, task: Any) -> dict[str, Any]:
        """Run now (returns the decision as an event payload) or defer to the trigger (raises)."""
        decision, payload = self.decide_now()
        self.write_decision(decision, payload)
        if not decision.run_now:
            task.defer(trigger=self.trigger(), method_name=RESUME_METHOD)
        return payload

    @property
    def job(self) -> Job:
        return Job(self.settings.expected_duration, self.settings.planned_energy_kwh(default_power_kw()))

    def decide_now(self) -> tuple[Decision, dict[str, Any]]:
        """Plan from here; the payload has the shape of the trigger's event."""
        now = utcnow()
        if now >= self.deadline:  # a retry past its deadline runs at once, without waiting on a source
            series, served_by, failures = None, None, []
        else:
            series, served_by, failures = load_first(self.specs, now, deadline=self.deadline,
                                                     refuse=self._refuse_bad_file if self.check_files else None)
        self.check_files = False
        decision = decide(self.settings.policy, now=now, deadline=self.deadline, job=self.job, intensity=series,
                          settings=self.settings.policy_settings())
        return decision, event_payload(decision.to_dict(), self.ready_at, self.deadline, series, served_by, failures)

    def _refuse_bad_file(self, spec: SignalSpec, error: Exception) -> None:
        """A missing or malformed source file is configuration, not an outage: waiting on it would hide it."""
        if isinstance(error, SignalDataError | FileNotFoundError | IsADirectoryError | NotADirectoryError |
                      PermissionError):
            source = f"connection {spec.conn_id!r}" if spec.kind == "connection" else f"file {spec.path!r}"
            raise CarbonSettingsError(f"task {self.task_id!r}: signal source {source} cannot be read: "
                                      f"{error}") from None

    def trigger(self) -> CarbonWindowTrigger:
        return CarbonWindowTrigger(
            ready_at=self.ready_at, deadline=self.deadline, policy=self.settings.policy,
            duration_s=self.settings.expected_duration.total_seconds(), energy_kwh=self.job.energy_kwh,
            signals=[spec.to_dict() for spec in self.specs], settings=asdict(self.settings.policy_settings()),
            refresh_s=self.settings.refresh_interval.total_seconds(),
        )

    def write_decision(self, decision: Decision, payload: dict[str, Any]) -> None:
        """A ``deferred`` row shows the waiting task; a ``running`` one keeps its ready time for retries."""
        CarbonMetricsHook(self.settings.metrics_conn_id).write_decision(
            self.key, region=self.settings.region, source=self.specs[0].name, policy=self.settings.policy,
            ready_at=self.ready_at, deadline=self.deadline, decision=decision.to_dict(),
            signal=payload.get("signal"), served_by=payload["served_by"], failed_sources=payload["failed_sources"],
            state=RUNNING if decision.run_now else DEFERRED, energy_kwh=self.job.energy_kwh)

    def finish(self, context: Any, event: dict[str, Any], started_at: datetime, ended_at: datetime,
               *, estimated: bool = False) -> dict[str, Any]:
        """Account the interval the work really ran, push it to XCom under ``carbon`` and to the store."""
        settings = self.settings
        if settings.energy_kwh is not None:
            energy_kwh = settings.energy_kwh
        else:
            power_kw = settings.power_kw if settings.power_kw is not None else default_power_kw()
            energy_kwh = power_kw * (ended_at - started_at).total_seconds() / 3600.0
        history = max(ended_at - self.ready_at, timedelta(0)) + timedelta(hours=1)
        series, served_by, failures = load_first(self.specs, ended_at, history)
        failed_sources = [*event.get("failed_sources", []), *failures]
        reason = event.get("reason", "deadline")
        if series is None:
            record = _record_without_signal(self, reason, started_at, ended_at, energy_kwh)
        else:
            record = account(
                job_id=f"{self.key.dag_id}.{self.key.task_id}", policy=settings.policy, reason=reason,
                ready_at=self.ready_at, deadline=self.deadline, started_at=started_at, ended_at=ended_at,
                energy_kwh=energy_kwh, intensity=series,
                estimated=estimated or not settings.energy_declared,
            ).to_dict()
        record |= {"source": self.specs[0].name, "served_by": event.get("served_by") or served_by,
                   "failed_sources": failed_sources,
                   "signal": event.get("signal") or (series.source if series is not None else None),
                   "planned_start": event.get("decision", {}).get("start"), "try_number": self.key.try_number,
                   "map_index": self.key.map_index}
        record["signal_kind"] = signal_kind(record["signal"])
        context["ti"].xcom_push(key=XCOM_KEY, value=record)
        CarbonMetricsHook(settings.metrics_conn_id).write_completion(
            self.key, record, signal=record["signal"], served_by=record["served_by"], failed_sources=failed_sources)
        log.info("carbon record: %s", record)
        return record


def _first_ready_at(settings: CarbonSettings, key: TaskTryKey) -> datetime | None:
    """When this task instance (any mapped instance of it, when mapped) first became ready.

    From the store and from what this host spooled while the store was down (not written yet),
    so a retry keeps the first try's deadline even then.
    """
    hook = CarbonMetricsHook(settings.metrics_conn_id)
    where = (key.dag_id, key.task_id, key.run_id, None if key.map_index >= 0 else -1)
    try:
        stored = hook.get_store().earliest_ready_at(*where)
    except Exception:
        log.exception("carbon metrics store unreadable: the ready time comes from this host's spool, else now")
        stored = None
    return min((t for t in (stored, hook.spooled_ready_at(*where)) if t is not None), default=None)


def _record_without_signal(run: CarbonTaskRun, reason: str, started_at: datetime, ended_at: datetime,
                           energy_kwh: float) -> dict[str, Any]:
    return {
        "job_id": f"{run.key.dag_id}.{run.key.task_id}", "policy": run.settings.policy, "region": run.settings.region,
        "source": run.specs[0].name, "reason": reason, "ready_at": run.ready_at.isoformat(),
        "deadline": run.deadline.isoformat(), "started_at": started_at.isoformat(), "ended_at": ended_at.isoformat(),
        "energy_kwh": energy_kwh, "solar_kwh": 0.0, "intensity_g_per_kwh": None,
        "baseline_intensity_g_per_kwh": None, "emissions_g": None, "baseline_emissions_g": None, "estimated": True,
        "delay_s": (started_at - run.ready_at).total_seconds(), "grid_kwh": energy_kwh, "saved_g": None,
    }
