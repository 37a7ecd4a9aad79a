"""Every page and endpoint of the Carbon plugin goes through Airflow's own auth manager.

Plugin FastAPI apps are not protected by Airflow on their own: ``CurrentUser`` resolves the
caller from the JWT (the ``Authorization: Bearer`` header, or the UI's session cookie) and
answers 401 without one; ``readable_dag_ids`` is what the user may read.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends

CurrentUser = Annotated[BaseUser, Depends(get_user)]


async def readable_dag_ids(user: BaseUser) -> set[str]:
    """The DAGs ``user`` may read; the auth manager queries the metadata database, so off the event loop."""
    from airflow.api_fastapi.app import get_auth_manager

    return await asyncio.to_thread(get_auth_manager().get_authorized_dag_ids, user=user, method="GET")
