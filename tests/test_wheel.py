"""The wheel as a user installs it: into a fresh venv beside a stock Airflow, never the checkout.

Each Airflow release named in ``CARBON_WHEEL_AIRFLOW`` (``3.3.0 3.3.2``) gets its own venv, installed with
that release's pins from ``constraints/``; ``CARBON_WHEEL`` names the wheel to install (built here when unset),
``CARBON_WHEEL_PYTHON`` the interpreter of the venvs (this one when unset).
A venv and an Airflow install cost minutes per release, so without ``CARBON_WHEEL_AIRFLOW`` the module is
skipped: ``make test-compat`` runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import BUNDLED, wheel_version

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_VERSIONS = os.environ.get("CARBON_WHEEL_AIRFLOW", "").split()
PYTHON = os.environ.get("CARBON_WHEEL_PYTHON", sys.executable)
INSTALL_TIMEOUT_S = 1200
FAR_S = 4 * 60  # inside carbon_demo's 5 minutes of max_delay: its task defers whenever it gets to its decision
GREEN_AFTER_DEFERRAL_S = 5
DAGS_TEST_TIMEOUT_S = 600

pytestmark = [pytest.mark.skipif(not AIRFLOW_VERSIONS, reason="set CARBON_WHEEL_AIRFLOW (make test-compat)"),
              pytest.mark.timeout(INSTALL_TIMEOUT_S + DAGS_TEST_TIMEOUT_S)]


@dataclass(frozen=True)
class Installed:
    """A venv with Airflow and the wheel, and the environment of its migrated AIRFLOW_HOME."""

    airflow_version: str
    bin: Path
    home: Path
    env: dict[str, str]

    def run(self, command: str, *args: str, timeout_s: float = 600) -> str:
        """Run the venv's ``command ARGS`` outside the checkout; its output, or an assertion with its end."""
        result = subprocess.run([str(self.bin / command), *args], env=self.env, cwd=self.home, capture_output=True,
                                text=True, timeout=timeout_s)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{command} {' '.join(args)}: exit {result.returncode}\n{output[-4000:]}"
        return result.stdout

    def python(self, code: str) -> str:
        return self.run("python", "-c", code)


@pytest.fixture(scope="module", params=AIRFLOW_VERSIONS)
def installed(request, wheel, tmp_path_factory) -> Installed:
    airflow_version = request.param
    python_version = subprocess.run([PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                    capture_output=True, text=True, check=True).stdout.strip()
    constraints = ROOT / "constraints" / f"constraints-{airflow_version}-py{python_version}.txt"
    assert constraints.is_file(), f"no pins for Airflow {airflow_version} on Python {python_version}: {constraints}"
    root = tmp_path_factory.mktemp(f"airflow-{airflow_version}")
    venv, home = root / "venv", root / "home"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "-c", str(constraints),
                    f"apache-airflow=={airflow_version}", str(wheel)], check=True, timeout=INSTALL_TIMEOUT_S)
    (home / "dags").mkdir(parents=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV", "CARBON_"))}
    env |= {"PATH": f"{venv / 'bin'}:{env.get('PATH', '')}", "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True", "PYTHONUNBUFFERED": "1"}
    result = Installed(airflow_version, venv / "bin", home, env)
    result.run("airflow", "db", "migrate")
    return result


def test_the_venv_runs_the_wheel_beside_the_airflow_asked_for(installed, wheel):
    code = ("import importlib.metadata as m, platform, airflow_carbon; print(platform.python_version(), "
            "m.version('apache-airflow'), airflow_carbon.__version__, airflow_carbon.__file__)")
    python_version, airflow_version, version, path = installed.python(code).split()
    expected_python = subprocess.run([PYTHON, "-c", "import platform; print(platform.python_version())"],
                                     capture_output=True, text=True, check=True).stdout.strip()
    assert (python_version, airflow_version) == (expected_python, installed.airflow_version)
    assert version == wheel_version(wheel)
    assert path.startswith(str(installed.bin.parent)) and not path.startswith(str(ROOT))


def test_the_provider_is_discovered(installed, wheel):
    providers = json.loads(installed.run("airflow", "providers", "list", "--output", "json"))
    ours = [p for p in providers if p["package_name"] == "airflow-carbon"]
    assert [p["version"] for p in ours] == [wheel_version(wheel)], providers
    assert "carbon_csv" in installed.run("airflow", "providers", "hooks")
    assert installed.run("airflow", "config", "get-value", "carbon", "max_delay").strip()


def test_the_bundled_data_is_installed(installed):
    code = ("import json; from importlib.resources import files; "
            "print(json.dumps(sorted(p.name for p in files('airflow_carbon').joinpath('data').iterdir())))")
    assert set(BUNDLED) <= set(json.loads(installed.python(code)))


PAGES = """
import json
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app, get_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

client = TestClient(create_app())
token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
auth = {"Authorization": f"Bearer {token}"}
answers = {}
for path in ("/carbon/", "/carbon/static/carbon.css"):
    response = client.get(path, headers=auth)
    answers[path] = [response.status_code, response.headers.get("content-type", ""), response.text[:20000]]
print(json.dumps(answers))
"""


def test_the_plugin_loads_and_serves_its_pages_and_static_files(installed, wheel):
    plugins = json.loads(installed.run("airflow", "plugins", "--output", "json"))
    [carbon] = [p for p in plugins if p["name"] == "carbon"]
    assert f"airflow-carbon=={wheel_version(wheel)}" in carbon["source"], carbon
    assert [app["url_prefix"] for app in carbon["fastapi_apps"]] == ["/carbon"], carbon
    assert {view["destination"] for view in carbon["external_views"]} == {"nav", "dag", "task_instance"}, carbon
    answers = json.loads(installed.python(PAGES).strip().splitlines()[-1])
    status, content_type, page = answers["/carbon/"]
    assert (status, content_type.split(";")[0]) == (200, "text/html"), page[-2000:]
    assert "static/carbon.css" in page
    status, content_type, css = answers["/carbon/static/carbon.css"]
    assert (status, content_type.split(";")[0]) == (200, "text/css") and css.strip()


def test_simulate_runs_on_the_bundled_data(installed):
    data = Path(installed.python("import airflow_carbon, pathlib; "
                                 "print(pathlib.Path(airflow_carbon.__file__).parent / 'data')").strip())
    out = json.loads(installed.run("airflow-carbon", "simulate", str(data / "inference_jobs.csv"),
                                   str(data / "carbon_intensity.csv"), "--max-delay", "4h", "--json"))
    policies = {row["policy"]: row for row in out["policies"]}
    assert {"immediate", "forecast"} <= set(policies)
    assert policies["immediate"]["jobs"] == 110 and policies["immediate"]["delayed"] == 0
    assert policies["forecast"]["scheduled_kg"] < policies["immediate"]["scheduled_kg"]


def test_the_example_dag_defers_and_resumes(installed):
    """``make demo``'s DAG under ``airflow dags test``: it defers on a dirty grid, is resumed, runs and records.

    The green window is FAR_S away until the command says the task deferred, then GREEN_AFTER_DEFERRAL_S: the
    wait starts from the task's own decision, however long Airflow took to get there.
    """
    shutil.copy(ROOT / "dags" / "carbon_demo.py", installed.home / "dags")
    signal = installed.home / "signal.csv"
    connection = {"conn_type": "carbon_csv", "extra": {"path": str(signal), "region": "DEMO"}}
    env = installed.env | {"AIRFLOW__CARBON__SOURCE": "carbon_demo_signal", "AIRFLOW__CARBON__REGION": "DEMO",
                           "AIRFLOW_CONN_CARBON_DEMO_SIGNAL": json.dumps(connection)}
    installed.run("airflow-carbon", "example-signal", str(signal), "--green-in", f"{FAR_S}s")
    process = subprocess.Popen([str(installed.bin / "airflow"), "dags", "test", "carbon_demo"], env=env,
                               cwd=installed.home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(DAGS_TEST_TIMEOUT_S, process.kill)
    watchdog.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "Pausing task as DEFERRED" in line:
                installed.run("airflow-carbon", "example-signal", str(signal), "--green-in",
                              f"{GREEN_AFTER_DEFERRAL_S}s")
        returncode = process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    log = "".join(lines)
    assert returncode == 0, log[-4000:]
    assert "Pausing task as DEFERRED" in log and "state=success" in log, log[-4000:]
    record = json.loads(next(line for line in log.splitlines() if line.startswith("carbon record: "))
                        .removeprefix("carbon record: "))
    assert record["reason"] == "green_window" and record["delay_s"] > 0, record
