"""People in control, through the Carbon API: release a waiting task, switch eco-mode off, budgets, the audit.

Mounted with the other routes at ``/carbon/api``. Every route needs an Airflow user (401 without one). A change
needs edit rights through Airflow's auth manager, checked before anything is written (403 otherwise): a release
those on the DAG's task instances, a switch or a budget those on the DAG, a switch for every DAG those on every
DAG. What is read is narrowed to the DAGs the user may read (the global switch and global audit entries are
everyone's). The store (``metrics.control``) writes each change and its audit entry in one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from airflow.utils.state import TaskInstanceState
from fastapi import APIRouter, Body, HTTPException, Query, status
from pydantic import BaseModel, Field

from airflow_carbon.clock import utcnow
from airflow_carbon.metrics import control as store_control
from airflow_carbon.plugins import airflow_state
from airflow_carbon.plugins.auth import CurrentUser, readable_dag_ids, require_edit
from airflow_carbon.plugins.common import Store, in_thread, parse_map_index, query_name

router = APIRouter(tags=["Carbon control"])

#: The longest reason kept with a change: enough for a sentence and a ticket link.
MAX_REASON_LENGTH = 1000
MAX_WINDOWS = 20
MAX_WINDOW_LENGTH = 200
MAX_AUDIT_LIMIT = 1000

Reason = Annotated[str | None, Field(max_length=MAX_REASON_LENGTH, description="why, kept in the audit log")]
Window = Annotated[str, Field(max_length=MAX_WINDOW_LENGTH)]


# -- request and answer shapes --------------------------------------------------------------------

class ReleaseRequest(BaseModel):
    reason: Reason = None


class EcoOffRequest(BaseModel):
    dag_id: str | None = Field(None, description="the DAG; null for every DAG")
    until: datetime | None = Field(None, description="ISO 8601 instant with its zone; null: until switched on again")
    windows: list[Window] = Field(default_factory=list, max_length=MAX_WINDOWS, description=(
        'recurring UTC windows: "weekdays 08:00-10:00", "daily 22:00-02:00", "mon,wed 09:00-11:00" or '
        '"0 8 * * 1-5 for 2h"; none: off all the time (until `until`)'))
    reason: Reason = None


class EcoOnRequest(BaseModel):
    dag_id: str | None = Field(None, description="the DAG; null for every DAG")
    reason: Reason = None


class BudgetRequest(BaseModel):
    grams: float = Field(allow_inf_nan=False, description="grams of CO2e the DAG may emit per period")
    period: str = Field(description="day, week (from Monday) or month, in UTC")
    strict: bool = Field(False, description="once over the budget, plan with the stricter policy")
    reason: Reason = None


class Release(BaseModel):
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    released_by: str
    released_at: datetime
    reason: str | None = None


class EcoSwitch(BaseModel):
    """Carbon-awareness switched off for one DAG or (``dag_id`` null) for every DAG."""

    dag_id: str | None
    until: datetime | None = Field(description="when the switch ends; null: when switched on again")
    windows: list[str] = Field(description="recurring UTC windows it holds in; empty: all the time")
    set_by: str
    set_at: datetime
    reason: str | None = None
    active: bool = Field(description="carbon-awareness is off right now in this scope")


class EcoState(BaseModel):
    now: datetime
    off_everywhere: bool = Field(description="the switch for every DAG is active now")
    switches: list[EcoSwitch] = Field(description="the switch for every DAG and those of the DAGs you may read")


class Cleared(BaseModel):
    dag_id: str | None
    cleared: bool = Field(description="false when there was nothing to clear")


class BudgetStatus(BaseModel):
    dag_id: str
    budget_g: float
    period: str
    period_start: datetime
    period_end: datetime
    spent_g: float = Field(description="emissions of the DAG's tries that ended in the period")
    projected_g: float | None = Field(description="spent so far carried at the period's pace to its end")
    spent_pct: float | None = None
    over: bool
    strict: bool
    source: str = Field(description='"api" (set here or by the CLI) or "dag code"')
    set_by: str | None = None
    set_at: datetime | None = None
    reason: str | None = None


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str = Field(description="release, eco_off, eco_on, budget_set, budget_clear, or budget_exceeded (by "
                                    "airflow-carbon itself, once per period)")
    dag_id: str | None = Field(description="null: every DAG")
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    reason: str | None = None
    detail: dict[str, Any] | None = None


# -- checks ---------------------------------------------------------------------------------------

def required_name(text: str, field: str, hint: str = "") -> str:
    """A name that must be there: an empty one is refused, never read as "not given" (every DAG)."""
    name = query_name(text, field)
    if name is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{field}: empty{hint}")
    return name


def body_dag_id(dag_id: str | None) -> str | None:
    """A DAG id from a body: null means every DAG."""
    return None if dag_id is None else required_name(dag_id, "dag_id", "; give null for every DAG")


def aware(instant: datetime | None, field: str) -> datetime | None:
    if instant is not None and instant.utcoffset() is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"{field}: {instant.isoformat()} has no time zone; give one, such as Z for UTC")
    return instant


async def store_call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function`` in a thread; the store's refusals become 400 (bad input) and 404 (nothing waiting)."""
    try:
        return await in_thread(function, *args, **kwargs)
    except store_control.ControlInputError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    except store_control.NotWaitingError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


def _set_budget(engine: Any, dag_id: str, request: BudgetRequest, actor: str, now: datetime) -> dict[str, Any]:
    store_control.set_budget(engine, dag_id, grams=request.grams, period=request.period, strict=request.strict,
                             actor=actor, reason=request.reason, now=now)
    return store_control.budget_status(engine, [dag_id], now)[0]


# -- routes ---------------------------------------------------------------------------------------

@router.post("/release/{dag_id}/{run_id}/{task_id}", response_model=Release,
             summary="Run a waiting task instance now", responses={403: {}, 404: {}})
async def post_release(user: CurrentUser, store: Store, dag_id: str, run_id: str, task_id: str,
                       map_index: str | None = "-1", body: Annotated[ReleaseRequest | None, Body()] = None
                       ) -> dict[str, Any]:
    """Its trigger fires with reason `released` at the next poll; its record says who released it, when and why.

    Needs edit rights on the DAG's task instances. 404 when Airflow has not deferred it, or the store holds no
    waiting try of it. Releasing twice keeps the first release.
    """
    index = parse_map_index(map_index)
    dag_id, run_id, task_id = (required_name(value, field) for field, value in
                               (("dag_id", dag_id), ("run_id", run_id), ("task_id", task_id)))
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    await require_edit(user, dag_id, "release task instances", DagAccessEntity.TASK_INSTANCE)
    found = (await in_thread(airflow_state.task_states, [(dag_id, run_id, task_id, index)])).get(
        (dag_id, run_id, task_id, index))
    if found is None or found.state != TaskInstanceState.DEFERRED.value:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"task {task_id!r} (map index {index}) of run {run_id!r} of DAG {dag_id!r} is not "
                            f"waiting: Airflow has it {found.state if found else 'nowhere'}")
    return await store_call(store_control.release, store.engine, dag_id, run_id, task_id, index,
                            actor=user.get_name(), reason=body.reason if body else None, now=utcnow())


@router.get("/eco", response_model=EcoState, summary="Where carbon-awareness is switched off")
async def get_eco(user: CurrentUser, store: Store) -> dict[str, Any]:
    dag_ids = await readable_dag_ids(user)
    now = utcnow()
    switches = await in_thread(store_control.eco_switches, store.engine, now)
    switches = [switch for switch in switches if switch["dag_id"] is None or switch["dag_id"] in dag_ids]
    return {"now": now, "switches": switches,
            "off_everywhere": any(switch["dag_id"] is None and switch["active"] for switch in switches)}


@router.post("/eco/off", response_model=EcoSwitch, summary="Switch carbon-awareness off", responses={403: {}})
async def post_eco_off(user: CurrentUser, store: Store, body: EcoOffRequest) -> dict[str, Any]:
    """While the switch is active, carbon-aware tasks run now (reason `eco_off`) and waiting ones are released.

    For one DAG it needs edit rights on that DAG; for every DAG (`dag_id` null), edit rights on every DAG.
    Setting it again replaces the scope's switch.
    """
    dag_id = body_dag_id(body.dag_id)
    until = aware(body.until, "until")
    await require_edit(user, dag_id, "switch eco-mode off")
    return await store_call(store_control.set_eco_off, store.engine, dag_id, until=until, windows=list(body.windows),
                            actor=user.get_name(), reason=body.reason, now=utcnow())


@router.post("/eco/on", response_model=Cleared, summary="Switch carbon-awareness back on", responses={403: {}})
async def post_eco_on(user: CurrentUser, store: Store, body: EcoOnRequest) -> dict[str, Any]:
    dag_id = body_dag_id(body.dag_id)
    await require_edit(user, dag_id, "switch eco-mode on")
    cleared = await store_call(store_control.clear_eco_off, store.engine, dag_id, actor=user.get_name(),
                               reason=body.reason, now=utcnow())
    return {"dag_id": dag_id, "cleared": cleared}


@router.get("/budgets", response_model=list[BudgetStatus], summary="Carbon budgets: spent, projected, over")
async def get_budgets(user: CurrentUser, store: Store) -> list[dict[str, Any]]:
    dag_ids = await readable_dag_ids(user)
    return await in_thread(store_control.budget_status, store.engine, dag_ids, utcnow())


@router.put("/budgets/{dag_id}", response_model=BudgetStatus, summary="Set a DAG's carbon budget",
            responses={403: {}})
async def put_budget(user: CurrentUser, store: Store, dag_id: str, body: BudgetRequest) -> dict[str, Any]:
    """Replaces the budget in force, from DAG code too. Never a cap: no task misses its deadline for it."""
    name = required_name(dag_id, "dag_id")
    await require_edit(user, name, "set a carbon budget")
    return await store_call(_set_budget, store.engine, name, body, user.get_name(), utcnow())


@router.delete("/budgets/{dag_id}", response_model=Cleared, summary="Clear a DAG's carbon budget",
               responses={403: {}})
async def delete_budget(user: CurrentUser, store: Store, dag_id: str,
                        reason: Annotated[str | None, Query(max_length=MAX_REASON_LENGTH)] = None) -> dict[str, Any]:
    name = required_name(dag_id, "dag_id")
    await require_edit(user, name, "clear a carbon budget")
    cleared = await store_call(store_control.clear_budget, store.engine, name, actor=user.get_name(),
                               reason=reason, now=utcnow())
    return {"dag_id": name, "cleared": cleared}


@router.get("/audit", response_model=list[AuditEntry], summary="Who released, switched or budgeted what, and why")
async def get_audit(user: CurrentUser, store: Store, dag_id: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_LIMIT)] = 200) -> list[dict[str, Any]]:
    """Newest first: the entries of the DAGs you may read and those for every DAG."""
    dag_ids = await readable_dag_ids(user)
    return await in_thread(store_control.audit, store.engine, dag_ids, dag_id=query_name(dag_id, "dag_id"),
                           limit=limit)
