"""What a planner returns: when to start, why, and what each choice is expected to emit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from airflow_carbon.units import parse_instant


class Reason(StrEnum):
    IMMEDIATE = "immediate"
    GREEN_WINDOW = "green_window"
    SOLAR = "solar"
    DEADLINE = "deadline"
    NO_GREEN_WINDOW = "no_green_window"
    BELOW_MIN_SAVING = "below_min_saving"
    SIGNAL_UNAVAILABLE = "signal_unavailable"
    #: a person released the waiting task
    RELEASED = "released"
    #: carbon-awareness was switched off for the task's DAG
    ECO_OFF = "eco_off"


@dataclass(frozen=True)
class Decision:
    """Run at ``start`` (``now`` itself means at once); ``start`` never lies past ``deadline``.

    :param extrapolated: the job did not fit in the forecast, so its last value was held
        to the deadline to compare windows; the decision should be re-planned with new data.
    """

    policy: str
    now: datetime
    start: datetime
    deadline: datetime
    reason: Reason
    expected_emissions_now_g: float | None = None
    expected_emissions_at_start_g: float | None = None
    extrapolated: bool = False

    @property
    def run_now(self) -> bool:
        return self.start <= self.now

    @property
    def wait(self) -> timedelta:
        return max(self.start - self.now, timedelta(0))

    @property
    def expected_saving_g(self) -> float | None:
        if self.expected_emissions_now_g is None or self.expected_emissions_at_start_g is None:
            return None
        return self.expected_emissions_now_g - self.expected_emissions_at_start_g

    def overridden(self, reason: Reason) -> Decision:
        """Start now because a person said so: the plan's figures for now stay, and nothing is expected saved."""
        return replace(self, start=self.now, reason=reason, expected_emissions_at_start_g=self.expected_emissions_now_g)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for XCom, trigger events and the simulator's ``--json``."""
        return {
            "policy": self.policy,
            "now": self.now.isoformat(),
            "start": self.start.isoformat(),
            "deadline": self.deadline.isoformat(),
            "reason": str(self.reason),
            "run_now": self.run_now,
            "wait_s": self.wait.total_seconds(),
            "expected_emissions_now_g": self.expected_emissions_now_g,
            "expected_emissions_at_start_g": self.expected_emissions_at_start_g,
            "expected_saving_g": self.expected_saving_g,
            "extrapolated": self.extrapolated,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """The inverse of ``to_dict`` (derived fields are recomputed, not read)."""
        return cls(
            policy=data["policy"], now=parse_instant(data["now"]), start=parse_instant(data["start"]),
            deadline=parse_instant(data["deadline"]), reason=Reason(data["reason"]),
            expected_emissions_now_g=data.get("expected_emissions_now_g"),
            expected_emissions_at_start_g=data.get("expected_emissions_at_start_g"),
            extrapolated=bool(data.get("extrapolated", False)),
        )

