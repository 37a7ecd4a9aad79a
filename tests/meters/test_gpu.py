"""The NVML meter against a stand-in NVML library that plays counters: each case recorded honestly, never raising."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from airflow_carbon.accounting.energy import DEVICE, MEASURED_NVML, energy_of
from airflow_carbon.meters import Metering, gpu
from airflow_carbon.meters.gpu import MJ_PER_KWH, NothingToMeter, NvmlMeter, counter_energy_kwh

pynvml = pytest.importorskip("pynvml")
NVMLError = pynvml.NVMLError


@dataclass
class FakeGpu:
    """A device: its counter's successive reads (mJ), and the compute processes seen at each listing."""

    uuid: str
    reads_mj: list[int]
    processes: list[set[int]] = field(default_factory=lambda: [set(), set()])
    #: NVML error code raised by the first counter read (at start).
    fails_at_start: int | None = None
    #: Lost between start and stop (``nvmlDeviceGetHandleByUUID`` raises GPU_IS_LOST).
    vanishes: bool = False
    started: bool = False


class FakeNvml:
    """The part of ``pynvml`` the meter calls; the handle of a device is its ``FakeGpu``."""

    NVMLError = NVMLError

    def __init__(self, *gpus: FakeGpu, init_error: int | None = None) -> None:
        self.gpus = list(gpus)
        self.init_error = init_error
        self.open = 0

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.open += 1

    def nvmlShutdown(self) -> None:
        self.open -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        for device in self.gpus:
            if device.uuid == uuid:
                if device.vanishes and device.started:
                    raise NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
                return device
        raise NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> bytes:
        return handle.uuid.encode()  # older bindings answer bytes

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        if handle.fails_at_start is not None and not handle.started:
            raise NVMLError(handle.fails_at_start)
        handle.started = True
        return handle.reads_mj.pop(0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=None) for pid in handle.processes.pop(0)]


def clock(*seconds: float):
    readings = iter(seconds)
    return lambda: next(readings)


def meter(fake: FakeNvml, env: dict[str, str] | None = None, elapsed_s: float = 10.0, warnings=None) -> NvmlMeter:
    return NvmlMeter(nvml=fake, environ=env or {}, clock=clock(100.0, 100.0 + elapsed_s),
                     warn=None if warnings is None else warnings.append)


def kwh(mj: int) -> float:
    return mj / MJ_PER_KWH


@pytest.fixture
def stand_in(monkeypatch):
    """Make ``Metering`` load the given stand-in instead of ``pynvml``."""
    def use(fake: FakeNvml) -> FakeNvml:
        monkeypatch.setattr(gpu, "_nvml", lambda: fake)
        return fake

    return use


def test_the_visible_devices_are_read_between_start_and_stop_and_nvml_is_closed():
    fake = FakeNvml(FakeGpu("GPU-aaa", [1_000, 9_000]), FakeGpu("GPU-bbb", [5, 6]),
                    FakeGpu("GPU-ccc", [2_000_000, 2_900_000]))
    nvml = meter(fake, {"CUDA_VISIBLE_DEVICES": "2,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    nvml.start()
    components = nvml.stop()
    assert [c.name for c in components] == ["gpu:2", "gpu:0"]
    assert [c.energy_kwh for c in components] == [pytest.approx(kwh(900_000)), pytest.approx(kwh(8_000))]
    assert {(c.method, c.scope, c.note) for c in components} == {(MEASURED_NVML, DEVICE, None)}
    assert fake.gpus[1].reads_mj == [5, 6]  # not visible: never read
    assert nvml.notes == [] and fake.open == 0


def test_all_devices_are_visible_without_cuda_visible_devices():
    fake = FakeNvml(FakeGpu("GPU-aaa", [0, 1]), FakeGpu("GPU-bbb", [0, 2]))
    nvml = meter(fake)
    nvml.start()
    assert [c.name for c in nvml.stop()] == ["gpu:0", "gpu:1"]


def test_indices_without_pci_bus_order_are_read_as_nvml_indices_and_the_record_says_they_may_differ():
    fake = FakeNvml(FakeGpu("GPU-aaa", [0, 1]), FakeGpu("GPU-bbb", [0, 2]))
    nvml = meter(fake, {"CUDA_VISIBLE_DEVICES": "1"})
    nvml.start()
    assert [c.name for c in nvml.stop()] == ["gpu:1"]
    assert len(nvml.notes) == 1 and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in nvml.notes[0]


def test_uuid_prefixes_and_mig_instances_in_cuda_visible_devices():
    fake = FakeNvml(FakeGpu("GPU-aaa-1", [0, 1]), FakeGpu("GPU-bbb-2", [0, 3_600_000]))
    nvml = meter(fake, {"CUDA_VISIBLE_DEVICES": "GPU-bbb,MIG-xyz"})
    nvml.start()
    (component,) = nvml.stop()
    assert component.name == "gpu:1" and component.energy_kwh == pytest.approx(0.001)
    assert len(nvml.notes) == 1 and "MIG-xyz" in nvml.notes[0] and "energy is unknown" in nvml.notes[0]


@pytest.mark.parametrize("visible", ["", "-1", "-1,0"])
def test_an_empty_or_negative_cuda_visible_devices_hides_every_device(visible):
    fake = FakeNvml(FakeGpu("GPU-aaa", [0, 1]))
    with pytest.raises(NothingToMeter, match="no GPU visible"):
        meter(fake, {"CUDA_VISIBLE_DEVICES": visible}).start()
    assert fake.open == 0 and fake.gpus[0].reads_mj == [0, 1]


def test_cuda_stops_at_an_entry_that_names_no_device():
    fake = FakeNvml(FakeGpu("GPU-aaa", [0, 1]), FakeGpu("GPU-bbb", [0, 1]))
    nvml = meter(fake, {"CUDA_VISIBLE_DEVICES": "0,7,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    nvml.start()
    assert [c.name for c in nvml.stop()] == ["gpu:0"]
    assert nvml.notes == ["CUDA_VISIBLE_DEVICES entry '7' names no device here: CUDA sees neither it nor the entries "
                          "after it"]


def test_a_counter_that_wrapped_gives_the_energy_modulo_2_64_and_says_so():
    fake = FakeNvml(FakeGpu("GPU-aaa", [2**64 - 1_000, 500]))
    nvml = meter(fake, elapsed_s=10.0)
    nvml.start()
    (component,) = nvml.stop()
    assert component.energy_kwh == pytest.approx(kwh(1_500))
    assert component.note == "counter wrapped"


def test_a_counter_that_restarted_gives_unknown_energy_never_a_negative_or_huge_one():
    warnings: list[str] = []
    fake = FakeNvml(FakeGpu("GPU-aaa", [7_000_000_000, 12_000]))
    nvml = meter(fake, elapsed_s=10.0, warnings=warnings)
    nvml.start()
    (component,) = nvml.stop()
    assert component.energy_kwh is None and component.note == "counter reset (driver reloaded?): energy unknown"
    assert warnings == ["gpu:0: counter reset (driver reloaded?): energy unknown"]


def test_the_wrap_is_plausible_only_below_5_kw_over_the_run():
    assert counter_energy_kwh(2**64 - 1, 49_999_998, 10.0) == (pytest.approx(kwh(49_999_999)), "counter wrapped")
    assert counter_energy_kwh(2**64 - 1, 50_000_000, 10.0)[0] is None  # 5 kW x 10 s = 50 kJ = 5e7 mJ
    assert counter_energy_kwh(10, 10, 0.0) == (0.0, None)


def test_a_device_that_vanishes_mid_run_has_unknown_energy_and_the_others_still_count(stand_in, caplog):
    fake = stand_in(FakeNvml(FakeGpu("GPU-aaa", [0, 3_600_000]), FakeGpu("GPU-bbb", [0, 1], vanishes=True)))
    with caplog.at_level(logging.WARNING, logger="airflow_carbon.meters"):
        metering = Metering.start("nvml", "eval_model")
        components, notes = metering.stop()
    assert [(c.name, c.energy_kwh) for c in components] == [("gpu:0", pytest.approx(0.001)), ("gpu:1", None)]
    assert components[1].note.startswith("device gone at stop (NVML: GPU is lost)")
    assert notes == ()
    (warning,) = caplog.records
    assert "'eval_model'" in warning.getMessage() and "energy meter nvml" in warning.getMessage()
    assert "gpu:1: device gone" in warning.getMessage()
    assert fake.open == 0
    energy = energy_of(components, run_s=10, pue=1.0, assumed_power_kw=0.3)
    assert energy.estimated and energy.breakdown_kwh == {"gpu:0": pytest.approx(0.001)}
    assert any(note.startswith("gpu:1: device gone at stop") for note in energy.notes)


def test_a_permission_error_at_start_drops_that_device_with_a_note(stand_in, caplog):
    stand_in(FakeNvml(FakeGpu("GPU-aaa", [], fails_at_start=pynvml.NVML_ERROR_NO_PERMISSION),
                      FakeGpu("GPU-bbb", [0, 7_200_000])))
    with caplog.at_level(logging.WARNING, logger="airflow_carbon.meters"):
        metering = Metering.start("nvml", "tag_images")
        components, notes = metering.stop()
    assert [(c.name, c.energy_kwh) for c in components] == [("gpu:1", pytest.approx(0.002))]
    assert notes == ("gpu:0: no permission to read it (NVML: Insufficient Permissions) at start, so its energy is "
                     "not counted",)
    assert len(caplog.records) == 1 and "'tag_images'" in caplog.records[0].getMessage()


def test_no_nvidia_library_is_silent_under_auto_and_a_note_when_gpus_were_asked_for(stand_in, monkeypatch, caplog):
    stand_in(FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    with caplog.at_level(logging.WARNING, logger="airflow_carbon.meters"):
        nvml_components, nvml_notes = Metering.start("nvml", "t").stop()
        auto_components, auto_notes = Metering.start("auto", "t").stop()
    assert nvml_components == () and auto_components == ()
    assert nvml_notes == ("energy_meter=nvml: no GPU here (NVML: NVML Shared Library Not Found), so no GPU is "
                          "metered",)
    # auto: no GPU is normal; only the missing codecarbon is said
    assert auto_notes == ("the extra airflow-carbon[energy] is not installed (no codecarbon): the energy comes from "
                          "what is declared",)
    assert caplog.records == []


def test_nvml_without_the_binding_names_the_extra_and_warns(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with caplog.at_level(logging.WARNING, logger="airflow_carbon.meters"):
        components, notes = Metering.start("nvml", "t").stop()
    assert components == ()
    assert notes == ("the extra airflow-carbon[energy] is not installed (no nvidia-ml-py): the energy comes from "
                     "what is declared",)
    assert len(caplog.records) == 1 and "needs the extra airflow-carbon[energy]" in caplog.records[0].getMessage()


def test_other_processes_on_a_device_are_counted_in_a_note_ours_are_not():
    ours = os.getpid()
    fake = FakeNvml(FakeGpu("GPU-aaa", [0, 10], processes=[{ours, 111}, {ours, 111, 222}]),
                    FakeGpu("GPU-bbb", [0, 10], processes=[{ours}, set()]))
    nvml = meter(fake)
    nvml.start()
    shared, alone = nvml.stop()
    assert shared.note == "shared with 2 other processes; the device's whole energy is counted"
    assert shared.energy_kwh == pytest.approx(kwh(10)) and alone.note is None


def test_a_device_whose_processes_cannot_be_listed_says_others_may_share_it():
    fake = FakeNvml(FakeGpu("GPU-aaa", [0, 10]))

    def not_supported(handle):
        raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    fake.nvmlDeviceGetComputeRunningProcesses = not_supported
    nvml = meter(fake)
    nvml.start()
    (component,) = nvml.stop()
    assert component.energy_kwh == pytest.approx(kwh(10)) and "could not be listed" in component.note


def test_an_unexpected_error_at_stop_costs_the_meter_not_the_task(stand_in, caplog):
    fake = stand_in(FakeNvml(FakeGpu("GPU-aaa", [0])))  # no second read: the stand-in breaks at stop
    with caplog.at_level(logging.WARNING, logger="airflow_carbon.meters"):
        metering = Metering.start("nvml", "summarize")
        first = metering.stop()
        again = metering.stop()
    assert first == again == ((), ("the nvml meter failed at stop (pop from empty list), so what it meters is not "
                                   "counted",))
    assert len(caplog.records) == 1 and "'summarize'" in caplog.records[0].getMessage()
    assert fake.open == 0


def test_an_nvml_error_at_init_other_than_no_driver_is_a_meter_failure(stand_in, caplog):
    stand_in(FakeNvml(init_error=pynvml.NVML_ERROR_NO_PERMISSION))
    with caplog.at_level(logging.WARNING, logger="airflow_carbon.meters"):
        components, notes = Metering.start("nvml", "t").stop()
    assert components == ()
    assert notes == ("the nvml meter failed at start (Insufficient Permissions), so what it meters is not counted",)
    assert "energy meter nvml: failed at start" in caplog.records[0].getMessage()
