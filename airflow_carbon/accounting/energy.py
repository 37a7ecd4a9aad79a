"""A try's energy and how it was obtained: what a meter read per component, or what was declared or assumed.

Every figure carries its method and its scope, so a record can be traced to how its energy was obtained:

- methods: ``measured-nvml`` (a GPU's energy counter), ``measured-rapl`` (the CPU package's or memory's RAPL
  counter), ``estimated-cpu-model`` / ``estimated-ram-model`` (codecarbon's estimate from the CPU model and the
  process's load, from the memory the process holds), ``declared`` (the task's ``energy_kwh``), ``power-x-time``
  (the task's ``power_kw`` times its run time) and ``assumed-power-x-time`` (``[carbon] power_kw`` times the run time,
  when nothing was declared nor metered);
- scopes: ``process`` (the task's own work), ``machine-split`` (a machine-wide counter, split by the task process's
  share of the machine's busy CPU time), ``device`` (the whole GPUs the task could see, which other processes may
  share; the record then says so in its notes), ``task`` (a declared or assumed figure for the task) and ``gated``
  (a sensor's record: the energy of the tasks it let run, as they recorded it).

Pure: no Airflow, no hardware library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MEASURED_NVML = "measured-nvml"
MEASURED_RAPL = "measured-rapl"
ESTIMATED_CPU_MODEL = "estimated-cpu-model"
ESTIMATED_RAM_MODEL = "estimated-ram-model"
DECLARED = "declared"
POWER_X_TIME = "power-x-time"
ASSUMED_POWER_X_TIME = "assumed-power-x-time"
#: A ``CarbonAwareSensor``'s own record: the sensor draws nothing; the tasks it let run add theirs (scope ``gated``).
NONE = "none"
MEASURED_METHODS = (MEASURED_NVML, MEASURED_RAPL)
#: Methods whose figure came from what the task's own run drew (a counter or an estimate from its load), so an
#: earlier try's energy may plan a later one; declared and assumed figures teach nothing.
METERED_METHODS = (*MEASURED_METHODS, ESTIMATED_CPU_MODEL, ESTIMATED_RAM_MODEL)

PROCESS = "process"
MACHINE_SPLIT = "machine-split"
DEVICE = "device"
TASK = "task"
GATED = "gated"

#: ``energy_meter`` values: ``auto`` meters what it can, ``codecarbon`` CPU and memory (RAPL or estimate) and the
#: GPUs, ``nvml`` the GPUs only, ``declared`` nothing (declared energy, else power times run time).
METERS = ("auto", "codecarbon", "nvml", "declared")


@dataclass(frozen=True)
class Component:
    """What one meter read for one part of the machine over the task's run.

    :param name: ``cpu``, ``ram`` or ``gpu:<index>``.
    :param energy_kwh: IT energy (before PUE); None when it cannot be known (a counter reset, a device gone).
    :param note: why the energy is unknown, or what the figure shares (other processes on the device).
    """

    name: str
    energy_kwh: float | None
    method: str
    scope: str
    note: str | None = None

    @property
    def measured(self) -> bool:
        return self.method in MEASURED_METHODS and self.energy_kwh is not None


class Meter(Protocol):
    """Reads the energy of the work between ``start`` and ``stop``; neither ever raises into the task."""

    #: What it is, for the log: ``codecarbon``, ``nvml``.
    name: str

    def start(self) -> None: ...

    def stop(self) -> tuple[Component, ...]: ...


@dataclass(frozen=True)
class Energy:
    """A try's energy as its record shows it.

    ``energy_kwh`` is the facility's: the IT energy times ``pue``. ``breakdown_kwh`` is the IT energy of each
    component whose energy is known; ``estimated`` is false only when every component was measured.
    """

    energy_kwh: float
    method: str
    scope: str
    breakdown_kwh: dict[str, float]
    notes: tuple[str, ...]
    pue: float
    estimated: bool

    @property
    def metered(self) -> bool:
        return metered(self.method)


def gated(pue: float, gate: str = "sensor") -> Energy:
    """A gate's own energy (a sensor's, a choice between regions'): none. The tasks it gates add theirs to its record
    as each finishes."""
    return Energy(0.0, NONE, GATED, {}, (f"the {gate} draws nothing itself; the energy of the tasks it let run is "
                                         "added to this record as each finishes",), pue, True)


def metered(energy_method: str) -> bool:
    """Whether an ``energy_method`` (one value, or one per component) says a meter read the energy."""
    return any(method in METERED_METHODS for method in _values(energy_method))


def _values(combined: str) -> list[str]:
    """The per-component values of a combined ``cpu=a, gpu:0=b`` (or a single value)."""
    return [part.partition("=")[2] if "=" in part else part for part in combined.split(", ")]


def _combine(pairs: Sequence[tuple[str, str]]) -> str:
    """One value when every component shares it, else ``name=value`` per component."""
    values = {value for _, value in pairs}
    if len(values) == 1:
        return values.pop()
    return ", ".join(f"{name}={value}" for name, value in pairs)


def energy_of(components: Sequence[Component], *, run_s: float, pue: float, energy_kwh: float | None = None,
              power_kw: float | None = None, assumed_power_kw: float, notes: Sequence[str] = (),
              prefer_declared: bool = False) -> Energy:
    """The try's energy from what the meters read; what they did not read comes from what the task declared.

    With no component read (no meter, or a meter that failed), the energy is the declared ``energy_kwh``, else the
    declared ``power_kw`` times ``run_s``, else ``assumed_power_kw`` times ``run_s``. A component whose energy is
    unknown counts nothing and says why in the notes, and the record is then estimated. ``prefer_declared``: a
    declared figure beats components that were only estimated (the author knows the work; a CPU-model estimate does
    not), and the estimate stays in the notes.
    """
    notes = list(notes)
    for component in components:
        if component.note:
            notes.append(f"{component.name}: {component.note}")
    known = [c for c in components if c.energy_kwh is not None]
    declared = energy_kwh is not None or power_kw is not None
    if known and prefer_declared and declared and not any(c.measured for c in components):
        estimate = ", ".join(f"{c.name} {c.energy_kwh:.3g} kWh ({c.method})" for c in known)
        notes.append(f"nothing was measured, so the declared figure is used; the meters estimated {estimate}")
        known = []
    if not known:
        if energy_kwh is not None:
            it_kwh, method = energy_kwh, DECLARED
        elif power_kw is not None:
            it_kwh, method = power_kw * run_s / 3600.0, POWER_X_TIME
        else:
            it_kwh, method = assumed_power_kw * run_s / 3600.0, ASSUMED_POWER_X_TIME
        return Energy(it_kwh * pue, method, TASK, {}, tuple(notes), pue, True)
    breakdown = {c.name: float(c.energy_kwh) for c in known}  # type: ignore[arg-type]
    return Energy(
        energy_kwh=sum(breakdown.values()) * pue,
        method=_combine([(c.name, c.method) for c in components]),
        scope=_combine([(c.name, c.scope) for c in components]),
        breakdown_kwh=breakdown,
        notes=tuple(notes),
        pue=pue,
        estimated=not all(c.measured for c in components),
    )
