"""Every page and endpoint of the Carbon plugin goes through Airflow's own auth manager.

Plugin FastAPI apps are not protected by Airflow on their own: ``CurrentUser`` resolves the
caller from the JWT (the ``Authorization: Bearer`` header, or the UI's session cookie) and
answers 401 without one; ``readable_dag_ids`` is what the user may read, ``require_edit`` what
they may change (a release, an eco-mode switch, a budget).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, HTTPException, status

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

CurrentUser = Annotated[BaseUser, Depends(get_user)]


async def readable_dag_ids(user: BaseUser) -> set[str]:
    """The DAGs ``user`` may read; the auth manager queries the metadata database, so off the event loop."""
    from airflow.api_fastapi.app import get_auth_manager

    return await asyncio.to_thread(get_auth_manager().get_authorized_dag_ids, user=user, method="GET")


def may_edit(user: BaseUser, dag_id: str | None, access_entity: DagAccessEntity | None = None) -> bool:
    """Whether the auth manager lets ``user`` change ``dag_id`` (or its ``access_entity``); None: every DAG.

    The DAG's team goes with it, as Airflow's own routes send it, so that a multi-team auth manager can refuse a
    user of another team. Without details the question is Airflow's "may edit DAGs" in general.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.models.dag import DagModel

    details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)) if dag_id is not None else None
    return get_auth_manager().is_authorized_dag(method="PUT", access_entity=access_entity, details=details, user=user)


async def require_edit(user: BaseUser, dag_id: str | None, what: str,
                       access_entity: DagAccessEntity | None = None) -> None:
    """403, before anything is written, unless ``user`` may edit ``dag_id`` (None: every DAG).

    :param what: the change, for the message: "release task instances", "switch eco-mode off".
    """
    if not await asyncio.to_thread(may_edit, user, dag_id, access_entity):
        scope = f"of DAG {dag_id!r}" if dag_id is not None else "of every DAG"
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"user {user.get_name()!r} may not {what}: that needs edit rights {scope}")
