"""What Airflow itself says of a task instance: its state and try, read from the metadata database.

The metrics store says what a try planned; only Airflow knows whether its task instance still waits. A person
may have marked it success, a ``dags test`` may have been interrupted with it queued, a run may have been
deleted: the store's row stays ``deferred`` in each case. The API server reaches the metadata database, so the
Carbon view lists a try as waiting only when Airflow has its task instance deferred at the same try.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.utils.state import TaskInstanceState
from sqlalchemy import select, tuple_

from airflow_carbon.metrics.record import DEFERRED

#: dag_id, run_id, task_id, map_index: how Airflow names a task instance.
TaskInstanceId = tuple[str, str, str, int]

#: The fields a row gains from Airflow, with their types (for the API's models).
AIRFLOW_FIELDS: dict[str, type] = {"airflow_state": str, "airflow_try_number": int}

#: The most (DAG, run, task) triples one query names: a page of waiting tries needs one query.
TASKS_PER_QUERY = 1000


@dataclass(frozen=True)
class AirflowTaskState:
    """A task instance as Airflow's ``task_instance`` table holds it now."""

    state: str | None  #: Airflow's state (``deferred``, ``queued``, ``success``, ...); None before it was scheduled
    try_number: int  #: the try Airflow is at


def instance_id(row: Mapping[str, Any]) -> TaskInstanceId:
    return row["dag_id"], row["run_id"], row["task_id"], row["map_index"]


def task_states(instances: Iterable[TaskInstanceId]) -> dict[TaskInstanceId, AirflowTaskState]:
    """The state and try of each task instance Airflow has; one that it has not (deleted, never made) is absent.

    One query per ``TASKS_PER_QUERY`` tasks, whatever their number of mapped instances. It blocks: call it in a
    thread, as the API's routes do.
    """
    wanted = set(instances)
    if not wanted:
        return {}
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session

    tasks = sorted({instance[:3] for instance in wanted})
    found: dict[TaskInstanceId, AirflowTaskState] = {}
    with create_session(scoped=False) as session:
        for first in range(0, len(tasks), TASKS_PER_QUERY):
            query = (select(TI.dag_id, TI.run_id, TI.task_id, TI.map_index, TI.state, TI.try_number)
                     .where(tuple_(TI.dag_id, TI.run_id, TI.task_id).in_(tasks[first:first + TASKS_PER_QUERY])))
            for dag_id, run_id, task_id, map_index, state, try_number in session.execute(query):
                key = (dag_id, run_id, task_id, map_index)
                if key in wanted:
                    found[key] = AirflowTaskState(None if state is None else str(state), int(try_number or 0))
    return found


def with_airflow_state(rows: Iterable[Mapping[str, Any]], states: Mapping[TaskInstanceId, AirflowTaskState]
                       ) -> list[dict[str, Any]]:
    """Each row with its task instance's state and try in Airflow now; both None when Airflow has no such instance."""
    out = []
    for row in rows:
        found = states.get(instance_id(row))
        out.append(dict(row) | {"airflow_state": found.state if found else None,
                                "airflow_try_number": found.try_number if found else None})
    return out


def waiting(row: Mapping[str, Any]) -> bool:
    """A try waits when the store has it deferred and Airflow has its task instance deferred at that same try."""
    return (row.get("state") == DEFERRED and row.get("airflow_state") == TaskInstanceState.DEFERRED.value
            and row.get("airflow_try_number") == row.get("try_number"))
