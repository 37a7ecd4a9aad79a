"""The energy of the GPUs the task can see, from NVML's energy counters.

NVML counts each device's energy in millijoules since the driver loaded (``nvmlDeviceGetTotalEnergyConsumption``,
Volta and later). The difference between the reads at start and at stop is the whole device's energy over the run,
whatever else ran on it: the scope is ``device``, and other processes seen on it are named in a note. Any NVML
error is turned into a note (and a warning through ``warn``): a device that cannot be read is never counted as 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from airflow_carbon.accounting.energy import DEVICE, MEASURED_NVML, Component
from airflow_carbon.errors import CarbonError

log = logging.getLogger(__name__)

#: NVML's energy counter is a uint64 of millijoules.
COUNTER_MODULUS_MJ = 2**64
#: More than any GPU draws: a wrapped difference above this power over the run is a reset, not a wrap.
MAX_PLAUSIBLE_POWER_W = 5000.0
MJ_PER_KWH = 3.6e9

# NVML's return codes (nvml.h); the binding raises ``NVMLError(code)``.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_NOT_FOUND = 6
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_GPU_IS_LOST = 15


def _nvml() -> ModuleType:
    """The NVML binding (``nvidia-ml-py``); ImportError without the ``[energy]`` extra."""
    import pynvml

    return pynvml


class NothingToMeter(CarbonError):
    """No GPU to meter here (no NVIDIA driver, or none visible to the task): not an error unless GPUs were asked for."""


def counter_energy_kwh(start_mj: int, end_mj: int, elapsed_s: float) -> tuple[float | None, str | None]:
    """The energy between two reads of a device's counter, and a note when the counter went backwards.

    A uint64 counter that wrapped leaves a small difference modulo 2**64; a driver reload restarts it from 0, which
    leaves an implausible one (more than ``MAX_PLAUSIBLE_POWER_W`` over the run): then the energy is unknown.
    """
    delta_mj = end_mj - start_mj
    if delta_mj >= 0:
        return delta_mj / MJ_PER_KWH, None
    wrapped_mj = delta_mj % COUNTER_MODULUS_MJ
    if wrapped_mj / 1000.0 < MAX_PLAUSIBLE_POWER_W * elapsed_s:
        return wrapped_mj / MJ_PER_KWH, "counter wrapped"
    return None, "counter reset (driver reloaded?): energy unknown"


def _code(error: Exception) -> int | None:
    return getattr(error, "value", None)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _own_pids() -> set[int]:
    """This process and its descendants: the task's own work on a device is not "another process"."""
    pids = {os.getpid()}
    try:
        import psutil

        pids.update(child.pid for child in psutil.Process().children(recursive=True))
    except Exception:  # psutil missing or a child gone while listed: the task's own pid still counts
        pass
    return pids


@dataclass
class _Device:
    index: int
    uuid: str
    start_mj: int
    #: Processes other than ours seen on it; None while its processes could not be listed.
    other_pids: set[int] | None


class NvmlMeter:
    """The energy of each visible GPU between ``start`` and ``stop``, one ``gpu:<index>`` component each.

    :param nvml: the NVML binding, or a stand-in; None: ``pynvml``, imported at ``start``.
    :param environ: where ``CUDA_VISIBLE_DEVICES`` and ``CUDA_DEVICE_ORDER`` are read; None: ``os.environ``.
    :param warn: told each problem that loses a device's energy (the caller logs it with the task's name).
    :param clock: seconds, monotonic; bounds a plausible counter wrap.
    """

    name = "nvml"

    def __init__(self, nvml: ModuleType | Any | None = None, environ: Mapping[str, str] | None = None,
                 warn: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._module = nvml
        self._environ = os.environ if environ is None else environ
        self._warn = warn or log.warning
        self._clock = clock
        self._nvml: Any = None
        self._devices: list[_Device] = []
        self._started_s = 0.0
        #: What the record should say beyond each component's own note (devices dropped, MIG, index order).
        self.notes: list[str] = []

    def start(self) -> None:
        """Open NVML and read the counter of every visible device.

        :raises ImportError: no ``pynvml``.
        :raises NothingToMeter: no NVIDIA driver here, or no device visible.
        """
        nvml = self._module if self._module is not None else _nvml()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as error:
            if _code(error) in (_LIBRARY_NOT_FOUND, _DRIVER_NOT_LOADED):
                raise NothingToMeter(f"no GPU here (NVML: {error})") from None
            raise
        self._nvml = nvml
        try:
            indices = self._visible(nvml, nvml.nvmlDeviceGetCount())
            for index in indices:
                self._open(nvml, index)
        except BaseException:
            self._shutdown()
            raise
        if not self._devices:
            self._shutdown()
            if not indices:
                raise NothingToMeter(f"no GPU visible to the task{self._describe_visible()}")
        self._started_s = self._clock()

    def stop(self) -> tuple[Component, ...]:
        """Read every device again; a device gone or a counter reset gives energy None with a note."""
        elapsed_s = self._clock() - self._started_s
        try:
            return tuple(self._read(self._nvml, device, elapsed_s) for device in self._devices)
        finally:
            self._devices = []
            self._shutdown()

    def _describe_visible(self) -> str:
        value = self._environ.get("CUDA_VISIBLE_DEVICES")
        return "" if value is None else f" (CUDA_VISIBLE_DEVICES={value!r})"

    def _visible(self, nvml: Any, count: int) -> list[int]:
        """NVML indices of the devices the task can see, as CUDA reads ``CUDA_VISIBLE_DEVICES``.

        Unset: all. CUDA stops at the first entry that names no device (so ``""`` and ``-1`` hide all). ``GPU-...``
        matches a device's UUID by prefix; a ``MIG-...`` instance has no energy counter of its own.
        """
        value = self._environ.get("CUDA_VISIBLE_DEVICES")
        if value is None:
            return list(range(count))
        indices: list[int] = []
        numbered = False
        for token in (part.strip() for part in value.split(",")):
            if token.startswith("MIG-"):
                self.notes.append(f"CUDA_VISIBLE_DEVICES names the MIG instance {token}: a MIG instance has no "
                                  "energy counter, so its energy is unknown and not counted")
                continue
            index: int | None = None
            if token.startswith("GPU-"):
                index = self._index_of_uuid(nvml, count, token)
            elif token.isdigit() and int(token) < count:
                index, numbered = int(token), True
            if index is None:
                if token not in ("", "-1"):
                    self.notes.append(f"CUDA_VISIBLE_DEVICES entry {token!r} names no device here: CUDA sees "
                                      "neither it nor the entries after it")
                break
            if index not in indices:
                indices.append(index)
        if numbered and count > 1 and self._environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
            self.notes.append(f"CUDA_VISIBLE_DEVICES={value!r} read as NVML indices; without "
                              "CUDA_DEVICE_ORDER=PCI_BUS_ID, CUDA may number the devices in another order")
        return indices

    @staticmethod
    def _index_of_uuid(nvml: Any, count: int, prefix: str) -> int | None:
        matches = []
        for index in range(count):
            try:
                uuid = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index)))
            except nvml.NVMLError:
                continue
            if uuid.startswith(prefix):
                matches.append(index)
        return matches[0] if len(matches) == 1 else None

    def _open(self, nvml: Any, index: int) -> None:
        """Read the device's counter at start; a device that cannot be read is dropped with a note."""
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            start_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except nvml.NVMLError as error:
            code = _code(error)
            if code == _NO_PERMISSION:
                why = "no permission to read it"
            elif code == _NOT_SUPPORTED:
                why = "it has no energy counter (before Volta?)"
            elif code == _GPU_IS_LOST:
                why = "it is lost"
            else:
                why = "it could not be read"
            note = f"gpu:{index}: {why} (NVML: {error}) at start, so its energy is not counted"
            self.notes.append(note)
            self._warn(note)
            return
        self._devices.append(_Device(index, uuid, start_mj, self._other_pids(nvml, handle)))

    @staticmethod
    def _other_pids(nvml: Any, handle: Any) -> set[int] | None:
        try:
            processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except nvml.NVMLError:
            return None
        return {process.pid for process in processes} - _own_pids()

    def _read(self, nvml: Any, device: _Device, elapsed_s: float) -> Component:
        name = f"gpu:{device.index}"
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(device.uuid)
            end_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except nvml.NVMLError as error:
            gone = _code(error) in (_GPU_IS_LOST, _NOT_FOUND)
            note = (f"device gone at stop (NVML: {error}): energy unknown" if gone
                    else f"could not be read at stop (NVML: {error}): energy unknown")
            self._warn(f"{name}: {note}")
            return Component(name, None, MEASURED_NVML, DEVICE, note)
        energy_kwh, note = counter_energy_kwh(device.start_mj, end_mj, elapsed_s)
        if energy_kwh is None:
            self._warn(f"{name}: {note}")
        notes = [note] if note else []
        at_stop = self._other_pids(nvml, handle)
        if device.other_pids is None and at_stop is None:
            notes.append("its processes could not be listed, so others may have shared it; the device's whole "
                         "energy is counted")
        else:
            others = (device.other_pids or set()) | (at_stop or set())
            if others:
                plural = "process" if len(others) == 1 else "processes"
                notes.append(f"shared with {len(others)} other {plural}; the device's whole energy is counted")
        return Component(name, energy_kwh, MEASURED_NVML, DEVICE, "; ".join(notes) or None)

    def _shutdown(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            with contextlib.suppress(nvml.NVMLError):  # gone with the driver: nothing left to release
                nvml.nvmlShutdown()
