"""Meters around a task's work: what its CPU, memory and GPUs drew, read from the hardware where it can be.

``Metering.start(energy_meter, task_id)`` starts what the ``energy_meter`` setting asks for and this machine has;
``stop()`` returns what they read, as ``accounting.energy.Component`` values, and notes for the record. A meter that
fails costs its figure, never the task: one WARNING line in the task's log and a note on the record. The libraries
(codecarbon, nvidia-ml-py) are the ``airflow-carbon[energy]`` extra, imported only when a meter starts.

No Airflow here: the operators call this package.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from airflow_carbon.accounting.energy import Component, Meter
from airflow_carbon.meters.cpu import CodecarbonMeter
from airflow_carbon.meters.gpu import NothingToMeter, NvmlMeter

__all__ = ["CodecarbonMeter", "Metering", "NvmlMeter"]

log = logging.getLogger(__name__)

EXTRA = "airflow-carbon[energy]"
#: The meters each ``energy_meter`` value starts, in order (``accounting.energy.METERS``).
_KINDS: dict[str, tuple[str, ...]] = {
    "auto": ("codecarbon", "nvml"),
    "codecarbon": ("codecarbon", "nvml"),
    "nvml": ("nvml",),
    "declared": (),
}
#: The package that brings each module, for the note that names what is missing.
_PACKAGES = {"pynvml": "nvidia-ml-py"}


class Metering:
    """The meters of one try's work; never raises into the task."""

    def __init__(self, energy_meter: str, task_id: str) -> None:
        self.energy_meter = energy_meter
        self.task_id = task_id
        self._meters: list[Meter] = []
        self._tried: list[Any] = []
        self._notes: list[str] = []
        self._result: tuple[tuple[Component, ...], tuple[str, ...]] | None = None

    @classmethod
    def start(cls, energy_meter: str, task_id: str) -> Metering:
        """Start the meters ``energy_meter`` asks for that this machine has."""
        metering = cls(energy_meter, task_id)
        try:
            metering._start()
        except Exception as error:  # a bug of ours must not fail the task either
            log.warning("carbon: task %r: energy meters could not start (%s); its energy is the declared figure",
                        task_id, error)
            metering._notes.append(f"the energy meters could not start ({error})")
        return metering

    def stop(self) -> tuple[tuple[Component, ...], tuple[str, ...]]:
        """Stop the meters (once: later calls return the same reading): the components read, and notes."""
        if self._result is None:
            components: list[Component] = []
            for meter in self._meters:
                try:
                    components.extend(meter.stop())
                except Exception as error:
                    self._failed(meter.name, "stop", error)
            notes = [*self._notes, *(note for meter in self._tried for note in meter.notes)]
            self._result = tuple(components), tuple(notes)
        return self._result

    def _start(self) -> None:
        kinds = _KINDS.get(self.energy_meter)
        if kinds is None:
            log.warning("carbon: task %r: unknown energy_meter %r, nothing is metered", self.task_id,
                        self.energy_meter)
            self._notes.append(f"unknown energy_meter {self.energy_meter!r}: nothing metered")
            return
        missing: list[str] = []
        for kind in kinds:
            meter = self._make(kind)
            self._tried.append(meter)
            try:
                meter.start()
            except ImportError as error:
                module = (error.name or kind).partition(".")[0]
                missing.append(_PACKAGES.get(module, module))
            except NothingToMeter as nothing:
                if self.energy_meter == "nvml":
                    self._notes.append(f"energy_meter=nvml: {nothing}, so no GPU is metered")
            except Exception as error:
                self._failed(meter.name, "start", error)
            else:
                self._meters.append(meter)
        if missing:
            self._missing(missing)

    def _make(self, kind: str) -> Any:
        if kind == "nvml":
            return NvmlMeter(warn=self._warner("nvml"))
        return CodecarbonMeter()

    def _warner(self, meter: str) -> Callable[[str], None]:
        def warn(message: str) -> None:
            log.warning("carbon: task %r: energy meter %s: %s", self.task_id, meter, message)

        return warn

    def _failed(self, meter: str, phase: str, error: Exception) -> None:
        self._warner(meter)(f"failed at {phase} ({type(error).__name__}: {error}); what it meters is not counted")
        self._notes.append(f"the {meter} meter failed at {phase} ({error}), so what it meters is not counted")

    def _missing(self, packages: list[str]) -> None:
        """Say which part of the energy no meter reads because the extra is not installed."""
        names = {meter.name for meter in self._meters}
        if not names:
            what = "the energy comes from what is declared"
        elif "codecarbon" not in names:
            what = "the CPU and memory are not metered"
        else:
            what = "GPUs are not metered"
        self._notes.append(f"the extra {EXTRA} is not installed (no {', '.join(packages)}): {what}")
        if self.energy_meter != "auto":
            log.warning("carbon: task %r: energy_meter=%s needs the extra %s (no %s): %s", self.task_id,
                        self.energy_meter, EXTRA, ", ".join(packages), what)
