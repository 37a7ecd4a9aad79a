"""Running the real ``airflow`` command in a temporary AIRFLOW_HOME on SQLite."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
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


def airflow_watching(env: dict[str, str], *args: str, when: str, then: Callable[[], None],
                     timeout_s: float = 300) -> str:
    """``airflow`` that calls ``then()`` the first time a line of its output contains ``when``, while it runs.

    So a test can act at a moment of the command's own (``Pausing task as DEFERRED``), however long it took to get
    there, instead of at a moment of its own. Asserts the command succeeded; returns its output.
    """
    process = subprocess.Popen([AIRFLOW, *args], env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    timer = threading.Timer(timeout_s, _kill_group, (process,))
    timer.start()
    lines, seen = [], False
    try:
        for line in process.stdout:
            lines.append(line)
            if not seen and when in line:
                seen = True
                then()
        returncode = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            _kill_group(process)
            process.wait()
    output = "".join(lines)
    assert returncode == 0, f"exit {returncode} (killed after {timeout_s:.0f} s if -9)\n{output[-4000:]}"
    return output


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
