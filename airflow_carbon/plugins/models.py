"""The shapes of the Carbon API's answers, as ``/carbon/docs`` shows them: a task try's are views of its record."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, create_model

from airflow_carbon.metrics.queries import DEFERRED_FIELDS
from airflow_carbon.metrics.record import (
    DERIVED_FIELDS,
    FIELD_NAMES,
    FIELD_TYPES,
    KEY_FIELDS,
    RUN_FIELDS,
)

#: What Airflow's metadata database says of the task instance, beside what the store says of the try.
AIRFLOW_STATE_FIELDS: dict[str, Any] = {
    "airflow_state": (str | None, Field(None, description="the task instance's state in Airflow now (deferred, "
                                                          "queued, success, ...); null when Airflow has no such "
                                                          "task instance")),
    "airflow_try_number": (int | None, Field(None, description="the try Airflow's task instance is at now; a try "
                                                               "waits only while Airflow has it deferred at "
                                                               "its own try_number")),
}


def _view(name: str, doc: str, names: Iterable[str], derived: bool = False) -> type[BaseModel]:
    """A model of some of a record's fields, typed by the record's schema; the key's fields are required.

    ``derived`` adds what the pages derive from the fields and what Airflow says of the task instance.
    """
    fields: dict[str, Any] = {
        field: (FIELD_TYPES[field], ...) if field in KEY_FIELDS or field == "state" else
        (list[str] | None if FIELD_TYPES[field] is list else FIELD_TYPES[field] | None, None)
        for field in names
    }
    if derived:
        fields |= {field: (kind | None, None) for field, kind in DERIVED_FIELDS.items()} | AIRFLOW_STATE_FIELDS
    return create_model(name, __doc__=doc, **fields)


class HistoryDay(BaseModel):
    dag_id: str
    day: str
    tasks_run: int
    delayed: int
    forced_by_deadline: int
    served_by_fallback: int
    energy_kwh: float
    solar_kwh: float = Field(description="on-site solar energy the tries used")
    grid_kwh: float = Field(description="energy the tries drew from the grid")
    emissions_g: float
    baseline_emissions_g: float
    saved_g: float
    saved_pct: float | None = None
    saved_time_g: float | None = Field(None, description="of the savings of choices between regions, what waiting "
                                                         "saved; null when no try of the day chose a region")
    saved_place_g: float | None = Field(None, description="of the savings of choices between regions, what moving "
                                                          "saved; null when no try of the day chose a region")


class SolarDay(BaseModel):
    """One site's solar on one UTC day: the panels' output beside what tries used."""

    site: str
    day: str = Field(description="UTC day, YYYY-MM-DD")
    output_kwh: float = Field(description="the site's output the ledger holds: measured, else forecast")
    measured_kwh: float = Field(description="the measured part of output_kwh")
    output_basis: str | None = Field(description="how output_kwh was obtained: measured, forecast or "
                                                 "measured+forecast; null without output")
    used_kwh: float = Field(description="solar every try at the site used (a site total, tries of all DAGs)")
    tasks_run: int = Field(description="completed tries of the DAGs you may read that the filters select")
    solar_kwh: float = Field(description="solar those tries used, from their records")
    grid_kwh: float = Field(description="grid energy those tries used, from their records")


DeferredTask = _view("DeferredTask", "A try waiting for a cleaner grid (its task instance deferred in Airflow at "
                                     "that try), with its latest plan and the figures it is shown with.",
                     DEFERRED_FIELDS, derived=True)
TaskRun = _view("TaskRun", "A try that has run: what it emitted, and what it saved against running when ready.",
                RUN_FIELDS)
TaskTry = _view("TaskTry", "One try of a task instance as the store holds it, with what the pages derive from it.",
                FIELD_NAMES, derived=True)


class IntensitySeries(BaseModel):
    region: str
    source: str
    requested_source: str
    period_s: int
    unit: str
    kind: str
    replayed: bool
    estimated: bool
    failed_sources: list[str]
    points: list[tuple[datetime, float]]


class SimulationResult(BaseModel):
    inputs: dict[str, Any]
    headline: str
    policies: list[dict[str, Any]]
    table: str
    figures: dict[str, str]
