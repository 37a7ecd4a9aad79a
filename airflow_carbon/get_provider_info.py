"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_carbon import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-carbon",
        "name": "Carbon",
        "description": "Carbon-aware scheduling: defer tasks that can wait until the grid is cleaner.",
        "versions": [__version__],
    }
