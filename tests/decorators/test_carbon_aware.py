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
                            max_delay=timedelta(minutes=30), deadline="{{ data_interval_end }}")
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
