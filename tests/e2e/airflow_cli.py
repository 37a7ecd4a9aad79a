"""Running the real ``airflow`` command in a temporary AIRFLOW_HOME on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def migrated_home(home: Path, **extra_env: str) -> dict[str, str]:
    """The environment of an Airflow whose metadata database is ready, with the project's DAGs."""
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False", **extra_env}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


def run_airflow(env: dict[str, str], *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``airflow ARGS``, whatever its exit status (some commands exit 1 to report what they found)."""
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout_s)


def airflow(env: dict[str, str], *args: str, timeout_s: float = 300) -> str:
    """Run ``airflow ARGS``; its output, or an assertion with the end of its log."""
    result = run_airflow(env, *args, timeout_s=timeout_s)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr
