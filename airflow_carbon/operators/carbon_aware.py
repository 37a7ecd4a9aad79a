"""Any operator, made carbon-aware: it defers until the planner says run, then its own ``execute`` runs.

``carbon_aware(op, ...)`` gives an operator instance a subclass of its own class with
``CarbonAwareMixin`` in front, so its templated fields, its ``execute`` and its return
value are untouched; the decorators build their operators from the same mixin.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

from airflow.sdk import BaseOperator

from airflow_carbon.operators.runtime import CarbonTaskRun, utcnow
from airflow_carbon.plugins.links import CarbonDecisionLink
from airflow_carbon.settings import SETTING_NAMES, check_given, resolve


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
        run = self._carbon_run(context)
        return self._carbon_work(context, run, run.wait_if_needed(self))

    def carbon_resume(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """Where the task resumes when its trigger fires: run the work, then record it."""
        event = event or {}
        return self._carbon_work(context, self._carbon_run(context, event), event)

    def _carbon_run(self, context: Any, event: dict[str, Any] | None = None) -> CarbonTaskRun:
        given = dict(self.carbon_options)
        if self.carbon_deadline is not None:
            given["deadline"] = self.carbon_deadline
        dag = getattr(self, "dag", None)
        settings = resolve(self.task_id, given, dag.default_args if dag is not None else None)
        return CarbonTaskRun.start(self, context, settings, event)

    def _carbon_work(self, context: Any, run: CarbonTaskRun, event: dict[str, Any]) -> Any:
        started_at = utcnow()
        result = super().execute(context)
        run.finish(context, event, started_at, utcnow())
        return result


def set_carbon_options(task: Any, options: Mapping[str, Any]) -> None:
    """Check the options, and the DAG's ``default_args`` that are carbon settings, now (DAG parse time) and keep
    them; ``deadline`` stays templated."""
    options = dict(options)
    check_given(task.task_id, options)
    dag = getattr(task, "dag", None)
    if dag is not None and dag.default_args:
        check_given(task.task_id, {name: value for name, value in dag.default_args.items() if name in SETTING_NAMES})
    task.carbon_deadline = options.pop("deadline", None)
    task.carbon_options = options


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


def wrap_operator(operator: BaseOperator, options: Mapping[str, Any]) -> BaseOperator:
    """Make an operator instance carbon-aware in place and return it."""
    if not isinstance(operator, BaseOperator):
        raise TypeError(f"carbon_aware() takes an operator instance or a @task function, got {operator!r}; "
                        "for a mapped classic operator, wrap it before .partial() is not possible: "
                        "use @task.carbon_aware with .expand() instead")
    operator.__class__ = carbon_aware_class(type(operator))
    set_carbon_options(operator, options)
    return operator
