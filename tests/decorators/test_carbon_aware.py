"""The ways in, as a DAG author writes them: what they build at parse time. Running them: tests/e2e."""

from __future__ import annotations

from datetime import timedelta

import pendulum
import pytest
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

from airflow_carbon import CarbonAwareSensor, carbon_aware
from airflow_carbon.operators.carbon_aware import CarbonAwareMixin, carbon_aware_class
from airflow_carbon.settings import CarbonSettingsError

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def test_stacked_on_task_with_and_without_arguments():
    with DAG("d", schedule=None, start_date=START):
        @carbon_aware(max_delay=timedelta(hours=4), region="DE", energy_kwh=0.04)
        @task
        def summarize() -> int:
            return 1

        @carbon_aware
        @task
        def tag() -> int:
            return 2

        first, second = summarize(), tag()
    assert isinstance(first.operator, CarbonAwareMixin) and isinstance(second.operator, CarbonAwareMixin)
    assert first.operator.carbon_options == {"max_delay": timedelta(hours=4), "region": "DE", "energy_kwh": 0.04}
    assert second.operator.carbon_options == {}


def test_the_registered_decorator_is_task_carbon_aware_and_maps():
    with DAG("d", schedule=None, start_date=START) as dag:
        @task.carbon_aware(max_delay=timedelta(hours=1), power_kw=0.25)
        def tag(batch: list[str]) -> int:
            return len(batch)

        tag.expand(batch=[["a"], ["b", "c"]])
    mapped = dag.get_task("tag")
    assert issubclass(mapped.operator_class, CarbonAwareMixin)
    assert mapped.partial_kwargs["carbon_options"] == {"max_delay": timedelta(hours=1), "power_kw": 0.25}


def test_any_operator_instance_keeps_its_templates_and_class():
    with DAG("d", schedule=None, start_date=START):
        bash = carbon_aware(BashOperator(task_id="translate", bash_command="echo {{ ds }}"),
                            deadline="{{ data_interval_end }}")
    assert isinstance(bash, BashOperator) and isinstance(bash, CarbonAwareMixin)
    assert set(BashOperator.template_fields) < set(bash.template_fields) and "carbon_deadline" in bash.template_fields
    assert bash.carbon_deadline == "{{ data_interval_end }}" and bash.bash_command == "echo {{ ds }}"
    assert carbon_aware_class(BashOperator) is type(bash)


def test_bad_settings_fail_when_the_dag_is_parsed_naming_the_task():
    with DAG("d", schedule=None, start_date=START):
        with pytest.raises(CarbonSettingsError, match="task 'translate': carbon setting max_delay"):
            carbon_aware(BashOperator(task_id="translate", bash_command="true"), max_delay="-1h")
        with pytest.raises(CarbonSettingsError, match="task 'wait': carbon setting policy='greenest'"):
            CarbonAwareSensor(task_id="wait", policy="greenest")
        with pytest.raises(CarbonSettingsError, match="task 'summarize': unknown carbon setting 'max_dealy'"):
            @carbon_aware(max_dealy=timedelta(hours=1))
            @task
            def summarize() -> None: ...


def test_a_plain_function_is_refused_with_a_hint():
    def plain() -> None: ...

    with pytest.raises(TypeError, match="put @task under @carbon_aware"):
        carbon_aware(plain)


def test_the_sensor_defers_by_default():
    with DAG("d", schedule=None, start_date=START):
        sensor = CarbonAwareSensor(task_id="wait", max_delay=timedelta(hours=2))
    assert sensor.deferrable and sensor.carbon_options["max_delay"] == timedelta(hours=2)


def test_bad_carbon_settings_in_default_args_fail_when_the_dag_is_parsed():
    with DAG("d", schedule=None, start_date=START, default_args={"max_delay": "-2h", "retries": 1}):
        with pytest.raises(CarbonSettingsError, match="task 'translate': carbon setting max_delay='-2h'"):
            carbon_aware(BashOperator(task_id="translate", bash_command="true"))
        with pytest.raises(CarbonSettingsError, match="task 'summarize': carbon setting max_delay='-2h'"):
            @carbon_aware
            @task
            def summarize() -> None: ...

            summarize()
        with pytest.raises(CarbonSettingsError, match="task 'tag': carbon setting max_delay='-2h'"):
            @task.carbon_aware
            def tag() -> None: ...

            tag()


KNOWN = "known: max_delay, deadline, region, source"


def _task_decorator(operator_args=None, **options):
    @task.carbon_aware(**options, **(operator_args or {}))
    def tag_images() -> None: ...

    tag_images()


def _stacked(operator_args=None, **options):
    @carbon_aware(**options)
    @task(**(operator_args or {}))
    def tag_images() -> None: ...

    tag_images()


def _wrapper(operator_args=None, **options):
    carbon_aware(BashOperator(task_id="tag_images", bash_command="true", **(operator_args or {})), **options)


def _sensor(operator_args=None, **options):
    CarbonAwareSensor(task_id="tag_images", **options, **(operator_args or {}))


WAYS_IN = [pytest.param(way, id=way.__name__.strip("_")) for way in (_task_decorator, _stacked, _wrapper, _sensor)]


@pytest.mark.parametrize("way_in", WAYS_IN)
@pytest.mark.parametrize(("options", "message"), [
    ({"max_dealy": timedelta(hours=1)}, rf"unknown carbon setting 'max_dealy'; {KNOWN}"),
    ({"max_delay": 0}, r"carbon setting max_delay=0: must be longer than 0, got 0; to run at once use "
                       r"policy='immediate'"),
    ({"max_delay": "nan"}, r"carbon setting max_delay='nan': not a duration"),
    ({"max_delay": float("inf")}, r"carbon setting max_delay=inf: not a duration: inf"),
    ({"max_delay": "1h", "deadline": "2026-01-02T00:00:00Z"},
     r"carbon settings deadline='2026-01-02T00:00:00Z' and max_delay='1h' given together"),
    ({"region": "XX"}, r"carbon setting region='XX': no bundled data for region 'XX'.*bundled data"),
])
def test_every_way_in_refuses_the_same_mistakes_when_the_dag_is_parsed(way_in, options, message, monkeypatch):
    monkeypatch.delenv("AIRFLOW__CARBON__SOURCE", raising=False)
    with DAG("d", schedule=None, start_date=START), \
            pytest.raises(CarbonSettingsError, match=rf"^task 'tag_images': {message}"):
        way_in(**options)


@pytest.mark.parametrize("way_in", WAYS_IN)
def test_a_region_of_a_named_source_and_the_operators_own_arguments_are_accepted(way_in):
    with DAG("d", schedule=None, start_date=START):
        way_in({"retries": 2, "pool": "default_pool", "queue": "green", "doc_md": "waits", "trigger_rule": "all_done",
                "executor_config": {}}, region="CAISO_NORTH", source="watttime_default")


def test_the_sensors_and_the_decorators_own_arguments_are_accepted_and_a_misspelled_one_is_named():
    with DAG("d", schedule=None, start_date=START):
        CarbonAwareSensor(task_id="wait", max_delay="1h", poke_interval=5, mode="reschedule", timeout=60,
                          soft_fail=False, exponential_backoff=True, deferrable=False)
        CarbonAwareSensor.partial(task_id="waits", max_delay="1h").expand(energy_kwh=[0.1, 0.2])

        @task.carbon_aware(max_delay="1h", multiple_outputs=False, show_return_value_in_logs=False,
                           map_index_template="{{ x }}")
        def tag(x: int) -> None: ...

        tag.expand(x=[1, 2])
        with pytest.raises(CarbonSettingsError, match="task 'wait2': unknown carbon setting 'poke_intervall'"):
            CarbonAwareSensor(task_id="wait2", poke_intervall=5)


def test_a_deadline_on_the_task_beside_max_delay_in_default_args_is_no_conflict():
    with DAG("d", schedule=None, start_date=START, default_args={"max_delay": "2h"}):
        sensor = CarbonAwareSensor(task_id="wait", deadline="{{ data_interval_end }}")
        _wrapper(deadline="{{ data_interval_end }}")
    assert sensor.deadline == "{{ data_interval_end }}"
