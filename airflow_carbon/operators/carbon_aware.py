"""Any operator, made carbon-aware: it defers until the planner says run, then its own ``execute`` runs.

``carbon_aware(op, ...)`` gives an operator instance a subclass of its own class with
``CarbonAwareMixin`` in front, so its templated fields, its ``execute`` and its return
value are untouched; ``carbon_aware(Op.partial(...).expand(...))`` gives a mapped operator the
same class, which every mapped instance is built from; the decorators build their operators from
the same mixin.

An operator that defers itself (``deferrable=True``) keeps its own trigger, timeout and kwargs;
only where it resumes changes, so its try is recorded when its own resume method returns or fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache, partial
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR
from airflow.sdk.definitions.mappedoperator import MappedOperator
from airflow.sdk.exceptions import (
    AirflowRescheduleException,
    AirflowSkipException,
    AirflowTaskTimeout,
    TaskDeferred,
)

from airflow_carbon.clock import utcnow
from airflow_carbon.errors import CarbonError
from airflow_carbon.links import CarbonDecisionLink
from airflow_carbon.operators.runtime import CarbonTaskRun, resolve_settings
from airflow_carbon.settings import check_task
from airflow_carbon.triggers.event import CarbonEvent
from airflow_carbon.units import parse_instant

log = logging.getLogger(__name__)

#: Where a wrapped operator that deferred itself resumes, in place of its own method.
WORK_RESUME_METHOD = "carbon_resume_work"
#: The XCom of a try whose work deferred itself: its own resume method, when the work started, the
#: carbon event. XCom, not the deferral's kwargs: Airflow keeps a try's XComs across its deferrals,
#: while ``dags test`` drops the kwargs when the trigger fires and a trigger timeout replaces them.
WORK_XCOM_KEY = "carbon_work"
#: The note of a try whose work deferred itself: its energy is not metered.
UNMETERED_DEFERRAL = ("the work deferred itself to its own trigger; what it drew there and in what it waited on "
                      "was not metered, so its energy is the declared or assumed figure")


class CarbonAwareMixin:
    """Plans before the wrapped ``execute`` and records after it; defers in between when it should wait.

    Classes come from ``carbon_aware_class``, whose ``__init__`` takes

    :param carbon_options: the task's carbon settings (``max_delay``, ``deadline``, ``region``,
        ``source``, ``policy``, ``energy_kwh`` or ``power_kw``, ``expected_duration``,
        ``min_saving_pct``, ...); what is not given comes from ``default_args``, then ``[carbon]``.
    """

    carbon_options: dict[str, Any]
    carbon_deadline: datetime | str | None

    def execute(self, context: Any) -> Any:
        run = CarbonTaskRun.start(self, context, resolve_settings(self))
        event = run.wait_if_needed(self)
        return self._carbon_work(context, run, event, utcnow(), partial(super().execute, context))

    def carbon_resume(self, context: Any, event: dict[str, Any]) -> Any:
        """Where the task resumes when its trigger fires: run the work, then record it."""
        carbon_event = CarbonEvent.from_json(self.task_id, event)
        return self._carbon_work(context, CarbonTaskRun.resume(self, context, carbon_event), carbon_event, utcnow(),
                                 partial(super().execute, context))

    def carbon_resume_work(self, context: Any, **kwargs: Any) -> Any:
        """Where a wrapped operator that deferred itself resumes: its own method, with what Airflow passes it."""
        work = self._carbon_deferred_work(context)
        if work is None:
            raise CarbonError(f"task {self.task_id!r} resumed its own work, but its {WORK_XCOM_KEY!r} XCom, which "
                              "names the method to resume, is gone")
        if work["ended_by_trigger"]:
            resume: Callable[[], Any] = _ended_by_its_trigger
        else:
            resume = partial(getattr(self, work["method"]), context, **kwargs)
        return self._carbon_resume_work(context, work, resume)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """A deferred work whose own trigger failed or timed out is recorded as failed.

        Airflow then resumes the task with ``__fail__`` and the failure in place of the kwargs.
        """
        resume = partial(super().resume_execution, next_method, next_kwargs, context)  # type: ignore[misc]
        if next_method == TRIGGER_FAIL_REPR and (work := self._carbon_deferred_work(context)) is not None:
            return self._carbon_resume_work(context, work, resume)
        return resume()

    def _carbon_resume_work(self, context: Any, work: dict[str, Any], resume: Callable[[], Any]) -> Any:
        """Go on with the work on the carbon decision and start it deferred with, so ready time and deadline hold."""
        event = CarbonEvent.from_json(self.task_id, work["event"])
        return self._carbon_work(context, CarbonTaskRun.resume(self, context, event), event,
                                 parse_instant(work["started_at"]), resume, metered=False)

    def _carbon_work(self, context: Any, run: CarbonTaskRun, event: CarbonEvent, started_at: datetime,
                     work: Callable[[], Any], *, metered: bool = True) -> Any:
        """Run (or resume) the work under its meters and record the try when it ends, whether it succeeded or failed.

        ``metered`` is false for work resumed from its own deferral: what it drew elsewhere (in the triggerer, in the
        service it waited on) no meter here saw, so its energy is the declared or assumed figure, and says so.
        """
        event = run.begin(event, started_at)
        metering = run.meter() if metered else None
        notes = () if metered else (UNMETERED_DEFERRAL,)

        def finish(**kwargs: Any) -> None:
            ended_at = utcnow()
            energy = run.energy(metering, started_at, ended_at, notes)
            run.finish(context, event, started_at, ended_at, energy=energy, **kwargs)

        try:
            result = work()
        except TaskDeferred as deferral:
            if metering is not None:
                metering.stop()
            raise self._carbon_defer_work(context, deferral, event, started_at) from None
        except AirflowRescheduleException:  # a sensor in reschedule mode: the try goes on later
            if metering is not None:
                metering.stop()
            raise
        except AirflowSkipException:  # the work ended and chose to skip: not a failure
            finish()
            raise
        except (Exception, AirflowTaskTimeout):
            try:
                finish(failed=True)
            except Exception:  # the work's own error is the one to show
                log.exception("carbon: the failed try of %r could not be recorded", self.task_id)
            raise
        finish()
        return result

    def _carbon_defer_work(self, context: Any, deferral: TaskDeferred, event: CarbonEvent,
                           started_at: datetime) -> TaskDeferred:
        """The work's own deferral (same trigger, timeout and kwargs), resuming in ``carbon_resume_work``.

        A trigger that would end the task itself (``end_from_trigger``) resumes it instead, so the
        try is recorded; the task then ends as that trigger would have ended it.
        """
        trigger = deferral.trigger
        ended_by_trigger = bool(getattr(trigger, "end_from_trigger", False))
        if ended_by_trigger:
            trigger.end_from_trigger = False
        context["ti"].xcom_push(key=WORK_XCOM_KEY, value={
            "method": deferral.method_name, "ended_by_trigger": ended_by_trigger,
            "started_at": started_at.isoformat(), "event": event.to_json(),
        })
        return TaskDeferred(trigger=trigger, method_name=WORK_RESUME_METHOD, kwargs=deferral.kwargs,
                            timeout=deferral.timeout)

    def _carbon_deferred_work(self, context: Any) -> dict[str, Any] | None:
        ti = context["ti"]
        return ti.xcom_pull(task_ids=ti.task_id, key=WORK_XCOM_KEY, map_indexes=ti.map_index)


def _ended_by_its_trigger() -> None:
    """A trigger that ends its task ends it successfully, with nothing returned: so does the resumed task."""


def check_carbon_options(task_id: str, dag: Any, options: Mapping[str, Any]) -> None:
    """Check the options, and the DAG's ``default_args`` that are carbon settings, now: at DAG parse time."""
    check_task(task_id, options, dag.default_args if dag is not None else None)


def set_carbon_options(task: Any, options: Mapping[str, Any]) -> None:
    """Check the options and keep them; ``deadline`` stays templated.

    The task may not start in the triggerer (``start_from_trigger``): its carbon decision comes first.
    """
    options = dict(options)
    check_carbon_options(task.task_id, getattr(task, "dag", None), options)
    task.carbon_deadline = options.pop("deadline", None)
    task.carbon_options = options
    task.start_from_trigger = False


@cache
def carbon_aware_class(base: type[BaseOperator]) -> type[BaseOperator]:
    """``base`` with ``CarbonAwareMixin`` in front; one class per base, so DAGs serialize alike."""
    if issubclass(base, CarbonAwareMixin):
        return base

    def __init__(self: Any, *args: Any, carbon_options: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super(cls, self).__init__(*args, **kwargs)
        set_carbon_options(self, carbon_options or {})

    # Defined in the class body so Airflow's operator metaclass wraps it like any operator's __init__.
    cls = type(
        f"CarbonAware{base.__name__}",
        (CarbonAwareMixin, base),
        {
            "__module__": __name__,
            "__init__": __init__,
            "template_fields": (*base.template_fields, "carbon_deadline"),
            "operator_extra_links": (*base.operator_extra_links, CarbonDecisionLink()),
            "__doc__": f"{base.__name__} that waits for a cleaner grid before it runs (airflow-carbon).",
        },
    )
    return cls


def wrap_operator(operator: BaseOperator | MappedOperator, options: Mapping[str, Any]) -> BaseOperator | MappedOperator:
    """Make an operator instance, or a mapped classic operator, carbon-aware in place and return it."""
    if isinstance(operator, MappedOperator):
        return _wrap_mapped(operator, options)
    if not isinstance(operator, BaseOperator):
        raise TypeError(f"carbon_aware() takes an operator instance, a mapped operator or a @task function, "
                        f"got {operator!r}")
    operator.__class__ = carbon_aware_class(type(operator))
    set_carbon_options(operator, options)
    return operator


def _wrap_mapped(mapped: MappedOperator, options: Mapping[str, Any]) -> MappedOperator:
    """Every mapped instance is built from ``operator_class`` with ``partial_kwargs``: give it the carbon class.

    The worker parses the DAG file again, so it builds the same class; ``@task.carbon_aware``'s
    ``.expand()`` reaches the same state through ``partial``.
    """
    check_carbon_options(mapped.task_id, mapped.dag, options)
    cls = carbon_aware_class(mapped.operator_class)
    mapped.operator_class = cls
    mapped.partial_kwargs["carbon_options"] = dict(options)
    mapped.template_fields = cls.template_fields
    mapped.operator_extra_links = cls.operator_extra_links
    mapped.task_type = cls.__name__
    mapped._task_module = cls.__module__
    mapped._operator_name = getattr(cls, "custom_operator_name", cls.__name__)
    mapped.start_from_trigger = False
    return mapped
