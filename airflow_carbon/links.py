"""The "Carbon decision" button on a carbon-aware task instance: its page in the Carbon plugin.

The URL depends on the task instance's key only, never on what the task pushed to XCom, so the
button works while the task is still deferred. It lives beside the operators and sensors that carry
it, not in ``plugins/``, which registers it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

#: Where the plugin's FastAPI app is mounted in the API server.
URL_PREFIX = "/carbon"


def task_page_path(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """``carbon/task/<dag_id>/<run_id>/<task_id>?map_index=<n>``, relative to the API server's base URL.

    Run ids hold ``:`` and ``+``: every part is percent-quoted, and FastAPI decodes it again.
    """
    parts = "/".join(quote(str(part), safe="") for part in (dag_id, run_id, task_id))
    return f"{URL_PREFIX.strip('/')}/task/{parts}?map_index={int(map_index)}"


def base_url() -> str:
    """``[api] base_url`` (``/`` when unset), as Airflow's own links use it (``build_airflow_dagrun_url``)."""
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback="/") or "/"


class CarbonDecisionLink(BaseOperatorLink):
    """Opens the Carbon plugin's page of this task instance: its decision, its wait, what it emitted."""

    name = "Carbon decision"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        map_index = getattr(ti_key, "map_index", -1)
        path = task_page_path(ti_key.dag_id, ti_key.run_id, ti_key.task_id, -1 if map_index is None else map_index)
        return urljoin(base_url().rstrip("/") + "/", path)
