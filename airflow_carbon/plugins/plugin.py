"""The Carbon plugin: its FastAPI app at ``/carbon``, a "Carbon" entry in the navigation, a tab on DAGs
and task instances, and the "Carbon decision" button.

Airflow loads it through the ``airflow.plugins`` entry point (always) and through the provider info
(with ``[core] lazy_discover_providers = False``).

The UI fills ``{DAG_ID}``, ``{RUN_ID}``, ``{TASK_ID}`` and ``{MAP_INDEX}`` in an external view's
``href`` where the page has them (``{MAP_INDEX}`` on mapped task instances only: the pages read a
literal ``{MAP_INDEX}`` as -1). The hrefs are relative, so they follow the UI's base URL.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_carbon.links import URL_PREFIX, CarbonDecisionLink
from airflow_carbon.plugins.app import app
from airflow_carbon.plugins.gated import listener as gated_energy_listener

NAV_VIEW = {"name": "Carbon", "href": "carbon/", "destination": "nav", "url_route": "carbon",
            "nav_top_level": True}
DAG_VIEW = {"name": "Carbon", "href": "carbon/dag/{DAG_ID}", "destination": "dag", "url_route": "carbon-dag"}
TASK_INSTANCE_VIEW = {"name": "Carbon", "href": "carbon/task/{DAG_ID}/{RUN_ID}/{TASK_ID}?map_index={MAP_INDEX}",
                      "destination": "task_instance", "url_route": "carbon-task"}


def _carbon_operator_classes() -> list[type[Any]]:
    """The carbon-aware classes known before any DAG is parsed: the sensor and the ``@task`` operator."""
    from airflow.providers.standard.decorators.python import _PythonDecoratedOperator

    from airflow_carbon.operators.carbon_aware import carbon_aware_class
    from airflow_carbon.sensors.carbon import CarbonAwareSensor

    return [CarbonAwareSensor, carbon_aware_class(_PythonDecoratedOperator)]


class ServerCarbonDecisionLink(CarbonDecisionLink):
    """The same link, computed by the API server for these classes instead of read back from XCom.

    Airflow 3 turns an operator's own links into links that read the URL the worker pushed to
    XCom when the try ended or deferred; a plugin's link for a matching class takes their place,
    so the button shows from the moment the task instance exists. Other classic operators made
    carbon-aware keep the XCom-backed link.
    """

    operators = _carbon_operator_classes()  # type: ignore[assignment]


class CarbonPlugin(AirflowPlugin):
    name = "carbon"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Carbon"}]  # noqa: RUF012
    external_views = [NAV_VIEW, DAG_VIEW, TASK_INSTANCE_VIEW]  # noqa: RUF012
    operator_extra_links = [ServerCarbonDecisionLink()]  # noqa: RUF012
    listeners = [gated_energy_listener]  # noqa: RUF012
