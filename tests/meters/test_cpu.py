"""The codecarbon meter on this machine: a CPU-busy loop gives non-zero CPU and memory energy, named by its method."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from airflow_carbon.accounting.energy import (
    ESTIMATED_CPU_MODEL,
    ESTIMATED_RAM_MODEL,
    MACHINE_SPLIT,
    MEASURED_RAPL,
    PROCESS,
    energy_of,
)
from airflow_carbon.meters import Metering, cpu

EXTRA_MISSING = ("the extra airflow-carbon[energy] is not installed (no codecarbon, nvidia-ml-py): the energy comes "
                 "from what is declared")


def busy(seconds: float) -> int:
    count = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        count += 1
    return count


@pytest.fixture(scope="module")
def metered_run(tmp_path_factory):
    """One real codecarbon run around 1.5 s of busy loop, in an empty directory: what it read and left behind."""
    pytest.importorskip("codecarbon")
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        threads_before = set(threading.enumerate())
        metering = Metering.start("codecarbon", "cpu_bound")
        busy(1.5)
        components, notes = metering.stop()
        threads_after = set(threading.enumerate())
    return {c.name: c for c in components}, notes, threads_after - threads_before, list(cwd.iterdir())


def test_a_busy_loop_gives_cpu_and_ram_energy_with_their_method_and_scope(metered_run):
    components, notes, _, _ = metered_run
    cpu_part, ram = components["cpu"], components["ram"]
    assert cpu_part.energy_kwh > 0 and ram.energy_kwh > 0
    # Here (a VM without RAPL) codecarbon estimates; where RAPL is readable the CPU's figure is a split counter.
    assert (cpu_part.method, cpu_part.scope) in {(ESTIMATED_CPU_MODEL, PROCESS), (MEASURED_RAPL, MACHINE_SPLIT)}
    assert (ram.method, ram.scope) == (ESTIMATED_RAM_MODEL, PROCESS)
    if cpu_part.method == ESTIMATED_CPU_MODEL:
        assert cpu_part.note is None
    assert notes == ()


def test_the_meter_writes_no_file_and_leaves_no_thread(metered_run):
    _, _, new_threads, files = metered_run
    assert files == []
    assert new_threads == set()


def test_the_components_make_the_records_energy_with_a_combined_method(metered_run):
    components, _, _, _ = metered_run
    energy = energy_of(list(components.values()), run_s=1.5, pue=1.2, assumed_power_kw=0.3)
    cpu_part, ram = components["cpu"], components["ram"]
    assert energy.method == f"cpu={cpu_part.method}, ram={ESTIMATED_RAM_MODEL}"
    assert energy.estimated and energy.metered
    assert energy.breakdown_kwh == {"cpu": cpu_part.energy_kwh, "ram": ram.energy_kwh}
    assert energy.energy_kwh == pytest.approx((cpu_part.energy_kwh + ram.energy_kwh) * 1.2)


def test_auto_without_the_extra_meters_nothing_and_says_the_energy_is_declared(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    metering = Metering.start("auto", "summarize")
    assert metering.stop() == ((), (EXTRA_MISSING,))
    assert caplog.records == []  # auto falls back quietly: the record says it


def test_codecarbon_asked_for_without_the_extra_warns(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    components, notes = Metering.start("codecarbon", "summarize").stop()
    assert (components, notes) == ((), (EXTRA_MISSING,))
    assert len(caplog.records) == 1 and "energy_meter=codecarbon needs the extra" in caplog.records[0].getMessage()


def test_declared_meters_nothing_and_says_nothing():
    assert Metering.start("declared", "t").stop() == ((), ())


def test_an_unknown_meter_is_noted_not_raised(caplog):
    components, notes = Metering.start("joulemeter", "t").stop()
    assert components == () and notes == ("unknown energy_meter 'joulemeter': nothing metered",)


def test_a_rapl_figure_is_split_by_the_process_share_of_the_machines_busy_cpu_time(monkeypatch, tmp_path):
    """Where codecarbon reads RAPL (not on this VM), the machine-wide counter is split; played here."""
    pytest.importorskip("codecarbon")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cpu, "_uses_rapl", lambda tracker: True)
    busy_cpu_s = iter([(10.0, 100.0), (12.0, 104.0)])  # (process, machine) at start and at stop: a 50 % share
    monkeypatch.setattr(cpu, "_busy_cpu_s", lambda: next(busy_cpu_s))
    meter = cpu.CodecarbonMeter()
    meter.start()
    busy(0.3)
    tracker = meter._tracker
    cpu_part, ram = meter.stop()
    assert cpu_part.energy_kwh == pytest.approx(tracker.final_emissions_data.cpu_energy * 0.5)
    assert (cpu_part.method, cpu_part.scope) == (MEASURED_RAPL, MACHINE_SPLIT)
    assert cpu_part.note == "the machine's RAPL energy times this process's share of its busy CPU time (50.0%)"
    assert (ram.method, ram.scope) == (ESTIMATED_RAM_MODEL, PROCESS)


def test_the_cpu_model_the_kernel_names_spares_codecarbon_its_probe_and_leaves_py_cpuinfo_as_it_was(tmp_path):
    """Every task runs in a new process: py-cpuinfo's probe (a subprocess, 1.4-1.8 s) would be paid by each."""
    import cpuinfo
    from codecarbon.core.util import detect_cpu_model

    (tmp_path / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: Test\nmodel name\t: Test CPU 9000 @ 2.0GHz\n")
    probe = cpuinfo.get_cpu_info
    detect_cpu_model.cache_clear()
    try:
        cpu._name_cpu_model(str(tmp_path / "cpuinfo"))
        assert detect_cpu_model() == "Test CPU 9000 @ 2.0GHz"
        assert cpuinfo.get_cpu_info is probe
        detect_cpu_model.cache_clear()
        cpu._name_cpu_model(str(tmp_path / "absent"))  # no such file: codecarbon will probe as before
        assert detect_cpu_model.cache_info().currsize == 0
    finally:
        detect_cpu_model.cache_clear()
