"""``@carbon_aware`` on a ``@task``, ``carbon_aware(operator)``, the registered ``@task.carbon_aware``, and
``@task.carbon_aware_branch``, a choice between regions.

All are thin: the behaviour is ``CarbonAwareMixin`` on the operator class, or ``CarbonAwareBranchOperator``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attr
from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk import BaseOperator
from airflow.sdk.bases.decorator import task_decorator_factory
from airflow.sdk.definitions.mappedoperator import MappedOperator

from airflow_carbon.operators.carbon_aware import carbon_aware_class, wrap_operator
from airflow_carbon.operators.regions import CarbonAwareBranchPythonOperator
from airflow_carbon.settings import OPTION_NAMES, check_arguments, check_given


def _is_task_decorator(target: Any) -> bool:
    return getattr(type(target), "_airflow_is_task_decorator", False) and hasattr(target, "operator_class")


def carbon_aware(target: Any = None, /, **options: Any) -> Any:
    """Make a task wait for a cleaner grid, up to its deadline.

    Stack it on ``@task`` (``@carbon_aware(max_delay=timedelta(hours=4))`` or bare
    ``@carbon_aware``), or call it on any operator instance:
    ``carbon_aware(BashOperator(...), max_delay=timedelta(minutes=30))``, including one that
    defers itself, or on a mapped one: ``carbon_aware(BashOperator.partial(...).expand(...))``.
    Settings not given come from the DAG's ``default_args``, then from ``[carbon]`` in airflow.cfg.
    """
    if target is None:
        return lambda decorated: carbon_aware(decorated, **options)
    if isinstance(target, BaseOperator | MappedOperator):
        return wrap_operator(target, options)
    if _is_task_decorator(target):
        check_given(target.kwargs.get("task_id", target.function.__name__), options)
        return attr.evolve(target, operator_class=carbon_aware_class(target.operator_class),
                           kwargs={**target.kwargs, "carbon_options": options})
    if callable(target):
        raise TypeError(f"@carbon_aware goes on a @task function or an operator instance; {target!r} is a plain "
                        "function: put @task under @carbon_aware, or use @task.carbon_aware")
    raise TypeError(f"carbon_aware() takes an operator instance, a mapped operator or a @task function, "
                    f"got {target!r}")


def carbon_aware_task(python_callable: Callable | None = None, multiple_outputs: bool | None = None, **kwargs: Any):
    """``@task.carbon_aware(max_delay=..., region=..., energy_kwh=...)``: a Python task that waits for clean power.

    An argument that is neither a carbon setting nor the operator's is refused as a misspelled carbon setting.
    """
    options = {name: kwargs.pop(name) for name in OPTION_NAMES if name in kwargs}
    operator_class = carbon_aware_class(_PythonDecoratedOperator)

    def decorate(function: Any) -> Any:
        check_arguments(kwargs.get("task_id") or getattr(function, "__name__", repr(function)), kwargs,
                        operator_class)
        return task_decorator_factory(
            python_callable=function,
            multiple_outputs=multiple_outputs,
            decorated_operator_class=operator_class,
            carbon_options=options,
            **kwargs,
        )

    return decorate if python_callable is None else decorate(python_callable)


class _CarbonAwareBranchDecoratedOperator(_PythonDecoratedOperator, CarbonAwareBranchPythonOperator):
    """The function of ``@task.carbon_aware_branch``: it may narrow the regions before the choice plans them."""

    template_fields = CarbonAwareBranchPythonOperator.template_fields
    custom_operator_name = "@task.carbon_aware_branch"


def carbon_aware_branch_task(python_callable: Callable | None = None, **kwargs: Any):
    """``@task.carbon_aware_branch(regions={"FR": "evaluate_fr", "DE": "evaluate_de"}, max_delay=...)``: wait for the
    best (region, start), then follow that region's task only.

    The function runs first; it returns None to keep every region, or the regions this run may use.
    """
    return task_decorator_factory(python_callable=python_callable, multiple_outputs=False,
                                  decorated_operator_class=_CarbonAwareBranchDecoratedOperator, **kwargs)
