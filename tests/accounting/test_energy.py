"""A try's energy from its meters' components, else from what it declared, with the method and scope that say how."""

from __future__ import annotations

import pytest

from airflow_carbon.accounting.energy import Component, energy_of, gated, metered


def cpu(kwh: float | None = 0.01, method: str = "estimated-cpu-model", note: str | None = None) -> Component:
    return Component("cpu", kwh, method, "process", note)


def test_no_component_takes_the_declared_energy_then_power_over_time_then_the_assumed_power():
    declared = energy_of((), run_s=3600, pue=1.0, energy_kwh=2.0, power_kw=None, assumed_power_kw=0.3)
    assert (declared.energy_kwh, declared.method, declared.scope, declared.estimated) == (2.0, "declared", "task", True)
    power = energy_of((), run_s=1800, pue=1.0, power_kw=1.0, assumed_power_kw=0.3)
    assert (power.energy_kwh, power.method) == (0.5, "power-x-time")
    assumed = energy_of((), run_s=7200, pue=1.0, assumed_power_kw=0.3)
    assert (assumed.energy_kwh, assumed.method, assumed.breakdown_kwh) == (pytest.approx(0.6), "assumed-power-x-time",
                                                                          {})


def test_components_sum_times_the_pue_and_name_each_method_when_they_differ():
    components = (Component("gpu:0", 0.2, "measured-nvml", "device"), cpu(0.05), Component(
        "ram", 0.01, "estimated-ram-model", "process"))
    energy = energy_of(components, run_s=60, pue=1.5, assumed_power_kw=0.3)
    assert energy.energy_kwh == pytest.approx(0.26 * 1.5)
    assert energy.breakdown_kwh == {"gpu:0": 0.2, "cpu": 0.05, "ram": 0.01}
    assert energy.method == "gpu:0=measured-nvml, cpu=estimated-cpu-model, ram=estimated-ram-model"
    assert energy.scope == "gpu:0=device, cpu=process, ram=process"
    assert energy.estimated and energy.metered


def test_only_measured_components_make_a_record_not_estimated():
    energy = energy_of((Component("gpu:0", 0.2, "measured-nvml", "device"),
                        Component("gpu:1", 0.1, "measured-nvml", "device")), run_s=60, pue=1.0, assumed_power_kw=0.3)
    assert (energy.method, energy.scope, energy.estimated) == ("measured-nvml", "device", False)


def test_an_unknown_component_counts_nothing_says_why_and_makes_the_record_estimated():
    energy = energy_of((Component("gpu:0", None, "measured-nvml", "device", "the device vanished during the run"),
                        Component("gpu:1", 0.1, "measured-nvml", "device")), run_s=60, pue=1.0, assumed_power_kw=0.3)
    assert energy.energy_kwh == 0.1 and energy.breakdown_kwh == {"gpu:1": 0.1}
    assert energy.notes == ("gpu:0: the device vanished during the run",) and energy.estimated


def test_every_component_unknown_falls_back_to_the_declared_figure_with_the_notes():
    energy = energy_of((cpu(None, note="codecarbon failed"),), run_s=3600, pue=1.2, power_kw=0.5,
                       assumed_power_kw=0.3, notes=("the extra is missing",))
    assert (energy.energy_kwh, energy.method) == (pytest.approx(0.6), "power-x-time")
    assert energy.notes == ("the extra is missing", "cpu: codecarbon failed")


def test_a_declared_figure_beats_an_estimate_when_preferred_but_never_a_measurement():
    estimated = energy_of((cpu(0.01),), run_s=3600, pue=1.0, power_kw=1.0, assumed_power_kw=0.3,
                          prefer_declared=True)
    assert (estimated.energy_kwh, estimated.method) == (1.0, "power-x-time")
    assert "the meters estimated cpu 0.01 kWh (estimated-cpu-model)" in estimated.notes[-1]
    kept = energy_of((cpu(0.01),), run_s=3600, pue=1.0, power_kw=1.0, assumed_power_kw=0.3)
    assert (kept.energy_kwh, kept.method) == (0.01, "estimated-cpu-model")
    measured = energy_of((Component("gpu:0", 0.4, "measured-nvml", "device"),), run_s=3600, pue=1.0, power_kw=1.0,
                         assumed_power_kw=0.3, prefer_declared=True)
    assert (measured.energy_kwh, measured.method) == (0.4, "measured-nvml")


def test_a_sensor_claims_nothing_and_a_method_is_metered_only_when_a_meter_read_it():
    own = gated(1.3)
    assert (own.energy_kwh, own.method, own.scope, own.pue) == (0.0, "none", "gated", 1.3)
    assert not own.metered
    assert metered("cpu=estimated-cpu-model, ram=estimated-ram-model") and metered("measured-nvml")
    assert not metered("declared") and not metered("assumed-power-x-time") and not metered("gated: declared")
