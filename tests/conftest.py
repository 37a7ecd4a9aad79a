"""Keep tests away from ~/airflow: importing Airflow writes its config under AIRFLOW_HOME."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow_carbon_tests_"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
