"""Tries in every state to read back: the history of two DAGs over two days, and helpers to write more."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from airflow_carbon.metrics import MetricsStore, TaskTryKey, TaskTryRecord
from airflow_carbon.planning.decision import Reason

D1 = datetime(2024, 6, 1, tzinfo=UTC)
D2 = D1 + timedelta(days=1)
H = timedelta(hours=1)


def decide(store: MetricsStore, key: TaskTryKey, *, ready_at: datetime, start: datetime, deadline: datetime,
           now_g: float | None = 100.0, at_start_g: float | None = 50.0, energy_kwh: float | None = 0.5,
           region: str = "DE", source: str = "bundled:DE", served_by: str | None = "bundled:DE",
           failed: Iterable[str] = (), reason: Reason = Reason.GREEN_WINDOW) -> None:
    store.write(TaskTryRecord(
        **asdict(key), state="deferred" if start > ready_at else "running", region=region, source=source,
        policy="forecast", ready_at=ready_at, deadline=deadline, reason=str(reason), decided_at=ready_at,
        planned_start=start, expected_emissions_now_g=now_g, expected_emissions_at_start_g=at_start_g,
        served_by=served_by, failed_sources=list(failed), energy_kwh=energy_kwh))


def complete(store: MetricsStore, key: TaskTryKey, *, ready_at: datetime, started_at: datetime, reason: str,
             energy_kwh: float, emissions_g: float | None, baseline_g: float | None, region: str = "DE",
             source: str = "bundled:DE", served_by: str | None = "bundled:DE", failed: Iterable[str] = (),
             deadline: datetime | None = None, signal: str | None = None) -> None:
    store.write(TaskTryRecord(
        **asdict(key), state="completed", region=region, source=source, policy="forecast", reason=reason,
        ready_at=ready_at, deadline=deadline or ready_at + 4 * H, started_at=started_at, ended_at=started_at + H / 2,
        delay_s=(started_at - ready_at).total_seconds(), energy_kwh=energy_kwh, solar_kwh=0.0, grid_kwh=energy_kwh,
        emissions_g=emissions_g, baseline_emissions_g=baseline_g,
        saved_g=None if emissions_g is None or baseline_g is None else baseline_g - emissions_g,
        intensity_g_per_kwh=None if emissions_g is None else emissions_g / energy_kwh,
        baseline_intensity_g_per_kwh=None if baseline_g is None else baseline_g / energy_kwh, estimated=False,
        served_by=served_by, failed_sources=list(failed), signal=signal))


def seed_history(store: MetricsStore) -> None:
    """Two DAGs over two UTC days; see each test for what every try stands for."""
    # dag_a, day 1: one try waited two hours for a green window, one ran at once.
    key = TaskTryKey("dag_a", "summarize", "r1")
    decide(store, key, ready_at=D1 + 8 * H, start=D1 + 10 * H, deadline=D1 + 12 * H)
    complete(store, key, ready_at=D1 + 8 * H, started_at=D1 + 10 * H, reason="green_window", energy_kwh=0.5,
             emissions_g=50.0, baseline_g=100.0)
    key = TaskTryKey("dag_a", "tag", "r1")
    decide(store, key, ready_at=D1 + 9 * H, start=D1 + 9 * H, deadline=D1 + 13 * H, reason=Reason.IMMEDIATE)
    complete(store, key, ready_at=D1 + 9 * H, started_at=D1 + 9 * H, reason="immediate", energy_kwh=0.2,
             emissions_g=40.0, baseline_g=40.0)
    # dag_a: ready late on day 1, forced by its deadline after midnight: it counts for day 2. Its own
    # source failed over to another connection (no decision row: its write was lost).
    complete(store, TaskTryKey("dag_a", "summarize", "r2"), ready_at=D1 + 23 * H, started_at=D2 + 1 * H,
             reason="deadline", energy_kwh=0.5, emissions_g=30.0, baseline_g=35.0, source="conn:wt",
             served_by="conn:em")
    # dag_b, day 1, in FR: no decision recorded, started two hours late, no signal covered it, a
    # source failed on the way.
    complete(store, TaskTryKey("dag_b", "evaluate", "r1"), ready_at=D1 + 12 * H, started_at=D1 + 14 * H,
             reason="green_window", energy_kwh=1.0, emissions_g=None, baseline_g=None, region="FR",
             source="bundled:FR", served_by="bundled:FR", failed=["conn:em: timeout"])
