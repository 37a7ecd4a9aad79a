"""The Carbon plugin's JSON API, mounted at ``/carbon/api`` in Airflow's API server.

Every route needs an Airflow user (``CurrentUser``: 401 without a token) and returns rows of the
DAGs that user may read only (``/solar`` adds the totals of the sites those DAGs' tasks named). A try is
shown as waiting only while Airflow's own metadata database has its task instance deferred at that try.
Database work and the simulator run in threads, so the API server's event loop never waits on them.
This module holds the routes over the history and gathers the others (``intensity``, ``simulation``)
into one router.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError

from airflow_carbon.clock import utcnow
from airflow_carbon.metrics import queries
from airflow_carbon.metrics.solar import SolarLedger
from airflow_carbon.plugins import airflow_state, control, intensity, simulation
from airflow_carbon.plugins.auth import CurrentUser, readable_dag_ids
from airflow_carbon.plugins.common import Store, in_thread, parse_map_index, query_name
from airflow_carbon.plugins.models import DeferredTask, HistoryDay, SolarDay, TaskRun, TaskTry

router = APIRouter(tags=["Carbon"])


# -- query parameters ---------------------------------------------------------------------------

def history_filters(
    dag_id: Annotated[str | None, Query(description="only this DAG")] = None,
    task_id: Annotated[str | None, Query(description="only this task id")] = None,
    region: Annotated[str | None, Query(description="only this grid region")] = None,
    start: Annotated[date | None, Query(description="first UTC day, YYYY-MM-DD (included)")] = None,
    end: Annotated[date | None, Query(description="last UTC day, YYYY-MM-DD (included)")] = None,
) -> queries.Filters:
    names = {"dag_id": query_name(dag_id, "dag_id"), "task_id": query_name(task_id, "task_id"),
             "region": query_name(region, "region")}
    try:
        return queries.Filters(**names, start=start, end=end)
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None


FiltersDep = Annotated[queries.Filters, Depends(history_filters)]


async def reconciled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their task instances' state and try in Airflow, read in one query off the event loop."""
    try:
        states = await in_thread(airflow_state.task_states, [airflow_state.instance_id(row) for row in rows])
    except SQLAlchemyError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"Airflow's metadata database did not answer: {type(error).__name__}") from None
    return airflow_state.with_airflow_state(rows, states)


# -- routes -------------------------------------------------------------------------------------

@router.get("/deferred", response_model=list[DeferredTask], summary="Tasks waiting for a cleaner grid")
async def get_deferred(user: CurrentUser, store: Store, dag_id: str | None = None, task_id: str | None = None
                       ) -> list[dict[str, Any]]:
    """Tries waiting now, soonest planned start first, each with its latest plan.

    A try is listed while the store has it deferred and Airflow has its task instance deferred at that same try:
    not once it was marked, cleared, queued or deleted in Airflow, whatever the store still says.
    """
    dag_id, task_id = query_name(dag_id, "dag_id"), query_name(task_id, "task_id")
    dag_ids = await readable_dag_ids(user)
    rows = await in_thread(queries.deferred, store.engine, dag_ids, utcnow(), dag_id=dag_id, task_id=task_id)
    return [row for row in await reconciled(rows) if airflow_state.waiting(row)]


@router.get("/history", response_model=list[HistoryDay], summary="Completed tasks per DAG and UTC day")
async def get_history(user: CurrentUser, store: Store, filters: FiltersDep) -> list[dict[str, Any]]:
    dag_ids = await readable_dag_ids(user)
    return await in_thread(queries.history, store.engine, dag_ids, filters)


@router.get("/history.csv", response_class=Response, summary="The history as a CSV download",
            responses={200: {"content": {"text/csv": {}}}})
async def get_history_csv(user: CurrentUser, store: Store, filters: FiltersDep) -> Response:
    dag_ids = await readable_dag_ids(user)
    rows = await in_thread(queries.history, store.engine, dag_ids, filters)
    parts = ["carbon-history", filters.dag_id, filters.task_id, filters.region,
             filters.start.isoformat() if filters.start else None, filters.end.isoformat() if filters.end else None]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(part for part in parts if part))
    return Response(queries.history_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


@router.get("/solar", response_model=list[SolarDay], summary="On-site solar per site and UTC day")
async def get_solar(user: CurrentUser, store: Store, filters: FiltersDep) -> list[dict[str, Any]]:
    """Each site's output (measured or forecast) beside the solar its tries used, per UTC day.

    The sites are those the tasks of the DAGs you may read named, narrowed by `dag_id`, `task_id` and `region`;
    `start` and `end` bound the days. A site's `output_kwh` and `used_kwh` are its totals, tries of every DAG
    included: the panels are shared, and what other tries used is what yours could not have. `tasks_run`,
    `solar_kwh` and `grid_kwh` count only the completed tries you may read that the filters select, from their
    records, per day each started (as the history does).
    """
    dag_ids = await readable_dag_ids(user)
    return await in_thread(queries.solar, store.engine, SolarLedger(store), dag_ids, filters)


@router.get("/tasks", response_model=list[TaskRun], summary="Completed task tries, most recent, oldest first")
async def get_tasks(user: CurrentUser, store: Store, filters: FiltersDep,
                    limit: Annotated[int, Query(ge=1, le=queries.MAX_TASK_LIMIT)] = queries.DEFAULT_TASK_LIMIT
                    ) -> list[dict[str, Any]]:
    dag_ids = await readable_dag_ids(user)
    return await in_thread(queries.tasks, store.engine, dag_ids, filters, limit)


@router.get("/decision/{dag_id}/{run_id}/{task_id}", response_model=list[TaskTry],
            summary="Every try of one task instance")
async def get_decision(user: CurrentUser, store: Store, dag_id: str, run_id: str, task_id: str,
                       map_index: str | None = "-1") -> list[dict[str, Any]]:
    """Each try with its record and, from Airflow, the state and try its task instance is at now."""
    index = parse_map_index(map_index)
    for field, value in (("dag_id", dag_id), ("run_id", run_id), ("task_id", task_id)):
        query_name(value, field)  # a 400 for what no row can hold
    dag_ids = await readable_dag_ids(user)
    rows = await in_thread(queries.decision, store.engine, dag_ids, dag_id, run_id, task_id, index, utcnow())
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no carbon record of task {task_id!r} (map index {index}) in run {run_id!r} of DAG "
                            f"{dag_id!r}, or you may not read that DAG")
    return await reconciled(rows)


router.include_router(intensity.router)
router.include_router(simulation.router)
router.include_router(control.router)
