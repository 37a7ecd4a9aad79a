"""Keep tests away from ~/airflow: importing Airflow writes its config under AIRFLOW_HOME; the wheel the packaging
tests share."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow_carbon_tests_"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel of ``CARBON_WHEEL`` (``make test-compat`` names the one ``make dist`` built), else one built here."""
    if os.environ.get("CARBON_WHEEL"):
        return Path(os.environ["CARBON_WHEEL"]).resolve()
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(out), str(ROOT)], check=True, cwd=out)
    return next(out.glob("airflow_carbon-*.whl"))
