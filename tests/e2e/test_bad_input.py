"""Bad input in a real Airflow: refused when the DAG is parsed or at the task's start, never in the middle of a wait.

Parse time: ``airflow dags reserialize`` over ``dags_bad_parse/``, then ``dags list-import-errors``. Task start:
``airflow dags test`` of one DAG of ``dags_bad_start/`` per case, settings and connections from the environment,
each case in its own copy of the one migrated database, so cases run two at a time and each has its own metrics store.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airflow_carbon.metrics import MetricsStore
from tests.e2e.airflow_cli import airflow, migrated_home, run_airflow

#: Twelve `airflow dags test` runs share one fixture: minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(900)

HERE = Path(__file__).parent
PARSE_DAGS, START_DAGS = HERE / "dags_bad_parse", HERE / "dags_bad_start"
CORPUS = HERE.parent / "signals" / "corpus"
#: Bounds the wait of a case that defers after all (a regression), so it fails in seconds, not hours.
START_ENV = {"AIRFLOW__CORE__DAGS_FOLDER": str(START_DAGS), "AIRFLOW__CARBON__MAX_DELAY": "20s",
             "AIRFLOW__CARBON__REFRESH_INTERVAL": "5s"}


@dataclass(frozen=True)
class BadInput:
    """One bad input: the DAG file holding it, the task it belongs to, what its error must say, and extra env."""

    name: str
    dag_file: str
    task_id: str
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def csv_input(file_name: str, *says: str) -> BadInput:
    """``csv_source.py``'s task reading a corpus file through the ``carbon_csv`` connection ``signal_csv``."""
    connection = {"conn_type": "carbon_csv", "extra": {"path": str(CORPUS / file_name), "region": "US-TX"}}
    return BadInput(f"csv_{Path(file_name).stem}", "csv_source.py", "evaluate",
                    ("task 'evaluate': signal source connection 'signal_csv' cannot be read", *says),
                    {"AIRFLOW_CONN_SIGNAL_CSV": json.dumps(connection)})


PARSE_TIME = [
    BadInput("max_delay_negative", "max_delay_negative.py", "summarize",
             ("task 'summarize': carbon setting max_delay='-2h': a duration must not be negative",)),
    BadInput("max_delay_not_a_duration", "max_delay_not_a_duration.py", "tag_images",
             ("task 'tag_images': carbon setting max_delay='soon': not a duration",)),
    BadInput("deadline_naive", "deadline_naive.py", "translate",
             ("task 'translate': carbon setting deadline=datetime.datetime(2026, 1, 1, 6, 0)", "has no timezone")),
    BadInput("deadline_not_an_instant", "deadline_not_an_instant.py", "wait_green",
             ("task 'wait_green': carbon setting deadline='next tuesday': not an ISO 8601 instant",)),
    BadInput("policy_unknown", "policy_unknown.py", "wait_green",
             ("task 'wait_green': carbon setting policy='greenest': unknown policy",)),
    BadInput("setting_misspelled", "setting_misspelled.py", "summarize",
             ("task 'summarize': unknown carbon setting 'max_dealy'",)),
    BadInput("setting_misspelled_task_decorator", "setting_misspelled_task_decorator.py", "tag_images",
             ("task 'tag_images': unknown carbon setting 'regoin'; known: max_delay",)),
    BadInput("default_args_policy", "default_args_policy.py", "wait_green",
             ("task 'wait_green': carbon setting policy='oracle': unknown policy",)),
    BadInput("default_args_max_delay", "default_args_max_delay.py", "summarize",
             ("task 'summarize': carbon setting max_delay='-2h': a duration must not be negative",)),
]
START_TIME = [
    BadInput("deadline_past_template", "deadline_past_template.py", "summarize",
             ("task 'summarize': deadline ", "is before the task became ready")),
    BadInput("deadline_past_absolute", "deadline_past_absolute.py", "translate",
             ("task 'translate': deadline 2020-01-01T00:00:00+00:00 is before the task became ready",)),
    BadInput("source_missing", "source_missing.py", "tag_images",
             ("task 'tag_images': signal source connection 'no_such_signal' cannot be read",)),
    BadInput("source_wrong_type", "source_wrong_type.py", "wait_green",
             ("task 'wait_green': connection 'web' has type 'http', which is not a carbon signal source",),
             {"AIRFLOW_CONN_WEB": json.dumps({"conn_type": "http", "host": "example.com"})}),
    BadInput("config_region_unknown", "from_config.py", "evaluate",
             ("task 'evaluate': carbon setting region='Atlantis': no bundled data for region 'Atlantis'",),
             {"AIRFLOW__CARBON__REGION": "Atlantis"}),
    BadInput("config_max_delay_not_a_duration", "from_config.py", "evaluate",
             ("task 'evaluate': carbon setting max_delay='soon': not a duration",),
             {"AIRFLOW__CARBON__MAX_DELAY": "soon"}),
    csv_input("gap.csv", "gap.csv, line 5, column 'timestamp': gap: 7200 s"),
    csv_input("bad_timestamp.csv", "bad_timestamp.csv, line 4, column 'timestamp': not an ISO 8601 timestamp"),
    csv_input("negative_value.csv", "negative_value.csv, line 3, column 'carbon_intensity': negative value '-3.5'"),
    csv_input("missing_column.csv", "missing_column.csv, line 1, column 'intensity': no intensity column"),
    csv_input("wrong_delimiter.csv", "wrong_delimiter.csv, line 1: the header holds ';'"),
    csv_input("not_there.csv", "No such file or directory", "not_there.csv"),
]
#: Every bad input tried: 9 refused when the DAG is parsed, 12 at the task's start.
BAD_INPUTS = [*PARSE_TIME, *START_TIME]


@dataclass(frozen=True)
class Started:
    """What ``airflow dags test`` of one bad-start case left: its exit code, output and metrics rows."""

    returncode: int
    output: str = field(repr=False)
    rows: list[dict] = field(repr=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("airflow_home")
    return path, migrated_home(path, AIRFLOW__CORE__DAGS_FOLDER=str(PARSE_DAGS))


@pytest.fixture(scope="module")
def import_errors(home) -> dict[str, str]:
    """DAG file -> its import error, once ``dags_bad_parse/`` is parsed into the metadata database."""
    _, env = home
    airflow(env, "dags", "reserialize")
    result = run_airflow(env, "dags", "list-import-errors", "-o", "json")
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-4000:]  # it exits 1 when there are any
    listing = next(line for line in reversed(result.stdout.splitlines()) if line.startswith("["))
    return {error["filepath"]: error["error"] for error in json.loads(listing)}


@pytest.fixture(scope="module")
def started(home, tmp_path_factory) -> dict[str, Started]:
    """Case name -> what its ``dags test`` left, two cases at a time, each in a copy of the migrated database."""
    path, env = home
    case_homes = {bad.name: tmp_path_factory.mktemp(bad.name) for bad in START_TIME}

    def start(bad: BadInput) -> Started:
        case_home = case_homes[bad.name]
        shutil.copy(path / "airflow.db", case_home / "airflow.db")  # airflow.cfg names the original home: not copied
        dag_id = f"bad_start_{Path(bad.dag_file).stem}"
        result = run_airflow({**env, "AIRFLOW_HOME": str(case_home), **START_ENV, **bad.env},
                             "dags", "test", dag_id, "-f", str(START_DAGS / bad.dag_file))
        rows = MetricsStore(f"sqlite:///{case_home}/carbon_metrics.db").rows(dag_id=dag_id)
        return Started(result.returncode, result.stdout + result.stderr, rows)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([bad.name for bad in START_TIME], pool.map(start, START_TIME), strict=True))


def test_every_bad_dag_file_is_a_listed_case():
    assert {path.name for path in PARSE_DAGS.glob("*.py")} - {"healthy.py"} == {bad.dag_file for bad in PARSE_TIME}
    assert {path.name for path in START_DAGS.glob("*.py")} == {bad.dag_file for bad in START_TIME}
    assert len({bad.name for bad in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize("bad", PARSE_TIME, ids=lambda bad: bad.name)
def test_a_bad_setting_is_an_import_error_naming_the_task_and_the_setting(bad, import_errors):
    error = import_errors[bad.dag_file]
    assert bad.task_id in error
    for text in bad.says:
        assert text in error


def test_the_bad_files_break_no_other_dag(home, import_errors):
    _, env = home
    assert set(import_errors) == {bad.dag_file for bad in PARSE_TIME}
    assert "bad_parse_healthy" in airflow(env, "dags", "list")


@pytest.mark.parametrize("bad", START_TIME, ids=lambda bad: bad.name)
def test_a_bad_input_at_the_start_fails_the_task_before_any_wait(bad, started):
    run = started[bad.name]
    assert run.returncode == 1 and "state=failed" in run.output, run.output[-4000:]  # its DAG's one task failed
    assert "Pausing task as DEFERRED" not in run.output and run.rows == []  # it never waited: nothing recorded
    assert "CarbonSettingsError: " in run.output and bad.task_id in run.output
    for text in bad.says:
        assert text in run.output, run.output[-4000:]
