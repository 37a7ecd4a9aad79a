from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.settings import (
    CONFIG_OPTIONS,
    CarbonSettings,
    CarbonSettingsError,
    check_given,
    check_task,
    resolve,
)


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
        ({"max_delay": "nan"}, "max_delay='nan': not a duration: 'nan'"),
        ({"max_delay": float("nan")}, "max_delay=nan: not a duration: nan"),
        ({"max_delay": float("inf")}, "max_delay=inf: not a duration: inf"),
        ({"max_delay": 10**30}, "max_delay=1000000000000000000000000000000: duration .* is too long"),
        ({"max_delay": 0}, r"max_delay=0: must be longer than 0, got 0; to run at once use policy='immediate'"),
        ({"max_delay": "0s"}, r"max_delay='0s': must be longer than 0.*policy='immediate'"),
        ({"max_delay": "9000h"}, "max_delay='9000h': must be at most 366 days"),
        ({"expected_duration": "nan"}, "expected_duration='nan': not a duration"),
        ({"energy_kwh": 1e308}, r"energy_kwh=1e\+308: must be at most 1e\+09 kWh"),
        ({"power_kw": float("inf")}, "power_kw=inf: must be a finite number"),
        ({"deadline": "2026-01-01T00:00:00Z", "max_delay": "1h"},
         "carbon settings deadline='2026-01-01T00:00:00Z' and max_delay='1h' given together; give one"),
        ({"deadline": "{{ data_interval_end }}", "max_delay": "1h"}, "carbon settings deadline=.* given together"),
        ({"energy_meter": "wattmeter"}, "energy_meter='wattmeter': unknown energy meter 'wattmeter'; choose one of "
                                        "auto, codecarbon, nvml, declared"),
        ({"pue": 0.5}, r"pue=0.5: must lie in \[1, 3\]"),
        ({"pue": "lots"}, "pue='lots'"),
        ({"history_tries": -1}, r"history_tries=-1: must lie in \[0, 1000\]"),
        ({"history_tries": 2.5}, "history_tries=2.5: must be a whole number"),
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


def test_the_meter_the_pue_and_the_history_come_from_the_task_default_args_or_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CARBON__PUE", "1.4")
    monkeypatch.setenv("AIRFLOW__CARBON__HISTORY_TRIES", "5")
    settings = resolve("t", {"energy_meter": "nvml"}, {"history_tries": 3})
    assert (settings.energy_meter, settings.pue, settings.history_tries) == ("nvml", 1.4, 3)
    assert resolve("t", {}).energy_meter == "auto"
    # the PUE scales every planned energy: declared, or power over the expected duration
    assert resolve("t", {"energy_kwh": 1.0}).planned_energy_kwh == pytest.approx(1.4)


def test_a_duration_is_declared_on_the_task_or_in_default_args_never_by_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CARBON__EXPECTED_DURATION", "1h")
    assert not resolve("t", {}).duration_declared
    assert resolve("t", {"expected_duration": "5min"}).duration_declared
    assert resolve("t", {}, {"expected_duration": "5min"}).duration_declared


def test_settings_carried_by_the_previous_release_take_the_new_defaults():
    data = resolve("t", {}).to_json()
    for name in ("energy_meter", "pue", "history_tries", "duration_declared", "history_energy_kwh", "expected_from"):
        del data[name]
    settings = CarbonSettings.from_json("t", data)
    assert (settings.energy_meter, settings.pue, settings.history_tries) == ("auto", 1.0, 10)
    assert (settings.duration_declared, settings.history_energy_kwh, settings.expected_from) == (True, None, None)


def test_settings_read_back_from_json_are_checked_again():
    data = resolve("t", {}).to_json() | {"policy": "greenest"}
    with pytest.raises(CarbonSettingsError, match="task 'summarize': carbon setting policy='greenest'"):
        CarbonSettings.from_json("summarize", data)


def test_settings_a_trigger_carries_back_may_hold_a_max_delay_of_0_from_an_earlier_version():
    data = resolve("t", {"max_delay": "1h"}).to_json() | {"max_delay": 0}
    assert CarbonSettings.from_json("t", data).max_delay == timedelta(0)


def test_a_region_without_bundled_data_is_refused_when_nothing_names_a_source(monkeypatch):
    monkeypatch.delenv("AIRFLOW__CARBON__SOURCE", raising=False)
    message = (r"task 'summarize': carbon setting region='XX': no bundled data for region 'XX'; bundled regions: "
               r"DE, FR, US-TX\. The task names no source \(nor do default_args or \[carbon\] source\)")
    with pytest.raises(CarbonSettingsError, match=message):
        check_task("summarize", {"region": "XX"}, None)
    with pytest.raises(CarbonSettingsError, match=message):
        check_task("summarize", {}, {"region": "XX", "retries": 2})
    check_task("summarize", {"region": "fr "}, None)  # bundled, in any case
    check_task("summarize", {"region": "XX", "source": "watttime_default"}, None)
    check_task("summarize", {"region": "XX"}, {"source": "watttime_default"})
    check_task("summarize", {"region": "{{ params.region }}"}, None)
    monkeypatch.setenv("AIRFLOW__CARBON__SOURCE", "watttime_default")
    check_task("summarize", {"region": "XX"}, None)


def test_default_args_may_give_max_delay_to_a_task_that_gives_a_deadline():
    check_task("t", {"deadline": "2026-01-01T00:00:00Z"}, {"max_delay": "2h"})
    with pytest.raises(CarbonSettingsError, match="given together"):
        check_task("t", {}, {"deadline": "2026-01-01T00:00:00Z", "max_delay": "2h"})


def test_a_solar_source_a_site_and_a_solar_threshold_come_from_the_task_default_args_or_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CARBON__SOLAR", "roof")
    monkeypatch.setenv("AIRFLOW__CARBON__SOLAR_THRESHOLD_KW", "1.5")
    settings = resolve("t", {}, {"site": "hall-2"})
    assert (settings.solar, settings.site, settings.solar_threshold_kw) == ("roof", "hall-2", 1.5)
    assert settings.policy_settings().solar_threshold_kw == 1.5
    assert CarbonSettings.from_json("t", json.loads(json.dumps(settings.to_json()))) == settings
    monkeypatch.delenv("AIRFLOW__CARBON__SOLAR")
    monkeypatch.delenv("AIRFLOW__CARBON__SOLAR_THRESHOLD_KW")
    plain = resolve("t", {})
    assert (plain.solar, plain.site, plain.solar_threshold_kw) == (None, None, None)


def test_settings_of_the_previous_release_without_solar_read_back_as_none():
    data = {name: value for name, value in resolve("t", {}).to_json().items()
            if name not in ("solar", "site", "solar_threshold_kw")}
    assert CarbonSettings.from_json("t", data).solar is None


@pytest.mark.parametrize(("given", "message"), [
    ({"solar_threshold_kw": -1}, "solar_threshold_kw=-1: must be a finite number >= 0"),
    ({"solar": "  "}, "solar='  ': must be a non-empty string"),
    ({"site": 3}, "site=3: must be a non-empty string"),
])
def test_bad_solar_settings_name_the_task_and_the_setting(given, message):
    with pytest.raises(CarbonSettingsError, match=re.escape(f"task 't': carbon setting {message}")):
        check_given("t", given)
