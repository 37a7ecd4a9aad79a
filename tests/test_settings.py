from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.settings import CONFIG_OPTIONS, CarbonSettings, CarbonSettingsError, check_given, resolve


def test_given_beats_default_args_beats_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CARBON__REGION", "FR")
    monkeypatch.setenv("AIRFLOW__CARBON__MAX_DELAY", "2h")
    settings = resolve("t", {"policy": "threshold"}, {"max_delay": timedelta(minutes=45)})
    assert settings.region == "FR" and settings.max_delay == timedelta(minutes=45) and settings.policy == "threshold"
    assert resolve("t", {"region": "DE"}, {"region": "US-TX"}).region == "DE"
    assert resolve("t", {}).max_delay == timedelta(hours=2)


def test_defaults_come_from_the_declared_config_options(monkeypatch):
    for name in CONFIG_OPTIONS:
        monkeypatch.delenv(f"AIRFLOW__CARBON__{name.upper()}", raising=False)
    settings = resolve("t", {})
    assert settings.max_delay == timedelta(hours=4) and settings.policy == "forecast" and settings.source is None
    assert settings.refresh_interval == timedelta(minutes=5) and settings.metrics_conn_id == "carbon_metrics_default"
    assert not settings.energy_declared and settings.planned_energy_kwh == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"max_delay": "-2h"}, "max_delay='-2h'.*negative"),
        ({"max_delay": "soon"}, "max_delay='soon'.*not a duration"),
        ({"deadline": "2026-01-01T00:00:00"}, "deadline=.*no timezone"),
        ({"policy": "greenest"}, "policy='greenest'.*unknown policy"),
        ({"policy": "oracle"}, "policy='oracle'.*unknown policy"),
        ({"energy_kwh": -1}, "energy_kwh=-1"),
        ({"min_saving_pct": 150}, "min_saving_pct=150"),
        ({"on_unavailable": "panic"}, "on_unavailable='panic'"),
        ({"regoin": "DE"}, "unknown carbon setting 'regoin'"),
    ],
)
def test_bad_settings_name_the_task_and_the_setting(given, message):
    with pytest.raises(CarbonSettingsError, match=rf"task 'summarize': (carbon setting )?{message}"):
        check_given("summarize", given)


def test_templates_are_checked_after_rendering_and_absolute_deadlines_parse():
    assert check_given("t", {"deadline": "{{ data_interval_end }}"}) == {}
    settings = resolve("t", {"deadline": "2026-01-01T06:00:00+01:00"})
    assert settings.deadline == datetime(2026, 1, 1, 5, tzinfo=UTC)
    with pytest.raises(CarbonSettingsError, match="not both"):
        resolve("t", {"energy_kwh": 1, "power_kw": 1})


def test_undeclared_energy_is_planned_and_accounted_with_the_configured_power(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CARBON__POWER_KW", "0.8")
    settings = resolve("t", {"expected_duration": "15min"})
    assert settings.assumed_power_kw == 0.8 and settings.power_kw is None and settings.power_draw_kw == 0.8
    assert settings.planned_energy_kwh == pytest.approx(0.2)
    declared = resolve("t", {"expected_duration": "15min", "power_kw": 2})
    assert declared.energy_declared and declared.power_draw_kw == 2
    assert declared.planned_energy_kwh == pytest.approx(0.5)
    assert resolve("t", {"energy_kwh": 0.04}).planned_energy_kwh == 0.04


def test_settings_go_through_json_and_back_unchanged(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CARBON__POWER_KW", "0.8")
    settings = resolve("t", {"deadline": "2026-01-01T06:00:00+01:00", "source": "wt", "fallback": "uk, em",
                             "energy_kwh": 0.04, "expected_duration": "90s", "refresh_interval": "1min"})
    data = json.loads(json.dumps(settings.to_json()))
    assert data["expected_duration"] == 90 and data["fallback"] == ["uk", "em"] and data["assumed_power_kw"] == 0.8
    monkeypatch.setenv("AIRFLOW__CARBON__POWER_KW", "0.1")  # read when resolved, carried after: not read again
    assert CarbonSettings.from_json("t", data) == settings


def test_settings_read_back_from_json_are_checked_again():
    data = resolve("t", {}).to_json() | {"policy": "greenest"}
    with pytest.raises(CarbonSettingsError, match="task 'summarize': carbon setting policy='greenest'"):
        CarbonSettings.from_json("summarize", data)
