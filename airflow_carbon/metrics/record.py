"""The one schema of a task try's record: what it decided and, once it ran, what it emitted and saved.

XCom, the spool files, the metrics store's columns, the JSON API and the pages all take their
fields from ``TaskTryRecord``. Adding a field is a field here (with its phase) plus a migration in
``metrics/migrations``. Three fields name where figures came from, each meaning one thing:
``source`` is the source the task was configured with, ``served_by`` the source that answered (a
fallback when the first failed), and ``signal`` the origin of the intensity series it was
accounted on (``watttime:co2_moer``, ``replay of de_ci.csv``). For on-site solar, ``solar_served_by`` names
the solar source that answered and ``solar_basis`` whether ``solar_kwh`` rests on measured output, a forecast or both.
A try a person made run before its plan (a release, or carbon-awareness switched off) says who, when and why in
``released_by``, ``released_at`` and ``release_reason``. Its energy says how it was obtained (``energy_method``,
``energy_scope``, ``energy_breakdown_kwh``, ``energy_notes``, ``pue``: see ``accounting/energy.py``), and what the plan
expected says where that came from (``expected_from``: declared, history or defaults).

Pure: no Airflow, no SQLAlchemy.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Annotated, Any, Literal

from airflow_carbon.errors import CarbonError
from airflow_carbon.units import parse_instant

#: The version of this schema, written into every record's JSON and spool file.
SCHEMA_VERSION = 6
#: Versions ``from_json`` reads: XCom and spool files written by earlier releases must still load. Version 2
#: lacks the solar fields (``site``, ``solar_served_by``, ``solar_basis``), version 3 the release fields
#: (``released_by``, ``released_at``, ``release_reason``), version 4 the energy and expectation fields
#: (``energy_method`` ... ``expected_from``), version 5 the region choice's (``home_region`` ... ``saved_place_g``);
#: missing fields read as None.
READABLE_VERSIONS = (2, 3, 4, 5, SCHEMA_VERSION)

DEFERRED = "deferred"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
#: A row in one of these states has its completion fields; a late decision never takes it back.
FINISHED_STATES = (COMPLETED, FAILED)
STATES = (DEFERRED, RUNNING, *FINISHED_STATES)
#: A try counts as delayed when its work started this long after it became ready: a try that runs at once
#: starts within the time it takes to read its source, one that waited at least a refresh or a release poll later.
DELAYED_AFTER_S = 10.0

#: Which write sets a field: the key identifies the try; ``decision`` fields are written when the try
#: plans; ``completion`` fields when it has run; ``shared`` fields by both (the completion's value wins).
Phase = Literal["key", "meta", "shared", "decision", "completion"]


class InvalidRecordError(CarbonError, ValueError):
    """JSON that is not a task try's record; the message names the field."""


KEY: Phase = "key"
META: Phase = "meta"
SHARED: Phase = "shared"
DECISION: Phase = "decision"
COMPLETION: Phase = "completion"


@dataclass(frozen=True)
class TaskTryKey:
    """Identifies one try of one task instance, the store's primary key."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1


@dataclass(frozen=True)
class TaskTryRecord:
    """One try of a carbon-aware task instance, waiting or done; units are in the names."""

    dag_id: Annotated[str, KEY]  #: DAG id
    task_id: Annotated[str, KEY]  #: task id
    run_id: Annotated[str, KEY]  #: DAG run id
    map_index: Annotated[int, KEY] = -1  #: map index, -1 when not mapped
    try_number: Annotated[int, KEY] = 1  #: try number
    state: Annotated[str, META] = DEFERRED  #: deferred, running, completed or failed
    region: Annotated[str | None, SHARED] = None  #: grid region of the signal
    source: Annotated[str | None, SHARED] = None  #: the signal source the task was configured with
    served_by: Annotated[str | None, SHARED] = None  #: the source that answered: the configured one or a fallback
    signal: Annotated[str | None, SHARED] = None  #: origin of the intensity series the figures come from
    signal_kind: Annotated[str | None, SHARED] = None  #: marginal or average emissions rate; None when unknown
    failed_sources: Annotated[list[str], SHARED] = field(default_factory=list)  #: each with its error
    policy: Annotated[str | None, SHARED] = None  #: planning policy
    reason: Annotated[str | None, SHARED] = None  #: why it ran when it did
    ready_at: Annotated[datetime | None, SHARED] = None  #: when the task instance first became ready
    deadline: Annotated[datetime | None, SHARED] = None  #: when it had to run at the latest
    energy_kwh: Annotated[float | None, SHARED] = None  #: planned energy while it waits, energy used once done
    decided_at: Annotated[datetime | None, DECISION] = None  #: when the last plan was made
    planned_start: Annotated[datetime | None, DECISION] = None  #: the start the plan chose
    expected_emissions_now_g: Annotated[float | None, DECISION] = None  #: expected emissions of running at decided_at
    expected_emissions_at_start_g: Annotated[float | None, DECISION] = None  #: expected emissions at planned_start
    started_at: Annotated[datetime | None, COMPLETION] = None  #: when the work started
    ended_at: Annotated[datetime | None, COMPLETION] = None  #: when the work ended
    delay_s: Annotated[float | None, COMPLETION] = None  #: started_at - ready_at
    intensity_g_per_kwh: Annotated[float | None, COMPLETION] = None  #: mean intensity while it ran
    baseline_intensity_g_per_kwh: Annotated[float | None, COMPLETION] = None  #: mean intensity had it run when ready
    solar_kwh: Annotated[float | None, COMPLETION] = None  #: on-site solar energy it used
    grid_kwh: Annotated[float | None, COMPLETION] = None  #: energy_kwh - solar_kwh
    site: Annotated[str | None, SHARED] = None  #: the site whose solar panels the task shares with others
    solar_served_by: Annotated[str | None, SHARED] = None  #: the solar source that answered
    solar_basis: Annotated[str | None, COMPLETION] = None  #: how solar_kwh was obtained: measured, forecast or both
    emissions_g: Annotated[float | None, COMPLETION] = None  #: grid emissions of the run
    baseline_emissions_g: Annotated[float | None, COMPLETION] = None  #: emissions had it run when ready
    saved_g: Annotated[float | None, COMPLETION] = None  #: baseline_emissions_g - emissions_g
    estimated: Annotated[bool | None, COMPLETION] = None  #: true unless every input was measured
    released_by: Annotated[str | None, SHARED] = None  #: who made it run before its plan (a release or eco-mode off)
    released_at: Annotated[datetime | None, SHARED] = None  #: when that person asked
    release_reason: Annotated[str | None, SHARED] = None  #: the reason they gave
    energy_method: Annotated[str | None, COMPLETION] = None  #: how energy_kwh was obtained, per component
    energy_scope: Annotated[str | None, COMPLETION] = None  #: process, machine-split, device or task, per component
    energy_breakdown_kwh: Annotated[dict[str, float] | None, COMPLETION] = None  #: IT energy per metered component
    energy_notes: Annotated[list[str], COMPLETION] = field(default_factory=list)  #: unknown or shared components
    pue: Annotated[float | None, COMPLETION] = None  #: facility overhead: energy_kwh is the IT energy times this
    expected_duration_s: Annotated[float | None, SHARED] = None  #: the run time the plan expected
    expected_energy_kwh: Annotated[float | None, SHARED] = None  #: the energy the plan expected
    expected_from: Annotated[str | None, SHARED] = None  #: declared, history (n=...) or defaults, per quantity
    #: A choice between regions: the first candidate, whose run when ready is the baseline.
    home_region: Annotated[str | None, SHARED] = None
    #: A choice between regions: the task that runs in the chosen region (``region``).
    chosen_task_id: Annotated[str | None, SHARED] = None
    #: A choice between regions: each candidate's expected emissions at its best start; null where its signal failed.
    region_expected_g: Annotated[dict[str, float | None] | None, DECISION] = None
    #: What waiting saved: the home region's emissions when ready, less the home region's at the start.
    saved_time_g: Annotated[float | None, COMPLETION] = None
    #: What moving saved: the home region's emissions at the start, less the chosen region's.
    saved_place_g: Annotated[float | None, COMPLETION] = None
    updated_at: Annotated[datetime | None, META] = None  #: when the store last wrote the row

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise InvalidRecordError(f"state {self.state!r} is not one of {', '.join(STATES)}")

    @property
    def key(self) -> TaskTryKey:
        return TaskTryKey(self.dag_id, self.task_id, self.run_id, self.map_index, self.try_number)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    def to_json(self) -> dict[str, Any]:
        """JSON types only (instants as ISO 8601), with the schema's version and the ``job_id`` XCom has always had."""
        values = {name: _to_json(getattr(self, name)) for name in FIELD_NAMES}
        return {"version": SCHEMA_VERSION, "job_id": f"{self.dag_id}.{self.task_id}", **values}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskTryRecord:
        """The inverse of ``to_json``, also of the previous version's; unknown keys are ignored (derived ones such as
        ``job_id``), missing fields take their defaults, bad values are named."""
        if not isinstance(data, Mapping):
            raise InvalidRecordError(f"a record is a JSON object, not {type(data).__name__}")
        version = data.get("version", SCHEMA_VERSION)
        if version not in READABLE_VERSIONS:
            raise InvalidRecordError(f"record version {version!r} is not one of "
                                     f"{', '.join(map(str, READABLE_VERSIONS))}")
        return cls.from_values(data)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> TaskTryRecord:
        """A record from a store row or JSON: each known field parsed to its type, naive instants read as UTC."""
        parsed: dict[str, Any] = {}
        for name, kind in FIELD_TYPES.items():
            if name not in values:
                continue
            try:
                parsed[name] = _parse(kind, values[name])
            except (TypeError, ValueError) as error:
                raise InvalidRecordError(f"field {name!r}: {error}") from None
        missing = [name for name in KEY_FIELDS[:3] if not parsed.get(name)]
        if missing:
            raise InvalidRecordError(f"field {missing[0]!r} is missing")
        return cls(**parsed)


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        return type(value)(value)
    if callable(getattr(value, "item", None)):  # numpy scalars, which json.dumps refuses
        return value.item()
    return value


def _base_type(annotation: Any) -> Any:
    """``float`` for ``float | None``; ``list`` for ``list[str]``; ``dict`` for ``dict[str, float] | None``."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _base_type(args[0])
    return typing.get_origin(annotation) or annotation


def _parse(kind: Any, value: Any) -> Any:
    if value is None:
        return [] if kind is list else None
    if kind is datetime:
        return parse_instant(value, naive_is_utc=True)
    if kind is bool:
        if not isinstance(value, bool | int):
            raise TypeError(f"expected true or false, got {value!r}")
        return bool(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise TypeError(f"expected a list of strings, got {value!r}")
        return list(value)
    if kind is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and (v is None or (isinstance(v, int | float)
                                                  and not isinstance(v, bool))) for k, v in value.items()):
            raise TypeError(f"expected an object of numbers, got {value!r}")
        return {k: None if v is None else float(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


_HINTS = typing.get_type_hints(TaskTryRecord, include_extras=True)
FIELD_NAMES = tuple(f.name for f in fields(TaskTryRecord))
FIELD_TYPES: dict[str, Any] = {name: _base_type(typing.get_args(_HINTS[name])[0]) for name in FIELD_NAMES}
FIELD_PHASES: dict[str, Phase] = {name: typing.get_args(_HINTS[name])[1] for name in FIELD_NAMES}
KEY_FIELDS = tuple(name for name in FIELD_NAMES if FIELD_PHASES[name] == "key")


def phase_fields(*phases: Phase) -> tuple[str, ...]:
    return tuple(name for name in FIELD_NAMES if FIELD_PHASES[name] in phases)


#: The views of a record the Carbon API answers with, and the columns its queries read: a field added
#: above reaches the full view (``TaskTry``) by itself, and a narrower view when it is named here.
SUMMARY_FIELDS = (*KEY_FIELDS, "region", "source", "served_by", "policy", "reason", "ready_at", "deadline",
                  "planned_start")
WAITING_FIELDS = (*SUMMARY_FIELDS, "expected_emissions_now_g", "expected_emissions_at_start_g")
RUN_FIELDS = (*SUMMARY_FIELDS, "energy_kwh", *phase_fields(COMPLETION))
#: Figures a waiting row is shown with, derived from its fields at the time of asking.
DERIVED_FIELDS: dict[str, type] = {"current_intensity_g_per_kwh": float, "expected_saving_g": float,
                                   "waited_s": float, "remaining_s": float}
