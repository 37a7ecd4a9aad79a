"""The side-by-side table of policies, as text and as JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from airflow_carbon.accounting import JobRecord
from airflow_carbon.simulate.engine import PolicySummary, summarize


def summaries(results: Mapping[str, Sequence[JobRecord]]) -> list[PolicySummary]:
    return [summarize(policy, records) for policy, records in results.items()]


def table(rows: Sequence[PolicySummary], *, with_solar: bool) -> str:
    """Grid-only figures first (energy x intensity where each job ran); the solar columns only when solar was given."""
    frame = pd.DataFrame(
        {
            "policy": [r.policy for r in rows],
            "jobs": [r.jobs for r in rows],
            "delayed": [r.delayed for r in rows],
            "max delay h": [r.max_delay_h for r in rows],
            "mean delay h": [r.mean_delay_h for r in rows],
            "baseline kg": [r.baseline_kg for r in rows],
            "scheduled kg": [r.scheduled_kg for r in rows],
            "change %": [0.0 - r.saving_pct for r in rows],
            "deadline misses": [r.deadline_misses for r in rows],
        }
    )
    if with_solar:
        frame["solar kWh"] = [r.solar_kwh for r in rows]
        frame["net baseline kg"] = [r.net_baseline_kg for r in rows]
        frame["net kg"] = [r.net_kg for r in rows]
        frame["net change %"] = [0.0 - r.net_saving_pct for r in rows]
    return frame.to_string(index=False, float_format=lambda value: f"{value:.3f}")


def as_json(rows: Sequence[PolicySummary], inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"inputs": dict(inputs), "policies": [row.to_dict() for row in rows]}
