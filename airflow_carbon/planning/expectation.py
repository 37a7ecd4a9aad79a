"""How long a task is expected to run and what it is expected to draw: declared, learned from its history, or the
defaults; and the words that say which, as the decision and the record show them.

A declared value always wins. A task that declares neither is planned on the medians of its last completed tries:
the median, not the mean, so one try that hung or failed fast does not move the plan. Pure: no Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from statistics import median

DECLARED = "declared"
DEFAULTS = "defaults (no history)"
NO_METERED_HISTORY = "defaults (no metered history)"


def from_history(n: int) -> str:
    return f"history (n={n})"


@dataclass(frozen=True)
class History:
    """What a task's last completed tries ran for and drew.

    :param durations_s: the run time of each try.
    :param energies_kwh: the IT energy (before PUE) of each try whose energy a meter read; a declared or assumed
        energy teaches nothing.
    """

    durations_s: tuple[float, ...] = ()
    energies_kwh: tuple[float, ...] = ()


NO_HISTORY = History()


@dataclass(frozen=True)
class Expectation:
    """What the plan counts on when the task declares nothing: a duration from history (else None: keep the
    defaults), an IT energy from history (else None), and where each came from."""

    duration: timedelta | None
    energy_kwh: float | None
    expected_from: str


def expect(history: History, *, duration_declared: bool, energy_declared: bool) -> Expectation:
    """Learn from ``history`` only what the task does not declare.

    When the energy is not declared and no try was metered, the plan takes the assumed power over the expected
    duration, and says the energy came from the defaults.
    """
    if duration_declared:
        duration, duration_from = None, DECLARED
    elif history.durations_s:
        duration = timedelta(seconds=max(median(history.durations_s), 1.0))
        duration_from = from_history(len(history.durations_s))
    else:
        duration, duration_from = None, DEFAULTS
    if energy_declared:
        energy_kwh, energy_from = None, DECLARED
    elif history.energies_kwh:
        energy_kwh, energy_from = median(history.energies_kwh), from_history(len(history.energies_kwh))
    else:
        energy_kwh, energy_from = None, DEFAULTS if not history.durations_s else NO_METERED_HISTORY
    if duration_from == energy_from:
        return Expectation(duration, energy_kwh, duration_from)
    return Expectation(duration, energy_kwh, f"duration: {duration_from}; energy: {energy_from}")
