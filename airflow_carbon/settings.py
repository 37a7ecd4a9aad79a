"""A carbon-aware task's settings: given on the task, else in the DAG's ``default_args``, else ``[carbon]``.

Every value is checked where it is given, so a bad one fails when the DAG is parsed, and
again when it is resolved at the task's start, with the task and the setting named.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from airflow_carbon.accounting.energy import METERS
from airflow_carbon.control import Budget, parse_budget
from airflow_carbon.errors import CarbonConfigError
from airflow_carbon.forecasting.extend import DEFAULT_FORECASTER, check_forecaster
from airflow_carbon.planning import (
    DEFAULT_MAX_DELAY,
    DEFAULT_MIN_SAVING_PCT,
    DEFAULT_REPLAN_MARGIN_PCT,
    DEFAULT_RISK_AVERSION,
    DEFAULT_THRESHOLD_G_PER_KWH,
    POLICIES,
    PolicySettings,
)
from airflow_carbon.signals.bundled import BUNDLED_REGIONS
from airflow_carbon.units import MAX_ENERGY_KWH, parse_duration, parse_instant

CONFIG_SECTION = "carbon"
LIVE_POLICIES = tuple(name for name in POLICIES if name != "oracle")
#: The longest ``max_delay``, ``expected_duration`` or ``refresh_interval``: a year is already no plan a
#: forecast can serve, and far longer ones overflow the deadline (``ready + max_delay``) at the task's start.
LONGEST_DURATION = timedelta(days=366)
#: The most power a task may declare: with the longest ``expected_duration`` still a finite energy to plan on.
MAX_POWER_KW = MAX_ENERGY_KWH
#: The highest PUE a facility can have and still be a data centre, not a heater: the worst measured are below 3.
MAX_PUE = 3.0
#: The most past tries a plan reads: a median over more says nothing more of a task that changes.
MAX_HISTORY_TRIES = 1000

#: The ``[carbon]`` options, their defaults and what they mean (also the provider info's ``config``).
CONFIG_OPTIONS: dict[str, tuple[str, str]] = {
    "max_delay": (f"{DEFAULT_MAX_DELAY.total_seconds() / 3600:g}h",
                  "How long a task may wait for a cleaner grid after it became ready."),
    "region": ("DE", "Grid region or zone of the signal (a bundled region: DE, FR, US-TX)."),
    "source": ("", "Connection id of the signal source; empty means the bundled data, replayed onto today."),
    "fallback": ("", "Connection ids to try in order when the source fails (comma-separated)."),
    "policy": ("forecast", "immediate, threshold or forecast."),
    "power_kw": ("0.3", "Power drawn by a task that declares neither energy_kwh nor power_kw and whose energy no "
                 "meter read (assumed)."),
    "expected_duration": ("30min", "How long a task that declares no expected_duration and has no history is "
                          "expected to run, for planning its window."),
    "energy_meter": ("auto", "What reads a task's energy: auto (NVML for GPUs, RAPL or codecarbon's estimate for "
                     "CPU and memory, where installed), codecarbon, nvml or declared (energy_kwh, else power_kw "
                     "times the run time)."),
    "pue": ("1.0", "Power usage effectiveness of the facility: a task's energy is its IT energy times this."),
    "history_tries": ("10", "How many of a task's last completed tries plan it when it declares no energy or "
                      "duration; 0 plans on the defaults."),
    "min_saving_pct": (f"{DEFAULT_MIN_SAVING_PCT:g}",
                       "forecast policy: wait only when it saves at least this share of running now."),
    "replan_margin_pct": (f"{DEFAULT_REPLAN_MARGIN_PCT:g}",
                          "forecast policy: a waiting task keeps its planned start unless a new forecast's best "
                          "start beats it by at least this share."),
    "risk_aversion": (f"{DEFAULT_RISK_AVERSION:g}",
                      "forecast policy: 0..1, how far toward its 90th percentile a forecaster's forecast is taken "
                      "when windows are compared, so an uncertain later window must beat a near one clearly."),
    "threshold_g_per_kwh": (f"{DEFAULT_THRESHOLD_G_PER_KWH:g}",
                            "threshold policy: an intensity at or below this is green."),
    "on_unavailable": ("wait", "With no signal: wait (re-try until the deadline) or run at once."),
    "solar": ("", "Connection id of the on-site solar source (forecast_solar or carbon_solar_csv); empty means none."),
    "site": ("", "The site whose panels the task shares; empty means the solar connection's site."),
    "solar_threshold_kw": ("", "threshold policy: on-site solar at or above this kW is enough; empty means the "
                                "task's own power."),
    "forecaster": (DEFAULT_FORECASTER, "What carries a source's series past its end (a CSV of measured history, a "
                   "live source beyond its horizon): persistence, seasonal, model or none. A task's own setting "
                   "wins, then its source connection's extra 'forecaster', then this."),
    "refresh_interval": ("5min", "How often a waiting task re-reads the signal and re-plans."),
    "metrics_conn_id": ("carbon_metrics_default", "Connection of the metrics store database."),
}


def _positive_float(value: Any) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"must be a finite number >= 0, got {value!r}")
    return number


def _percentage(value: Any) -> float:
    number = _positive_float(value)
    if number >= 100:
        raise ValueError(f"must be below 100, got {value!r}")
    return number


def _optional_float(value: Any) -> float | None:
    return None if value in (None, "") else _positive_float(value)


def _at_most(limit: float, unit: str) -> Callable[[Any], float | None]:
    """An optional finite number >= 0 no larger than ``limit``: a larger one overflows the emissions arithmetic."""

    def parse(value: Any) -> float | None:
        number = _optional_float(value)
        if number is not None and number > limit:
            raise ValueError(f"must be at most {limit:g} {unit}, got {value!r}")
        return number

    return parse


def _energy_meter(value: Any) -> str:
    if value not in METERS:
        raise ValueError(f"unknown energy meter {value!r}; choose one of {', '.join(METERS)}")
    return value


def _pue(value: Any) -> float:
    number = float(value)
    if not 1 <= number <= MAX_PUE:
        raise ValueError(f"must lie in [1, {MAX_PUE:g}], got {value!r}")
    return number


def _tries(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"must be a whole number, got {value!r}")
    number = int(value)
    if not 0 <= number <= MAX_HISTORY_TRIES:
        raise ValueError(f"must lie in [0, {MAX_HISTORY_TRIES}], got {value!r}")
    return number


def _policy(value: Any) -> str:
    if value not in LIVE_POLICIES:
        raise ValueError(f"unknown policy {value!r}; choose one of {', '.join(LIVE_POLICIES)}")
    return value


def _on_unavailable(value: Any) -> str:
    if value not in ("wait", "run"):
        raise ValueError(f"must be 'wait' or 'run', got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value.strip()


def _connection_ids(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value or ())
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"must be connection ids, got {value!r}")
    return tuple(item.strip() for item in items if item.strip())


def _optional_text(value: Any) -> str | None:
    return None if value in (None, "") else _text(value)


def _positive_duration(value: Any) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError(f"must be longer than 0, got {value!r}")
    if duration > LONGEST_DURATION:
        raise ValueError(f"must be at most {LONGEST_DURATION.days} days, got {value!r}")
    return duration


def _max_delay(value: Any) -> timedelta:
    if parse_duration(value) == timedelta(0):  # no wait at all is a policy, not a delay
        raise ValueError(f"must be longer than 0, got {value!r}; to run at once use policy='immediate'")
    return _positive_duration(value)


def _fraction(value: Any) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise ValueError(f"must lie in [0, 1], got {value!r}")
    return number


def _optional_forecaster(value: Any) -> str | None:
    return None if value in (None, "") else check_forecaster(value)


def _optional_instant(value: Any) -> datetime | None:
    return None if value in (None, "") else parse_instant(value)


def _optional_budget(value: Any) -> Budget | None:
    return None if value in (None, "") else parse_budget(value, "")


def _callbacks(value: Any) -> tuple[Callable[..., Any], ...]:
    """A callback or a list of them, as Airflow's own ``on_*_callback`` arguments take."""
    callbacks = tuple(value) if isinstance(value, list | tuple) else (value,)
    for callback in callbacks:
        if not callable(callback):
            raise TypeError(f"expected a callable or a list of callables, got {callback!r}")
    return callbacks


@dataclass(frozen=True)
class CarbonSettings:
    """Resolved settings of one carbon-aware task; see ``CONFIG_OPTIONS`` for their meaning."""

    max_delay: timedelta
    deadline: datetime | None
    region: str
    source: str | None
    fallback: tuple[str, ...]
    policy: str
    energy_kwh: float | None
    power_kw: float | None
    expected_duration: timedelta
    min_saving_pct: float
    threshold_g_per_kwh: float
    on_unavailable: str
    refresh_interval: timedelta
    metrics_conn_id: str
    solar: str | None = None
    site: str | None = None
    solar_threshold_kw: float | None = None
    forecaster: str | None = None
    risk_aversion: float = DEFAULT_RISK_AVERSION
    replan_margin_pct: float = DEFAULT_REPLAN_MARGIN_PCT
    carbon_budget: Budget | None = None
    energy_meter: str = "auto"
    pue: float = 1.0
    history_tries: int = 10
    #: ``[carbon] forecaster``, read once when the settings are resolved: for sources whose connection names none.
    default_forecaster: str = DEFAULT_FORECASTER
    #: ``[carbon] power_kw``, read once when the settings are resolved: what a task that declares no energy draws.
    assumed_power_kw: float = 0.3
    #: Whether ``expected_duration`` was given on the task or in ``default_args``, not taken from ``[carbon]``.
    duration_declared: bool = True
    #: The IT energy (kWh) the task's history expects, when it declares none; set when its first try starts.
    history_energy_kwh: float | None = None
    #: Where ``expected_duration`` and the planned energy came from: declared, history (n=...) or defaults.
    expected_from: str | None = None

    @property
    def energy_declared(self) -> bool:
        return self.energy_kwh is not None or self.power_kw is not None

    @property
    def planned_energy_kwh(self) -> float:
        """The facility energy to plan with: declared, else power times the expected duration, else what the
        history expects, else the assumed power over the expected duration; times the PUE."""
        if self.energy_kwh is not None:
            it_kwh = self.energy_kwh
        elif self.power_kw is None and self.history_energy_kwh is not None:
            it_kwh = self.history_energy_kwh
        else:
            it_kwh = self.power_draw_kw * self.expected_duration.total_seconds() / 3600.0
        return it_kwh * self.pue

    @property
    def power_draw_kw(self) -> float:
        """The power to account a run with when no energy is declared: declared, else assumed."""
        return self.power_kw if self.power_kw is not None else self.assumed_power_kw

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (durations in seconds), so a trigger carries the settings to the task it resumes."""
        values = {name: getattr(self, name) for name in (*SETTING_NAMES, *CARRIED_NAMES)}
        return {name: value.total_seconds() if isinstance(value, timedelta) else
                value.isoformat() if isinstance(value, datetime) else
                {"grams": value.grams, "period": value.period, "strict": value.strict} if isinstance(value, Budget) else
                list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    @classmethod
    def from_json(cls, task_id: str, data: dict[str, Any]) -> CarbonSettings:
        """The inverse of ``to_json``, each value checked again."""
        # A setting an earlier version did not carry takes its default (``energy_meter``, ``pue``, ...).
        values = {name: _parse(task_id, name, data.get(name), RESOLVED_PARSERS) for name in SETTING_NAMES
                  if name in data or name not in _FIELD_DEFAULTS}
        default = data.get("default_forecaster") or DEFAULT_FORECASTER  # absent in settings carried by 0.2
        history_kwh = data.get("history_energy_kwh")
        return cls(**values, assumed_power_kw=_parse(task_id, "power_kw", data.get("assumed_power_kw")),
                   default_forecaster=_parse(task_id, "forecaster", default),
                   duration_declared=bool(data.get("duration_declared", True)),
                   history_energy_kwh=None if history_kwh is None else _parse(task_id, "energy_kwh", history_kwh),
                   expected_from=data.get("expected_from"))

    def policy_settings(self) -> PolicySettings:
        return PolicySettings(threshold_g_per_kwh=self.threshold_g_per_kwh, min_saving_pct=self.min_saving_pct,
                              on_unavailable=self.on_unavailable,  # type: ignore[arg-type]
                              solar_threshold_kw=self.solar_threshold_kw, risk_aversion=self.risk_aversion,
                              replan_margin_pct=self.replan_margin_pct)


_FIELD_DEFAULTS = {f.name for f in fields(CarbonSettings) if f.default is not MISSING}

PARSERS: dict[str, Callable[[Any], Any]] = {
    "max_delay": _max_delay,
    "deadline": _optional_instant,
    "region": _text,
    "source": _optional_text,
    "fallback": _connection_ids,
    "policy": _policy,
    "energy_kwh": _at_most(MAX_ENERGY_KWH, "kWh"),
    "power_kw": _at_most(MAX_POWER_KW, "kW"),
    "expected_duration": _positive_duration,
    "min_saving_pct": _percentage,
    "threshold_g_per_kwh": _positive_float,
    "on_unavailable": _on_unavailable,
    "refresh_interval": _positive_duration,
    "metrics_conn_id": _text,
    "solar": _optional_text,
    "site": _optional_text,
    "solar_threshold_kw": _at_most(MAX_POWER_KW, "kW"),
    "forecaster": _optional_forecaster,
    "risk_aversion": _fraction,
    "replan_margin_pct": _percentage,
    "carbon_budget": _optional_budget,
    "energy_meter": _energy_meter,
    "pue": _pue,
    "history_tries": _tries,
}
SETTING_NAMES = tuple(PARSERS)
#: What a trigger carries back beside the settings: the defaults read when they were resolved, and the expectation.
CARRIED_NAMES = ("assumed_power_kw", "default_forecaster", "duration_declared", "history_energy_kwh", "expected_from")
#: Carbon options that are callables, run in the worker: checked like settings, never carried in a trigger's kwargs.
CALLBACK_PARSERS: dict[str, Callable[[Any], Any]] = {"on_budget_exceeded": _callbacks}
OPTION_NAMES = (*SETTING_NAMES, *CALLBACK_PARSERS)
#: Settings a trigger carries back were resolved, perhaps by an earlier version that took ``max_delay=0``.
RESOLVED_PARSERS = PARSERS | {"max_delay": parse_duration}


class CarbonSettingsError(CarbonConfigError):
    """A setting that cannot be used, named with its task."""


def _parse(task_id: str, name: str, value: Any, parsers: Mapping[str, Callable[[Any], Any]] = PARSERS) -> Any:
    try:
        return parsers[name](value)
    except (TypeError, ValueError, OverflowError) as error:
        raise CarbonSettingsError(f"task {task_id!r}: carbon setting {name}={value!r}: {error}") from None


def check_given(task_id: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse unknown names, bad values and ``deadline`` beside ``max_delay``; Jinja templates are checked
    after rendering."""
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        raise CarbonSettingsError(f"task {task_id!r}: unknown carbon setting {unknown[0]!r}; "
                                  f"known: {', '.join(OPTION_NAMES)}")
    if given.get("deadline") is not None and given.get("max_delay") is not None:
        raise CarbonSettingsError(f"task {task_id!r}: carbon settings deadline={given['deadline']!r} and "
                                  f"max_delay={given['max_delay']!r} given together; give one (a deadline is "
                                  "absolute, max_delay counts from when the task became ready)")
    return {name: _parse(task_id, name, value, PARSERS | CALLBACK_PARSERS) for name, value in given.items()
            if value is not None and not _is_template(value)}


def check_task(task_id: str, given: Mapping[str, Any], default_args: Mapping[str, Any] | None) -> None:
    """What can be refused when the DAG is parsed: the task's settings, its DAG's ``default_args`` that are
    carbon settings, and a region without bundled data where the task can only plan on bundled data."""
    check_given(task_id, given)
    defaults = {name: value for name, value in (default_args or {}).items() if name in OPTION_NAMES}
    check_given(task_id, defaults)
    region = given.get("region") if given.get("region") is not None else defaults.get("region")
    if region is None or _is_template(region) or given.get("source") or defaults.get("source"):
        return
    if str(region).strip().upper() not in BUNDLED_REGIONS and not config_value("source").strip():
        raise CarbonSettingsError(
            f"task {task_id!r}: carbon setting region={region!r}: no bundled data for region {region!r}; bundled "
            f"regions: {', '.join(BUNDLED_REGIONS)}. The task names no source (nor do default_args or [carbon] "
            "source), so it would plan on bundled data: give a source connection for this region")


def operator_arguments(operator_class: type) -> frozenset[str]:
    """The keyword arguments the ``__init__`` methods of ``operator_class`` and its bases name."""
    names: set[str] = set()
    for cls in operator_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(inspect.unwrap(init)).parameters.values()
        except (TypeError, ValueError):
            continue
        names.update(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return frozenset(names - {"self"})


def check_arguments(task_id: str, given: Mapping[str, Any], operator_class: type) -> None:
    """Refuse an argument that is neither the operator's nor a carbon setting as a misspelled carbon setting.

    Airflow would refuse it too, but as "Invalid arguments were passed", without the settings there are.
    """
    accepted = operator_arguments(operator_class)
    unknown = {name: value for name, value in given.items()
               if name not in accepted and name not in OPTION_NAMES and not name.startswith("_airflow")}
    check_given(task_id, unknown)


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def config_value(name: str) -> str:
    """An option of ``[carbon]`` in airflow.cfg or ``AIRFLOW__CARBON__*``, else its default."""
    from airflow.sdk.configuration import conf

    return conf.get(CONFIG_SECTION, name, fallback=CONFIG_OPTIONS[name][0])


def resolve(task_id: str, given: Mapping[str, Any], default_args: Mapping[str, Any] | None = None) -> CarbonSettings:
    """The task's settings: given, else ``default_args``, else ``[carbon]``; each checked."""
    values: dict[str, Any] = {}
    for name in SETTING_NAMES:
        if given.get(name) is not None:
            raw = given[name]
        elif default_args and default_args.get(name) is not None:
            raw = default_args[name]
        elif name in CONFIG_OPTIONS and name not in ("power_kw", "forecaster"):  # read below, as defaults
            raw = config_value(name)
        else:
            raw = None
        values[name] = _parse(task_id, name, raw)
    if values["energy_kwh"] is not None and values["power_kw"] is not None:
        raise CarbonSettingsError(f"task {task_id!r}: give energy_kwh or power_kw, not both")
    default_forecaster = _parse(task_id, "forecaster", config_value("forecaster")) or DEFAULT_FORECASTER
    duration_declared = given.get("expected_duration") is not None or bool(
        default_args and default_args.get("expected_duration") is not None)
    return CarbonSettings(**values, assumed_power_kw=_parse(task_id, "power_kw", config_value("power_kw")),
                          default_forecaster=default_forecaster, duration_declared=duration_declared)
