"""What every carbon-aware task does around its work: plan, defer, then account and record.

Shared by the operator wrapper, the task decorators and the sensor, so the four ways in
behave alike. Planning itself is ``airflow_carbon.planning``; this module only gathers the
task's settings, the signal and the metrics store around it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from airflow_carbon import stats
from airflow_carbon.accounting import account
from airflow_carbon.accounting.energy import Energy, energy_of
from airflow_carbon.accounting.record import solar_used_kwh
from airflow_carbon.clock import utcnow
from airflow_carbon.control import Override
from airflow_carbon.hooks import site as site_solar
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.hooks.site import SolarSite
from airflow_carbon.hooks.sources import load_first, open_source
from airflow_carbon.meters import Metering
from airflow_carbon.metrics import control
from airflow_carbon.metrics.record import COMPLETED, DEFERRED, FAILED, RUNNING, TaskTryKey, TaskTryRecord
from airflow_carbon.planning import Job, PolicySettings, decide, stricter
from airflow_carbon.planning.expectation import NO_HISTORY, expect
from airflow_carbon.settings import CALLBACK_PARSERS, CarbonSettings, CarbonSettingsError, resolve
from airflow_carbon.signals.series import SignalDataError
from airflow_carbon.signals.source import Reading, SourceError, SourceRef
from airflow_carbon.triggers.carbon import CarbonWindowTrigger
from airflow_carbon.triggers.event import CarbonEvent

log = logging.getLogger(__name__)

XCOM_KEY = "carbon"
RESUME_METHOD = "carbon_resume"


def source_refs(settings: CarbonSettings) -> list[SourceRef]:
    """The task's source, then its fallbacks: bundled data for its region, or what each connection names."""
    first = [SourceRef.bundled(settings.region)] if settings.source is None else []
    return first + [SourceRef.connection(conn_id, settings.region)
                    for conn_id in ([settings.source] if settings.source is not None else []) + list(settings.fallback)]


def checked_source_refs(task_id: str, settings: CarbonSettings) -> list[SourceRef]:
    """``source_refs``, each opened once: a connection that does not exist or is not a signal source fails
    the task at its start, naming the task and the connection, never in the middle of a wait."""
    try:
        refs = source_refs(settings)
    except SourceError as error:
        raise CarbonSettingsError(f"task {task_id!r}: carbon setting region={settings.region!r}: {error}") from None
    opened = []
    for ref in refs:
        try:
            opened.append(open_source(ref, settings.forecaster, settings.default_forecaster))
        except SourceError as error:
            raise CarbonSettingsError(f"task {task_id!r}: {error}") from None
        except SignalDataError:
            # a file behind a connection is checked by the first decision, naming its line
            opened.append(replace(ref, forecaster=settings.forecaster or settings.default_forecaster))
        except Exception as error:
            raise CarbonSettingsError(f"task {task_id!r}: signal source {ref.describe()} cannot be read: "
                                      f"{type(error).__name__}") from None
    return opened


def with_site(task_id: str, settings: CarbonSettings) -> CarbonSettings:
    """The settings with the site resolved: given, else the solar connection's own (its extra's ``site``).

    Opening the solar source here fails the task at its start, naming the task and the connection, when the
    connection does not exist or is not a solar source.
    """
    if settings.solar is None:
        return settings
    try:
        site = site_solar.site_of(settings)
    except SourceError as error:
        raise CarbonSettingsError(f"task {task_id!r}: carbon setting solar={settings.solar!r}: {error}") from None
    except SignalDataError as error:
        raise CarbonSettingsError(f"task {task_id!r}: solar source connection {settings.solar!r}: {error}") from None
    except Exception as error:
        raise CarbonSettingsError(f"task {task_id!r}: solar source connection {settings.solar!r} cannot be read: "
                                  f"{type(error).__name__}") from None
    return replace(settings, site=settings.site or site)


def task_try_key(context: Any) -> TaskTryKey:
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return TaskTryKey(ti.dag_id, ti.task_id, ti.run_id, -1 if map_index is None else map_index, ti.try_number)


@dataclass
class CarbonTaskRun:
    """One try of a carbon-aware task: its key, settings, ready time, deadline and sources.

    ``check_files`` is true until the first decision of a task instance that has made none yet:
    that decision refuses a missing or malformed source file instead of falling back from it.
    ``replay_told``: the task's log has said once that its signal is recorded data replayed onto today.
    """

    task_id: str
    key: TaskTryKey
    settings: CarbonSettings
    ready_at: datetime
    deadline: datetime
    sources: list[SourceRef]
    check_files: bool = False
    replay_told: bool = False
    #: The policy and its settings the try plans with: the task's, or stricter while its DAG is over a strict budget.
    planning: tuple[str, PolicySettings] | None = None

    @classmethod
    def start(cls, task: Any, context: Any, settings: CarbonSettings, *, learn: bool = True) -> CarbonTaskRun:
        """The deadline is the moment the task first became ready plus ``max_delay``: retries never extend it.

        The first try's ready time comes from the store (or this host's spool while the store is down). ``learn``:
        what the task does not declare of its duration and energy comes from its earlier tries.
        """
        key = task_try_key(context)
        settings = with_expectation(task.task_id, key, settings, learn)
        earlier = _first_ready_at(settings, key)
        ready_at = earlier or utcnow()
        deadline = settings.deadline or ready_at + settings.max_delay
        if deadline < ready_at:
            raise CarbonSettingsError(f"task {task.task_id!r}: deadline {deadline.isoformat()} is before the task "
                                      f"became ready ({ready_at.isoformat()})")
        run = cls(task.task_id, key, with_site(task.task_id, settings), ready_at, deadline,
                  checked_source_refs(task.task_id, settings), check_files=earlier is None)
        run._set_code_budget()
        return run

    @classmethod
    def resume(cls, task: Any, context: Any, event: CarbonEvent) -> CarbonTaskRun:
        """The run a trigger's event describes; only an event of version 0.1, without settings, resolves them."""
        settings = event.settings or resolve_settings(task)
        sources = list(event.sources) or source_refs(settings)
        return cls(task.task_id, task_try_key(context), settings, event.ready_at, event.deadline, sources)

    @property
    def job(self) -> Job:
        return Job(self.settings.expected_duration, self.settings.planned_energy_kwh)

    @property
    def solar(self) -> SolarSite | None:
        return SolarSite.of(self.settings)

    def wait_if_needed(self, task: Any) -> CarbonEvent:
        """Run now (returns the decision as an event) or defer to the trigger (raises)."""
        event = self.decide_now()
        self.write_decision(event)
        if not event.decision.run_now:
            task.defer(trigger=self.trigger(), method_name=RESUME_METHOD)
        return event

    def decide_now(self) -> CarbonEvent:
        """Plan from here, on the same terms as the trigger."""
        now = utcnow()
        solar = site_solar.NO_SOLAR
        reading = self.read_signal(self.sources, now)
        if now < self.deadline:
            solar = site_solar.read_solar(self.solar, now, self.deadline + self.job.duration, self.deadline)
        self.check_files = False
        policy, settings, override = self.planning_terms(now)
        decision = decide(policy, now=now, deadline=self.deadline, job=self.job, intensity=reading.series,
                          solar=solar.free, settings=settings, intensity_upper=reading.upper)
        return CarbonEvent.of(decision, self.ready_at, self.deadline, reading, self.settings, tuple(self.sources),
                              **site_solar.solar_for_event(solar, now, self.job.duration), override=override)

    def read_signal(self, sources: list[SourceRef], now: datetime) -> Reading:
        """The first of ``sources`` that answers, carried to the deadline; nothing once the deadline has come (a
        retry past it runs at once, without waiting on a source). The first decision refuses a bad source file."""
        if now >= self.deadline:
            return Reading(None, None, None)
        reading = load_first(sources, now, deadline=self.deadline, until=self.deadline + self.job.duration,
                             refuse=self._refuse_bad_file if self.check_files else None)
        if reading.series is not None and reading.series.replayed and not self.replay_told:
            self.replay_told = True
            log.warning("carbon: task %r plans on %s: recorded data replayed onto today, not a forecast of today's "
                        "grid; name a live source (the source setting or [carbon] source) to plan on the real grid",
                        self.task_id, reading.series.source)
        return reading

    def planning_terms(self, now: datetime) -> tuple[str, PolicySettings, Override | None]:
        """The policy and settings to plan with (stricter while the DAG is over a strict budget), and what a person
        decided for this try (a release, eco-mode off)."""
        state, over_strict_budget = self._control(now)
        policy, settings = self.settings.policy, self.settings.policy_settings()
        if over_strict_budget:
            policy, settings = stricter(policy, settings)
        self.planning = policy, settings
        return policy, settings, state.override(self.key, now)

    def _control(self, now: datetime) -> tuple[control.ControlState, bool]:
        """What people decided for this try (a release, eco-mode off) and whether its DAG is over a strict budget.

        A store that cannot be read decides nothing: the task plans as if nobody had said anything."""
        try:
            engine = CarbonMetricsHook(self.settings.metrics_conn_id).get_store().engine
            state = control.control_state(engine)
            budgets = control.budget_status(engine, [self.key.dag_id], now)
        except Exception as error:
            log.warning("carbon: task %r cannot read releases, switches and budgets from the metrics store (%s: "
                        "%s); it plans as usual", self.task_id, type(error).__name__, error)
            return control.NO_CONTROL, False
        return state, any(budget["over"] and budget["strict"] for budget in budgets)

    def _set_code_budget(self) -> None:
        """The budget the DAG's code names reaches the store, unless a person set the DAG's budget."""
        budget = self.settings.carbon_budget
        if budget is None:
            return
        try:
            control.set_budget(CarbonMetricsHook(self.settings.metrics_conn_id).get_store().engine, self.key.dag_id,
                               grams=budget.grams, period=budget.period, strict=budget.strict,
                               actor=f"DAG {self.key.dag_id} code", reason=None, now=utcnow(),
                               source=control.CODE_SOURCE)
        except Exception as error:
            log.warning("carbon: the carbon budget of DAG %r could not be written to the metrics store (%s: %s)",
                        self.key.dag_id, type(error).__name__, error)

    def _refuse_bad_file(self, ref: SourceRef, error: Exception) -> None:
        """A missing or malformed source file is configuration, not an outage: waiting on it would hide it."""
        if isinstance(error, SignalDataError | FileNotFoundError | IsADirectoryError | NotADirectoryError |
                      PermissionError):
            raise CarbonSettingsError(f"task {self.task_id!r}: signal source {ref.describe()} cannot be read: "
                                      f"{error}") from None

    def trigger(self) -> CarbonWindowTrigger:
        policy, settings = self.planning or (self.settings.policy, self.settings.policy_settings())
        return CarbonWindowTrigger(
            ready_at=self.ready_at, deadline=self.deadline, policy=policy,
            duration_s=self.settings.expected_duration.total_seconds(), energy_kwh=self.job.energy_kwh,
            signals=[ref.to_dict() for ref in self.sources], settings=asdict(settings),
            refresh_s=self.settings.refresh_interval.total_seconds(), task_settings=self.settings.to_json(),
            solar=self.solar.to_dict() if self.solar is not None else None,
        )

    def begin(self, event: CarbonEvent, started_at: datetime) -> CarbonEvent:
        """The work is about to run: take the site's solar it planned on for its expected run.

        Returns the event with a failed reservation added to its failed sources.
        """
        if self.solar is None:
            return event
        failures = site_solar.reserve(self.solar, self.key, started_at, started_at + self.job.duration,
                                      self.job.power_kw, event.solar_forecast)
        return replace(event, failed_sources=(*event.failed_sources, *failures)) if failures else event

    def meter(self) -> Metering:
        """The meters of the work, started: what ``energy_meter`` asks for and this machine has."""
        return Metering.start(self.settings.energy_meter, self.task_id)

    def energy(self, metering: Metering | None, started_at: datetime, ended_at: datetime,
               notes: tuple[str, ...] = ()) -> Energy:
        """The try's energy: what its meters read (stopping them), else what it declared or is assumed to draw."""
        components, meter_notes = metering.stop() if metering is not None else ((), ())
        settings = self.settings
        return energy_of(components, run_s=(ended_at - started_at).total_seconds(), pue=settings.pue,
                         energy_kwh=settings.energy_kwh, power_kw=settings.power_kw,
                         assumed_power_kw=settings.assumed_power_kw, notes=(*meter_notes, *notes),
                         prefer_declared=settings.energy_meter == "auto")

    def _record(self, event: CarbonEvent, state: str, **values: Any) -> TaskTryRecord:
        decision, override = event.decision, event.override
        if override is not None:
            values |= {"released_by": override.by, "released_at": override.at, "release_reason": override.note}
        return TaskTryRecord(
            **asdict(self.key), state=state, region=self.settings.region, source=self.sources[0].name,
            site=self.solar.site if self.solar is not None else None, solar_served_by=event.solar_served_by,
            served_by=event.served_by, signal=event.signal, signal_kind=event.signal_kind,
            failed_sources=list(event.failed_sources), policy=self.settings.policy, reason=event.reason,
            ready_at=self.ready_at, deadline=self.deadline, decided_at=decision.now, planned_start=decision.start,
            expected_emissions_now_g=decision.expected_emissions_now_g,
            expected_emissions_at_start_g=decision.expected_emissions_at_start_g,
            expected_duration_s=self.settings.expected_duration.total_seconds(),
            expected_energy_kwh=self.job.energy_kwh, expected_from=self.settings.expected_from, **values)

    def write_decision(self, event: CarbonEvent) -> None:
        """A ``deferred`` row shows the waiting task; a ``running`` one keeps its ready time for retries.

        Its energy is the planned energy, so a waiting row shows the intensity now (expected emissions / energy).
        """
        state = RUNNING if event.decision.run_now else DEFERRED
        record = self._record(event, state, energy_kwh=self.job.energy_kwh)
        CarbonMetricsHook(self.settings.metrics_conn_id).write(record)
        stats.task_decided(record)
        if not event.decision.run_now:
            decision = event.decision
            saving = decision.expected_saving_g
            log.info("carbon: task %r defers (%s): planned start %s%s; its trigger re-plans at each refresh (every "
                     "%s) and it runs by its deadline %s at the latest; planned on a run of %s drawing %.4f kWh "
                     "(expected from %s)", self.task_id, decision.reason,
                     decision.start.isoformat(timespec="seconds"),
                     f", expected to save {saving:.1f} g of CO2e" if saving is not None else "",
                     self.settings.refresh_interval, self.deadline.isoformat(timespec="seconds"),
                     self.job.duration, self.job.energy_kwh, self.settings.expected_from)

    def finish(self, context: Any, event: CarbonEvent, started_at: datetime, ended_at: datetime, *,
               energy: Energy | None = None, estimated: bool = False, failed: bool = False) -> TaskTryRecord:
        """Account the interval the work really ran, push it to XCom under ``carbon`` and to the store.

        ``energy``: what the work drew, and how that is known; None: what it declared, else the assumed power.
        ``failed``: the work raised; its energy was still drawn, so the try is recorded as ``failed``.
        """
        settings = self.settings
        energy = energy or self.energy(None, started_at, ended_at)
        energy_kwh = energy.energy_kwh
        history = max(ended_at - self.ready_at, timedelta(0)) + timedelta(hours=1)
        reading = load_first(self.sources, ended_at, history)
        completion: dict[str, Any] = {"started_at": started_at, "ended_at": ended_at, "energy_kwh": energy_kwh,
                                      "delay_s": (started_at - self.ready_at).total_seconds(),
                                      "energy_method": energy.method, "energy_scope": energy.scope,
                                      "energy_breakdown_kwh": energy.breakdown_kwh or None,
                                      "energy_notes": list(energy.notes), "pue": energy.pue}
        solar = self._claim_solar(event, started_at, ended_at, energy_kwh)
        solar_kwh = solar_used_kwh(solar.used, energy_kwh, started_at, ended_at)
        completion |= {"solar_kwh": solar_kwh, "grid_kwh": energy_kwh - solar_kwh, "solar_basis": solar.basis}
        if reading.series is None:
            completion |= {"estimated": True}
        else:
            job_id = f"{self.key.dag_id}.{self.key.task_id}"
            baseline = None
            if solar.used is not None:  # the same run at the ready time, with the site's output free then
                baseline_end = self.ready_at + (ended_at - started_at)
                base = account(job_id=job_id, policy=settings.policy, reason=event.reason, ready_at=self.ready_at,
                               deadline=self.deadline, started_at=self.ready_at, ended_at=baseline_end,
                               energy_kwh=energy_kwh, intensity=reading.series, solar=solar.baseline)
                baseline = (base.intensity_g_per_kwh, base.emissions_g)
            accounted = account(
                job_id=job_id, policy=settings.policy, reason=event.reason,
                ready_at=self.ready_at, deadline=self.deadline, started_at=started_at, ended_at=ended_at,
                energy_kwh=energy_kwh, intensity=reading.series, solar=solar.used, baseline=baseline,
                estimated=(estimated or energy.estimated
                           or (solar.used is not None and (solar.basis != "measured" or solar.baseline is None))))
            completion |= {name: getattr(accounted, name) for name in (
                "solar_kwh", "grid_kwh", "intensity_g_per_kwh", "baseline_intensity_g_per_kwh", "emissions_g",
                "baseline_emissions_g", "saved_g", "estimated")}
        record = self._record(event, FAILED if failed else COMPLETED, **completion)
        record = replace(record, served_by=event.served_by or reading.served_by,
                         signal=event.signal or (reading.series.source if reading.series is not None else None),
                         signal_kind=event.signal_kind or reading.signal_kind,
                         solar_served_by=event.solar_served_by or solar.served_by,
                         failed_sources=[*event.failed_sources, *reading.failed_sources, *solar.failures])
        context["ti"].xcom_push(key=XCOM_KEY, value=record.to_json())
        hook = CarbonMetricsHook(settings.metrics_conn_id)
        hook.write(record)
        log.info("carbon record: %s", record.to_json())
        stats.task_finished(record)
        self._check_budget(context, hook)
        return record

    def _check_budget(self, context: Any, hook: CarbonMetricsHook) -> None:
        """Tell once per period, through a log line and the ``on_budget_exceeded`` callbacks, that the DAG's
        emissions crossed its budget; the first try to find it over tells, whichever worker it runs on."""
        now = utcnow()
        try:
            engine = hook.get_store().engine
            [budget] = control.budget_status(engine, [self.key.dag_id], now) or [None]
            if budget is None:
                return
            stats.budget_spent(self.key.dag_id, budget["spent_g"], budget["budget_g"])
            if not budget["over"] or not control.claim_budget_alert(
                    engine, self.key.dag_id, budget["period_start"], spent=budget["spent_g"],
                    budget_g=budget["budget_g"], now=now):
                return
        except Exception as error:
            log.warning("carbon: the carbon budget of DAG %r could not be checked (%s: %s)", self.key.dag_id,
                        type(error).__name__, error)
            return
        log.warning("carbon: DAG %r is over its carbon budget: %.1f g of %.1f g this %s (since %s), %.1f g projected "
                    "by %s", self.key.dag_id, budget["spent_g"], budget["budget_g"], budget["period"],
                    budget["period_start"].isoformat(), budget["projected_g"], budget["period_end"].isoformat())
        for callback in budget_callbacks(context.get("task")):
            try:
                callback({**context, "carbon_budget": budget})
            except Exception:  # as Airflow does with a failing callback: logged, the task unharmed
                log.exception("carbon: the on_budget_exceeded callback %r of DAG %r failed", callback,
                              self.key.dag_id)


    def _claim_solar(self, event: CarbonEvent, started_at: datetime, ended_at: datetime,
                     energy_kwh: float) -> site_solar.SolarClaim:
        """The try's share of what the site's panels gave while it ran; nothing without a solar source."""
        if self.solar is None:
            return site_solar.SolarClaim(None, None, None, None)
        hours = max((ended_at - started_at).total_seconds(), 1.0) / 3600.0
        return site_solar.claim(self.solar, self.key, self.ready_at, started_at, ended_at, energy_kwh / hours,
                                event.solar_forecast)


def with_expectation(task_id: str, key: TaskTryKey, settings: CarbonSettings, learn: bool) -> CarbonSettings:
    """The settings with what the task does not declare of its duration and energy learned from its last completed
    tries (``history_tries`` of them), and where each came from; a store that cannot be read teaches nothing."""
    history = NO_HISTORY
    if learn and settings.history_tries and not (settings.duration_declared and settings.energy_declared):
        try:
            history = CarbonMetricsHook(settings.metrics_conn_id).get_store().history(
                key.dag_id, key.task_id, settings.history_tries)
        except Exception as error:
            log.warning("carbon: task %r cannot read its earlier tries from the metrics store (%s: %s); it plans on "
                        "the defaults", task_id, type(error).__name__, error)
    expectation = expect(history, duration_declared=settings.duration_declared,
                         energy_declared=settings.energy_declared)
    return replace(settings, expected_duration=expectation.duration or settings.expected_duration,
                   history_energy_kwh=expectation.energy_kwh, expected_from=expectation.expected_from)


def budget_callbacks(task: Any) -> tuple[Any, ...]:
    """The task's ``on_budget_exceeded``, else its DAG's ``default_args``'s; a callable or a list of them."""
    given = (getattr(task, "carbon_options", None) or {}).get("on_budget_exceeded")
    dag = getattr(task, "dag", None)
    if given is None and dag is not None:
        given = (dag.default_args or {}).get("on_budget_exceeded")
    return () if given is None else CALLBACK_PARSERS["on_budget_exceeded"](given)


def resolve_settings(task: Any) -> CarbonSettings:
    """The task's settings: given on it, else in its DAG's ``default_args``, else ``[carbon]``."""
    given = dict(task.carbon_options)
    if getattr(task, "carbon_deadline", None) is not None:
        given["deadline"] = task.carbon_deadline
    dag = getattr(task, "dag", None)
    return resolve(task.task_id, given, dag.default_args if dag is not None else None)


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
