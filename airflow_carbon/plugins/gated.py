"""Meter the tasks a ``CarbonAwareSensor`` or a choice between regions let run, each in its own process, and add what
they drew to the gate's record.

The sensor's record claims no energy of its own. An Airflow listener, called in each task's process, meters a task
that is not carbon-aware itself and has a ``CarbonAwareSensor`` upstream (directly or through other tasks), from
when it starts running until it succeeds, fails or skips itself, with the sensor's ``energy_meter`` and ``pue``.
It accounts the run's emissions on the sensor's sources, against the same run started as much earlier as the
sensor waited (its record's ``delay_s``), and writes the try to ``carbon_gated_energy``; the sensor's record is
rewritten as the sum of its gated tries (``metrics/gated.py``). After a ``CarbonAwareBranchOperator`` the run is
accounted on the chosen region's sources, and on the home region's over the same interval and when ready: the
baseline, and the split of the saving into what the time saved and what the place saved.

The listener is also called in the API server and the scheduler, with their own task instances: it acts only on a
task SDK ``RuntimeTaskInstance``. For a task whose DAG uses no sensor it costs two dictionary look-ups; it never
raises and never fails the task (one WARNING line naming the task). The imports it needs come when it acts.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

RUNTIME_MODULE = "airflow.sdk.execution_time.task_runner"
SENSOR_MODULE = "airflow_carbon.sensors.carbon"
REGIONS_MODULE = "airflow_carbon.operators.regions"
#: Why a gated run's emissions are what they are, as a record's ``reason`` says it.
GATED_REASON = "gated"


@dataclass
class Metered:
    """A gated try being metered: its gate (a sensor or a choice between regions), the gate's settings, its meters
    and when it started."""

    sensor_task_id: str
    settings: Any
    metering: Any
    started_at: datetime
    gate: Any = None


def gating_sensor(task: Any) -> Any | None:
    """The gate of ``task``: of the ``CarbonAwareSensor`` and ``CarbonAwareBranchOperator`` tasks upstream of it
    (directly or through other tasks), the nearest by path length, ties going to the lowest ``task_id``. None when
    there is none, or when ``task`` is carbon-aware itself (it records its own energy).

    A DAG that uses a gate imported its module when it was parsed: without that module loaded, no gate can be
    upstream, and nothing more is imported or walked.
    """
    gate_classes = tuple(getattr(sys.modules[name], class_name) for name, class_name in (
        (SENSOR_MODULE, "CarbonAwareSensor"), (REGIONS_MODULE, "CarbonAwareBranchOperator")) if name in sys.modules)
    if not gate_classes:
        return None
    from airflow_carbon.operators.carbon_aware import CarbonAwareMixin

    if isinstance(task, (*gate_classes, CarbonAwareMixin)):
        return None
    seen = {task.task_id}
    level = list(task.upstream_list)
    while level:
        level = [relative for relative in {t.task_id: t for t in level}.values() if relative.task_id not in seen]
        found = sorted((t for t in level if isinstance(t, gate_classes)), key=lambda t: t.task_id)
        if found:
            return found[0]
        seen.update(t.task_id for t in level)
        level = [upstream for t in level for upstream in t.upstream_list]
    return None


def in_task_process(task_instance: Any) -> bool:
    """Whether this is the task SDK's task instance, in the task's own process (not the server's ORM one)."""
    runner = sys.modules.get(RUNTIME_MODULE)
    return runner is not None and isinstance(task_instance, runner.RuntimeTaskInstance)


def _key(task_instance: Any) -> tuple[Any, ...]:
    map_index = getattr(task_instance, "map_index", None)
    return (task_instance.dag_id, task_instance.task_id, task_instance.run_id,
            -1 if map_index is None else map_index, task_instance.try_number)


def _settings_of(sensor: Any) -> Any:
    """The sensor's settings without its deadline: not rendered in another task's process, and not needed there."""
    from airflow_carbon.operators.runtime import resolve_settings

    view = SimpleNamespace(task_id=sensor.task_id, carbon_options=sensor.carbon_options, carbon_deadline=None,
                           dag=getattr(sensor, "dag", None))
    return resolve_settings(view)


class GatedEnergyListener:
    """Meters gated tasks in their own process; keeps each try's meters until it ends."""

    def __init__(self) -> None:
        self.running: dict[tuple[Any, ...], Metered] = {}

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        try:
            self.start(task_instance)
        except Exception as error:
            _warn(task_instance, "its energy is not metered for the sensor that gated it", error)

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        self.finish_safely(task_instance)

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        self.finish_safely(task_instance)

    @hookimpl
    def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
        self.finish_safely(task_instance)  # it skipped itself after it started: what it drew until then counts

    def start(self, task_instance: Any) -> None:
        if not in_task_process(task_instance):
            return
        sensor = gating_sensor(task_instance.task)
        if sensor is None:
            return
        from airflow_carbon.clock import utcnow
        from airflow_carbon.meters import Metering

        settings = _settings_of(sensor)
        metering = Metering.start(settings.energy_meter, task_instance.task_id)
        self.running[_key(task_instance)] = Metered(sensor.task_id, settings, metering, utcnow(), sensor)

    def finish_safely(self, task_instance: Any) -> None:
        try:
            self.finish(task_instance)
        except Exception as error:
            _warn(task_instance, "its energy could not be added to the sensor that gated it", error)

    def finish(self, task_instance: Any) -> None:
        """Stop the try's meters, account its run and add it to its sensor's record."""
        if not self.running:
            return
        metered = self.running.pop(_key(task_instance), None)
        if metered is None:
            return
        from airflow_carbon.accounting.energy import energy_of
        from airflow_carbon.clock import utcnow
        from airflow_carbon.hooks.metrics import CarbonMetricsHook
        from airflow_carbon.metrics.gated import GatedTry, record_gated, sensor_row
        from airflow_carbon.operators.runtime import source_refs

        ended_at = utcnow()
        components, notes = metered.metering.stop()
        settings = metered.settings
        energy = energy_of(components, run_s=(ended_at - metered.started_at).total_seconds(), pue=settings.pue,
                           energy_kwh=None, power_kw=None, assumed_power_kw=settings.assumed_power_kw, notes=notes)
        dag_id, task_id, run_id, map_index, try_number = _key(task_instance)
        engine = CarbonMetricsHook(settings.metrics_conn_id).get_store().engine
        sensor = sensor_row(engine, dag_id, run_id, metered.sensor_task_id, map_index)
        delay = timedelta(seconds=(sensor or {}).get("delay_s") or 0.0)
        job_id = f"{dag_id}.{task_id}"
        home_g = None
        if hasattr(metered.gate, "region_sources") and sensor is not None and sensor.get("home_region"):
            # A choice between regions: the run in the chosen region; the baseline and the split from the home one.
            by_region = metered.gate.region_sources(settings)
            emissions_g, _ = _emissions(job_id, settings, by_region[sensor["region"]], metered.started_at, ended_at,
                                        energy.energy_kwh, delay)
            home_g, baseline_g = _emissions(job_id, settings, by_region[sensor["home_region"]], metered.started_at,
                                            ended_at, energy.energy_kwh, delay)
        else:
            emissions_g, baseline_g = _emissions(job_id, settings, source_refs(settings), metered.started_at,
                                                 ended_at, energy.energy_kwh, delay)
        row = GatedTry(dag_id, task_id, run_id, map_index, try_number, sensor_task_id=metered.sensor_task_id,
                       sensor_map_index=sensor["map_index"] if sensor else -1,
                       sensor_try_number=sensor["try_number"] if sensor else 1, started_at=metered.started_at,
                       ended_at=ended_at, energy_kwh=energy.energy_kwh, energy_method=energy.method,
                       energy_scope=energy.scope, emissions_g=emissions_g, baseline_emissions_g=baseline_g,
                       home_emissions_g=home_g)
        if not record_gated(engine, row, utcnow()):
            log.warning("carbon: task %r drew %.6f kWh (%s) after sensor %r let it run, but the sensor has no finished "
                        "record in the metrics store; the energy is kept in carbon_gated_energy only", task_id,
                        energy.energy_kwh, energy.method, metered.sensor_task_id)
            return
        log.info("carbon: task %r drew %.6f kWh (%s, scope %s), added to the record of sensor %r", task_id,
                 energy.energy_kwh, energy.method, energy.scope, metered.sensor_task_id)


def _emissions(job_id: str, settings: Any, sources: list[Any], started_at: datetime, ended_at: datetime,
               energy_kwh: float, delay: timedelta) -> tuple[float | None, float | None]:
    """The run's emissions on ``sources``, and had it started ``delay`` earlier (had its gate not waited); None
    where no source covers them."""
    from airflow_carbon.accounting import account
    from airflow_carbon.hooks.sources import load_first

    ready_at = started_at - delay
    reading = load_first(sources, ended_at, ended_at - ready_at + timedelta(hours=1))
    if reading.series is None:
        return None, None
    accounted = account(job_id=job_id, policy=settings.policy, reason=GATED_REASON, ready_at=ready_at,
                        deadline=ended_at, started_at=started_at, ended_at=ended_at, energy_kwh=energy_kwh,
                        intensity=reading.series)
    return accounted.emissions_g, accounted.baseline_emissions_g


def _warn(task_instance: Any, what: str, error: BaseException) -> None:
    log.warning("carbon: task %r: %s (%s: %s)", getattr(task_instance, "task_id", "?"), what, type(error).__name__,
                error)


#: The listener the Carbon plugin registers.
listener = GatedEnergyListener()
