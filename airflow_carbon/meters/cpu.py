"""The energy of the CPU and memory, from codecarbon: RAPL counters where readable, else its estimate.

codecarbon runs offline in ``process`` mode: it touches no network, writes no file and reads no GPU for us (NVML is
read by ``gpu.NvmlMeter``, so its ``gpu_energy`` is ignored). Without RAPL, its CPU figure is an estimate from the
CPU model's power and this process's (and its children's) CPU time, and its memory figure an estimate from the
memory the process holds: both are the process's own (scope ``process``). RAPL counts the whole package, even in
process mode: that figure is split by the process's share of the machine's busy CPU time (scope ``machine-split``).
"""

from __future__ import annotations

import glob
import logging
import threading
from typing import Any

from airflow_carbon.accounting.energy import (
    ESTIMATED_CPU_MODEL,
    ESTIMATED_RAM_MODEL,
    MACHINE_SPLIT,
    MEASURED_RAPL,
    PROCESS,
    Component,
)

log = logging.getLogger(__name__)

#: Explicit, so no codecarbon config file nor CODECARBON_* variable can add an output, a network call, a PUE (ours
#: is applied to the record) or a forced power. The country only feeds codecarbon's own emissions, which we ignore.
_TRACKER_OPTIONS: dict[str, Any] = {
    "output_methods": [],
    "emissions_endpoint": None,
    "tracking_mode": "process",
    "log_level": "error",
    "allow_multiple_runs": True,
    "measure_power_secs": 15,
    "country_iso_code": "USA",
    "cloud_provider": None,
    "cloud_region": None,
    "pue": 1.0,
    "force_cpu_power": None,
    "force_ram_power": None,
    "force_mode_cpu_load": False,
    "rapl_include_dram": False,
    "rapl_prefer_psys": False,
}
_RAPL_MODES = ("intel_rapl", "windows_emi")
_RAPL_COUNTERS = "/sys/class/powercap/intel-rapl*/energy_uj"

#: How long to wait for each timer thread to end once cancelled (it ends at once unless its callback is running).
_TIMER_JOIN_S = 1.0


def _tracker() -> Any:
    """A new codecarbon tracker; ImportError without the ``[energy]`` extra."""
    from codecarbon import OfflineEmissionsTracker

    # Before the tracker exists: its constructor logs at INFO and WARNING before it applies ``log_level``.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    _name_cpu_model()
    return OfflineEmissionsTracker(**_TRACKER_OPTIONS)


def _name_cpu_model(cpuinfo_path: str = "/proc/cpuinfo") -> None:
    """Tell codecarbon the CPU model the kernel names, so its first tracker in a process skips py-cpuinfo's probe.

    That probe runs a Python subprocess that also times the CPU (1.4-1.8 s here), and every task runs in a new process:
    it alone would add more than a second to each metered run. codecarbon only reads the probe's ``brand_raw``
    (``codecarbon.core.util.detect_cpu_model``, cached per process), which on Linux is the brand string the kernel
    shows as ``model name``. Without that line (not Linux, some ARM kernels) codecarbon probes as before.
    """
    try:
        with open(cpuinfo_path) as cpuinfo_file:
            model = next((line.partition(":")[2].strip() for line in cpuinfo_file
                          if line.startswith("model name")), "")
    except OSError:
        return
    if not model:
        return
    import cpuinfo
    from codecarbon.core.util import detect_cpu_model

    probe = cpuinfo.get_cpu_info
    cpuinfo.get_cpu_info = lambda: {"brand_raw": model}
    try:
        detect_cpu_model()
    finally:
        cpuinfo.get_cpu_info = probe


def _stop(tracker: Any) -> None:
    """Stop the tracker and wait for its timer threads to end, so none is left behind it.

    codecarbon cancels its ``threading.Timer`` threads without joining them, and a timer that fires while it stops
    re-arms itself; its timers are found by the tracker their callback belongs to (never the task's own timers).
    """
    tracker.stop()
    for _ in range(3):
        timers = [thread for thread in threading.enumerate() if _timer_of(thread, tracker)]
        if not timers:
            return
        for timer in timers:
            timer.cancel()
            timer.join(_TIMER_JOIN_S)


def _timer_of(thread: threading.Thread, tracker: Any) -> bool:
    """Whether the thread is a timer of the tracker's schedulers (``Timer.function`` is a scheduler's ``_run``)."""
    scheduler = getattr(getattr(thread, "function", None), "__self__", None)
    return isinstance(thread, threading.Timer) and getattr(getattr(scheduler, "function", None), "__self__",
                                                           None) is tracker


def rapl_readable() -> bool:
    """Whether a RAPL energy counter can be read here (codecarbon then measures the CPU rather than estimating)."""
    for path in glob.glob(_RAPL_COUNTERS):
        try:
            with open(path) as counter:
                counter.read()
        except OSError:
            continue
        return True
    return False


def _uses_rapl(tracker: Any) -> bool:
    """Whether the tracker's CPU figure comes from RAPL: its CPU's mode, else whether RAPL is readable here."""
    modes = [getattr(part, "_mode", None) for part in getattr(tracker, "_hardware", ()) if type(part).__name__ == "CPU"]
    if modes and modes[0] is not None:
        return modes[0] in _RAPL_MODES
    return rapl_readable()


def _busy_cpu_s() -> tuple[float, float]:
    """CPU seconds of this process and its descendants, and of the whole machine, excluding idle and I/O wait."""
    import psutil

    process_s = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:  # a child that ended while listed: its time is in our children_* once reaped
            continue
        process_s += times.user + times.system + times.children_user + times.children_system
    machine = psutil.cpu_times()
    machine_s = sum(getattr(machine, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq"))
    return process_s, machine_s


class CodecarbonMeter:
    """The ``cpu`` and ``ram`` components of the work between ``start`` and ``stop``."""

    name = "codecarbon"

    def __init__(self) -> None:
        self._tracker: Any = None
        #: The busy CPU seconds (process, machine) at start, when the CPU figure comes from RAPL and must be split.
        self._busy_at_start: tuple[float, float] | None = None
        #: Nothing beyond the components' own notes; here for the same shape as the other meters.
        self.notes: list[str] = []

    def start(self) -> None:
        """:raises ImportError: no codecarbon."""
        tracker = _tracker()
        tracker.start()
        self._tracker = tracker
        self._busy_at_start = _busy_cpu_s() if _uses_rapl(tracker) else None

    def stop(self) -> tuple[Component, ...]:
        tracker, self._tracker = self._tracker, None
        _stop(tracker)
        # codecarbon swallows its own errors in start and stop (logging them at WARNING): a tracker that did not run
        # has no final data.
        data = getattr(tracker, "final_emissions_data", None)
        if data is None:
            raise RuntimeError("codecarbon read nothing: its start or stop failed (its 'codecarbon' logger says why "
                               "at WARNING)")
        ram = Component("ram", float(data.ram_energy), ESTIMATED_RAM_MODEL, PROCESS)
        cpu_kwh = float(data.cpu_energy)
        if self._busy_at_start is None:
            return Component("cpu", cpu_kwh, ESTIMATED_CPU_MODEL, PROCESS), ram
        (process_s, machine_s), (process_at_start_s, machine_at_start_s) = _busy_cpu_s(), self._busy_at_start
        process_s, machine_s = process_s - process_at_start_s, machine_s - machine_at_start_s
        share = min(max(process_s / machine_s, 0.0), 1.0) if machine_s > 0 else 0.0
        note = f"the machine's RAPL energy times this process's share of its busy CPU time ({share:.1%})"
        return Component("cpu", cpu_kwh * share, MEASURED_RAPL, MACHINE_SPLIT, note), ram
