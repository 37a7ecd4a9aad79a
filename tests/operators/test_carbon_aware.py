"""Classic operators made carbon-aware: ones that defer themselves, and mapped ones.

Direct calls do what Airflow's task runner does (``execute``, then ``resume_execution`` with the
deferral's method and kwargs plus the trigger's ``event``); ``dag.test()`` runs whole DAGs, their
triggers inline, from a DAGs folder of their own.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor, WaitSensor
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG, BaseOperator
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
from airflow.sdk.definitions.mappedoperator import MappedOperator
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferralTimeout, TaskDeferred

from airflow_carbon import carbon_aware
from airflow_carbon.hooks.metrics import CarbonMetricsHook
from airflow_carbon.metrics import MetricsStore
from airflow_carbon.operators.carbon_aware import WORK_RESUME_METHOD, WORK_XCOM_KEY, carbon_aware_class
from airflow_carbon.settings import CarbonSettingsError

START = pendulum.datetime(2026, 1, 1, tz="UTC")
#: On a grid that gets cleaner every minute, the best start is the deadline: a wait anchored to the task's ready time.
UNTIL_DEADLINE = {"source": "signal", "policy": "forecast", "min_saving_pct": 0}


class RemoteJob(BaseOperator):
    """Stands in for an operator that starts remote work and defers until it is done (KubernetesPodOperator).

    :param polls: how many times its trigger fires before the job is done.
    :param fail: whether the job fails when it is done.
    """

    def __init__(self, *, job: str, polls: int = 1, fail: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job, self.polls, self.fail = job, polls, fail

    def execute(self, context: Any) -> None:
        self._poll(self.job, 1)

    def collect(self, context: Any, job: str, poll: int, event: Any = None) -> dict[str, Any]:
        if poll < self.polls:
            self._poll(job, poll + 1)
        if self.fail:
            raise RuntimeError(f"job {job} failed")
        return {"job": job, "polls": poll, "event": event}

    def _poll(self, job: str, poll: int) -> None:
        self.defer(trigger=DateTimeTrigger(moment=datetime.now(UTC)), method_name="collect",
                   kwargs={"job": job, "poll": poll}, timeout=timedelta(minutes=5))


class EndsAtOnce(BaseOperator):
    """An operator whose work ends, without deferring, by raising ``error``."""

    def __init__(self, *, error: BaseException, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def execute(self, context: Any) -> None:
        raise self.error


class FakeTaskInstance:
    """What the wrapper reads of a task instance, with XComs stored as JSON, as Airflow stores them."""

    def __init__(self, task_id: str) -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index, self.try_number = "d", task_id, "manual__1", -1, 1
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = json.loads(json.dumps(value))

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> Any:
        assert (task_ids, map_indexes) == (self.task_id, self.map_index)
        return self.xcoms.get(key)


def write_falling_signal(path: Path) -> Path:
    """Intensity falling by 1 g/kWh a minute, from an hour ago to a day ahead."""
    now_s = int(datetime.now(UTC).timestamp()) // 60 * 60
    rows = [f"{datetime.fromtimestamp(now_s + 60 * step, UTC):%Y-%m-%dT%H:%M:%S},TEST,{2000 - step}"
            for step in range(-60, 1441)]
    path.write_text("timestamp,region,carbon_intensity\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def store(monkeypatch, tmp_path) -> MetricsStore:
    """The metrics store of the task, and a signal source that gets cleaner all day."""
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_METRICS_DEFAULT",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "metrics.db")}))
    signal = write_falling_signal(tmp_path / "signal.csv")
    monkeypatch.setenv("AIRFLOW_CONN_SIGNAL", json.dumps({"conn_type": "carbon_csv",
                                                          "extra": {"path": str(signal), "region": "TEST"}}))
    yield MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    CarbonMetricsHook.reset_store_cache()


def in_dag(build):
    with DAG("d", schedule=None, start_date=START):
        return build()


def deferral(call) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        call()
    return deferred.value


def resume(task: BaseOperator, deferred: TaskDeferred, context: dict[str, Any], event: Any) -> Any:
    """What the task runner does when the trigger fires: the deferral's method, its kwargs and the event."""
    return task.resume_execution(deferred.method_name, {**(deferred.kwargs or {}), "event": event}, context)


def test_the_issues_time_delta_sensor_keeps_its_trigger_and_is_recorded_when_it_resumes(store):
    sensor = in_dag(lambda: carbon_aware(TimeDeltaSensor(task_id="remote_inference", delta=timedelta(minutes=5),
                                                         deferrable=True, timeout=600),
                                         policy="immediate", source="signal"))
    ti = FakeTaskInstance("remote_inference")
    base = datetime.now(UTC) + timedelta(hours=1)
    context = {"ti": ti, "data_interval_end": base}

    deferred = deferral(lambda: sensor.execute(context))
    assert deferred.method_name == WORK_RESUME_METHOD and deferred.timeout == 600
    assert isinstance(deferred.trigger, DateTimeTrigger) and deferred.trigger.moment == base + timedelta(minutes=5)
    work = ti.xcoms[WORK_XCOM_KEY]
    assert work["method"] == "execute_complete" and work["event"]["reason"] == "immediate"
    [waiting] = store.rows()
    assert waiting["state"] == "running" and "carbon" not in ti.xcoms  # not recorded while its own trigger waits

    assert resume(sensor, deferred, context, base + timedelta(minutes=5)) is None
    record = ti.xcoms["carbon"]
    assert record["started_at"] == work["started_at"] and record["ended_at"] > record["started_at"]
    [row] = store.rows()
    assert row["state"] == "completed" and row["started_at"].isoformat() == work["started_at"]
    assert row["deadline"] == waiting["deadline"] and row["ready_at"] == waiting["ready_at"]


def test_its_own_method_gets_its_kwargs_and_the_event_and_may_defer_again(store):
    job = in_dag(lambda: carbon_aware(RemoteJob(task_id="infer", job="j-7", polls=2), policy="immediate",
                                      source="signal"))
    ti = FakeTaskInstance("infer")
    context = {"ti": ti}
    first = deferral(lambda: job.execute(context))
    assert first.kwargs == {"job": "j-7", "poll": 1} and first.timeout == timedelta(minutes=5)
    started_at = ti.xcoms[WORK_XCOM_KEY]["started_at"]

    second = deferral(lambda: resume(job, first, context, "poll 1"))
    assert second.method_name == WORK_RESUME_METHOD and second.kwargs == {"job": "j-7", "poll": 2}
    assert ti.xcoms[WORK_XCOM_KEY]["started_at"] == started_at and "carbon" not in ti.xcoms

    assert resume(job, second, context, "done") == {"job": "j-7", "polls": 2, "event": "done"}
    assert ti.xcoms["carbon"]["started_at"] == started_at  # from the work's start, across both waits
    assert [row["state"] for row in store.rows()] == ["completed"]


def test_a_failure_of_its_own_method_is_recorded_as_failed_and_raised(store):
    job = in_dag(lambda: carbon_aware(RemoteJob(task_id="infer", job="j-8", fail=True), policy="immediate",
                                      source="signal"))
    ti = FakeTaskInstance("infer")
    deferred = deferral(lambda: job.execute({"ti": ti}))
    with pytest.raises(RuntimeError, match="job j-8 failed"):
        resume(job, deferred, {"ti": ti}, "done")
    [row] = store.rows()
    assert row["state"] == "failed" and row["started_at"] < row["ended_at"]
    assert ti.xcoms["carbon"]["state"] == "failed"


@pytest.mark.parametrize(("error", "state"), [(RuntimeError("no GPU"), "failed"),
                                              (AirflowSkipException("nothing to do"), "completed")])
def test_work_that_raises_without_deferring_is_recorded_too(store, error, state):
    task = in_dag(lambda: carbon_aware(EndsAtOnce(task_id="ends", error=error), policy="immediate", source="signal"))
    ti = FakeTaskInstance("ends")
    with pytest.raises(type(error)):
        task.execute({"ti": ti})
    assert [row["state"] for row in store.rows()] == [state] and ti.xcoms["carbon"]["state"] == state


def test_a_timeout_of_its_own_trigger_is_recorded_as_failed(store):
    job = in_dag(lambda: carbon_aware(RemoteJob(task_id="infer", job="j-9"), policy="immediate", source="signal"))
    ti = FakeTaskInstance("infer")
    deferral(lambda: job.execute({"ti": ti}))
    # Airflow resumes a deferral that timed out with "__fail__", the failure in place of the kwargs.
    with pytest.raises(TaskDeferralTimeout):
        job.resume_execution(TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, {"ti": ti})
    [row] = store.rows()
    assert row["state"] == "failed" and row["ended_at"] is not None


def test_a_trigger_that_would_end_the_task_itself_resumes_it_so_it_is_recorded(store):
    sensor = in_dag(lambda: carbon_aware(WaitSensor(task_id="wait", time_to_wait=timedelta(seconds=30),
                                                    deferrable=True), policy="immediate", source="signal"))
    ti = FakeTaskInstance("wait")
    deferred = deferral(lambda: sensor.execute({"ti": ti}))
    assert deferred.trigger.serialize()[1]["end_from_trigger"] is False
    # WaitSensor has no method to resume into: its trigger ended it. The task ends the same way, recorded.
    assert resume(sensor, deferred, {"ti": ti}, deferred.trigger.moment) is None
    assert [row["state"] for row in store.rows()] == ["completed"]


def test_a_carbon_aware_operator_never_starts_in_the_triggerer():
    def build():
        single = carbon_aware(DateTimeSensorAsync(task_id="at", target_time="2026-01-01T00:00:00+00:00",
                                                  start_from_trigger=True))
        mapped = carbon_aware(DateTimeSensorAsync.partial(task_id="ats", start_from_trigger=True)
                              .expand(target_time=["2026-01-01T00:00:00+00:00"]))
        return single, mapped

    single, mapped = in_dag(build)
    assert single.start_from_trigger is False and mapped.start_from_trigger is False


def test_a_mapped_classic_operator_gets_the_carbon_class_and_its_settings_at_parse_time():
    mapped = in_dag(lambda: carbon_aware(
        BashOperator.partial(task_id="shards", env={"A": "1"}).expand(bash_command=["echo 1", "echo 2"]),
        policy="threshold", deadline="{{ data_interval_end }}"))
    assert isinstance(mapped, MappedOperator) and mapped.operator_class is carbon_aware_class(BashOperator)
    assert mapped.partial_kwargs["carbon_options"] == {"policy": "threshold", "deadline": "{{ data_interval_end }}"}
    assert set(BashOperator.template_fields) | {"carbon_deadline"} == set(mapped.template_fields)
    assert mapped.task_type == "CarbonAwareBashOperator"

    one = mapped.unmap({"bash_command": "echo 1"})  # what the worker builds for one mapped instance
    assert type(one) is carbon_aware_class(BashOperator) and one.bash_command == "echo 1" and one.env == {"A": "1"}
    assert one.carbon_options == {"policy": "threshold"}
    assert one.carbon_deadline == "{{ data_interval_end }}"


def test_bad_settings_of_a_mapped_operator_fail_when_the_dag_is_parsed_naming_the_task():
    with DAG("d", schedule=None, start_date=START, default_args={"policy": "greenest"}):
        with pytest.raises(CarbonSettingsError, match="task 'shards': carbon setting max_delay"):
            carbon_aware(BashOperator.partial(task_id="shards").expand(bash_command=["true"]), max_delay="-1h")
        with pytest.raises(CarbonSettingsError, match="task 'more': carbon setting policy='greenest'"):
            carbon_aware(BashOperator.partial(task_id="more").expand(bash_command=["true"]))


# --- whole DAGs under dag.test() -------------------------------------------------------------------


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory):
    """A migrated metadata database, and a DAGs folder that ``dag.test()`` finds its DAG in."""
    from airflow import settings
    from airflow.utils import db

    folder = tmp_path_factory.mktemp("dags")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
        patch.setattr(settings, "DAGS_FOLDER", str(folder))
        db.initdb()
        yield folder


def run_dag(folder: Path, dag_id: str, body: str):
    """Write a DAG file as a DAG author would, load it, and ``dag.test()`` it."""
    path = folder / f"{dag_id}.py"
    path.write_text(f'''
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.time_delta import WaitSensor
from airflow.sdk import DAG, task

from airflow_carbon import carbon_aware

UNTIL_DEADLINE = {UNTIL_DEADLINE!r}

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
''' + "\n".join(f"    {line}" for line in body.strip().splitlines()) + "\n")
    spec = importlib.util.spec_from_file_location(f"dag_file_{dag_id}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag.test()


def test_dag_test_waits_for_the_carbon_deadline_then_for_the_operators_own_trigger(dags_folder, store):
    run = run_dag(dags_folder, "remote_inference", '''
remote = carbon_aware(WaitSensor(task_id="remote_inference", time_to_wait=timedelta(seconds=2), deferrable=True),
                      max_delay=timedelta(seconds=3), **UNTIL_DEADLINE)

@task
def report(ti=None):
    return ti.xcom_pull(task_ids="remote_inference", key="carbon")

remote >> report()
''')
    assert run.state == "success"
    record = run.get_task_instance("report").xcom_pull(task_ids="report")
    assert record == run.get_task_instance("remote_inference").xcom_pull(task_ids="remote_inference", key="carbon")
    started, ended, deadline = (datetime.fromisoformat(record[k]) for k in ("started_at", "ended_at", "deadline"))
    # The carbon decision held the work back to its deadline (the planner counts whole seconds).
    assert record["reason"] == "deadline" and started >= deadline.replace(microsecond=0)
    assert ended - started >= timedelta(seconds=2)  # and the record spans the operator's own wait
    [row] = store.rows(dag_id="remote_inference")
    assert row["state"] == "completed" and row["ended_at"] == ended


def test_dag_test_records_every_mapped_instance_with_the_first_ones_deadline(dags_folder, store):
    run = run_dag(dags_folder, "shards", '''
carbon_aware(BashOperator.partial(task_id="shards").expand(bash_command=["echo 0", "echo 1", "echo 2"]),
             max_delay=timedelta(seconds=2), **UNTIL_DEADLINE)
''')
    assert run.state == "success"
    rows = store.rows(dag_id="shards")
    assert [row["map_index"] for row in rows] == [0, 1, 2] and {row["state"] for row in rows} == {"completed"}
    assert len({(row["ready_at"], row["deadline"]) for row in rows}) == 1
    assert all(row["started_at"] >= row["deadline"].replace(microsecond=0) for row in rows)
    assert [run.get_task_instance("shards", map_index=i).xcom_pull(task_ids="shards", map_indexes=i, key="carbon")
            ["map_index"] for i in range(3)] == [0, 1, 2]
