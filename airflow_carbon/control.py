"""What people decide over the planner: a release, carbon-awareness switched off, a carbon budget.

The rules only: when an eco-mode-off switch holds, which period a budget counts, where spending is heading.
The store keeps the switches (``metrics/control``); the trigger and the task ask these rules. Times are UTC.
No Airflow, no SQLAlchemy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from airflow_carbon.errors import CarbonError
from airflow_carbon.units import parse_duration

#: The periods a budget counts over, each starting at 00:00 UTC (weeks on Monday, months on the 1st).
BUDGET_PERIODS = ("day", "week", "month")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Friendly day sets of a window, as cron day-of-week fields (cron counts Sunday as 0).
DAY_SETS = {"daily": "*", "weekdays": "1-5", "weekends": "0,6"}
_WINDOW = re.compile(r"^\s*(?P<days>[a-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


class ControlInputError(CarbonError, ValueError):
    """A switch, window, budget or period that cannot be read; the message names the field."""


@dataclass(frozen=True)
class Window:
    """A recurring stretch of time: it opens at each time ``cron`` names and lasts ``duration``."""

    text: str
    cron: str
    duration: timedelta

    def holds(self, now: datetime) -> bool:
        opened = croniter(self.cron, now + timedelta(microseconds=1)).get_prev(datetime)
        return opened <= now < opened + self.duration


def parse_window(text: str, field: str = "window") -> Window:
    """``weekdays 08:00-10:00``, ``daily 22:00-02:00``, ``mon,wed-fri 09:00-11:00`` or ``CRON for DURATION``."""
    lowered = str(text).strip().lower()
    cron, sep, duration = lowered.partition(" for ")
    if sep:
        if not croniter.is_valid(cron.strip()) or len(cron.split()) != 5:
            raise ControlInputError(f"{field} {text!r}: {cron.strip()!r} is not a five-field cron expression")
        try:
            length = parse_duration(duration.strip())
        except (TypeError, ValueError) as error:
            raise ControlInputError(f"{field} {text!r}: {error}") from None
        return _window(text, cron.strip(), length, field)
    match = _WINDOW.match(lowered)
    if match is None:
        raise ControlInputError(f"{field} {text!r}: expected 'weekdays 08:00-10:00', 'daily 22:00-02:00', "
                                "'mon,wed 09:00-11:00' or 'CRON for DURATION' (times in UTC)")
    start, end = (_minutes(match[name], text, field) for name in ("start", "end"))
    length = timedelta(minutes=(end - start) % (24 * 60) or 24 * 60)
    return _window(text, f"{start % 60} {start // 60} * * {_days(match['days'], text, field)}", length, field)


def _window(text: str, cron: str, duration: timedelta, field: str) -> Window:
    if duration <= timedelta(0):
        raise ControlInputError(f"{field} {text!r}: its duration must be positive")
    return Window(str(text).strip(), cron, duration)


def _minutes(clock: str, text: str, field: str) -> int:
    hours, minutes = (int(part) for part in clock.split(":"))
    if hours > 23 or minutes > 59:
        raise ControlInputError(f"{field} {text!r}: {clock!r} is not a time of day (HH:MM, UTC)")
    return hours * 60 + minutes


def _days(days: str, text: str, field: str) -> str:
    if days in DAY_SETS:
        return DAY_SETS[days]
    parts = []
    for part in days.split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(end not in DAY_NAMES for end in ends):
            raise ControlInputError(f"{field} {text!r}: {part!r} is not a day ({', '.join(DAY_NAMES)}), a range of "
                                    f"days or one of {', '.join(DAY_SETS)}")
        parts.append("-".join(str((DAY_NAMES.index(end) + 1) % 7) for end in ends))
    return ",".join(parts)


@dataclass(frozen=True)
class EcoSwitch:
    """Carbon-awareness off for one DAG (``dag_id``) or all (None): until ``until``, during ``windows``, or both.

    Neither: off until someone switches it back on.
    """

    dag_id: str | None
    until: datetime | None
    windows: tuple[Window, ...]
    set_by: str
    set_at: datetime
    reason: str | None = None

    def holds(self, now: datetime) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return not self.windows or any(window.holds(now) for window in self.windows)


def eco_off_for(switches: Iterable[EcoSwitch], dag_id: str, now: datetime) -> EcoSwitch | None:
    """The switch that turns this DAG's carbon-awareness off now: its own first, else the global one."""
    holding = [switch for switch in switches if switch.dag_id in (dag_id, None) and switch.holds(now)]
    return min(holding, key=lambda switch: switch.dag_id is None, default=None)


@dataclass(frozen=True)
class Override:
    """Why a waiting task runs now although its plan says wait: a person released it or switched awareness off.

    :param reason: ``released`` or ``eco_off`` (the decision's reason).
    """

    reason: str
    by: str
    at: datetime
    note: str | None = None


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The budget period ``now`` falls in: its first instant and the first of the next one."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        return start, (start + timedelta(days=32)).replace(day=1)
    raise ControlInputError(f"period {period!r} is not one of {', '.join(BUDGET_PERIODS)}")


def projected_g(spent_g: float, start: datetime, end: datetime, now: datetime) -> float:
    """What the period will have spent at its end if it goes on at the pace it has had so far."""
    elapsed_s = (min(now, end) - start).total_seconds()
    if elapsed_s <= 0:
        return spent_g
    return spent_g * (end - start).total_seconds() / elapsed_s


@dataclass(frozen=True)
class Budget:
    """A DAG's carbon budget: at most ``grams`` of CO2 per ``period``; over it, a ``strict`` DAG plans harder."""

    grams: float
    period: str
    strict: bool = False

    def __post_init__(self) -> None:
        if self.period not in BUDGET_PERIODS:
            raise ControlInputError(f"period {self.period!r} is not one of {', '.join(BUDGET_PERIODS)}")
        if not self.grams > 0 or self.grams == float("inf"):
            raise ControlInputError(f"grams {self.grams!r} must be a positive number of grams of CO2")


_BUDGET = re.compile(r"^\s*(?P<grams>[0-9.eE+]+)\s*(?P<unit>g|kg|t)\s*(?:/|per\s+)\s*(?P<period>[a-z]+)\s*$")
_GRAMS_PER = {"g": 1.0, "kg": 1e3, "t": 1e6}


def parse_budget(value: object, field: str = "carbon_budget") -> Budget:
    """``"500 g/day"``, ``"2 kg per week"``, a ``Budget`` or ``{"grams": 500, "period": "day", "strict": False}``."""
    if isinstance(value, Budget):
        return value
    try:
        if isinstance(value, dict):
            unknown = set(value) - {"grams", "period", "strict"}
            if unknown:
                raise ControlInputError(f"unknown key {sorted(unknown)[0]!r} (grams, period, strict)")
            grams = value.get("grams")
            if isinstance(grams, bool) or not isinstance(grams, int | float):
                raise ControlInputError(f"grams {grams!r} must be a number")
            return Budget(float(grams), str(value.get("period", "")), bool(value.get("strict", False)))
        match = _BUDGET.match(str(value).lower()) if isinstance(value, str) else None
        if match is None:
            raise ControlInputError(f"{value!r} is not a budget such as '500 g/day', '2 kg/week' or "
                                    "{'grams': 500, 'period': 'day'}")
        return Budget(float(match["grams"]) * _GRAMS_PER[match["unit"]], match["period"])
    except ControlInputError as error:
        raise ControlInputError(f"{field}: {error}" if field else str(error)) from None
    except ValueError as error:
        raise ControlInputError(f"{field}: {value!r}: {error}" if field else f"{value!r}: {error}") from None
