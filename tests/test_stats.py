"""The carbon metrics sent through Airflow's Stats: names, tags and values, on a fake and on a real StatsD socket."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from airflow.sdk._shared.observability.metrics import stats as shared_stats
from airflow.sdk._shared.observability.metrics.validators import stat_name_default_handler, stat_name_otel_handler

from airflow_carbon import stats
from airflow_carbon.metrics.queries import DELAYED_AFTER_S
from airflow_carbon.metrics.record import COMPLETED, DEFERRED, RUNNING, TaskTryRecord

TAGS = {"dag_id": "etl", "task_id": "summarize", "region": "DE"}


class FakeStats:
    """Records every call the way Airflow's module-level stats functions take them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float | timedelta, dict]] = []

    def incr(self, stat: str, count: float | None = None, rate: float | None = None, *, tags: dict) -> None:
        self.calls.append(("incr", stat, 1 if count is None else count, tags))

    def gauge(self, stat: str, value: float, *, tags: dict) -> None:
        self.calls.append(("gauge", stat, value, tags))

    def timing(self, stat: str, dt: timedelta, *, tags: dict) -> None:
        self.calls.append(("timing", stat, dt, tags))

    def by_name(self) -> dict[str, tuple[str, float | timedelta, dict]]:
        named = {stat: (kind, value, tags) for kind, stat, value, tags in self.calls}
        assert len(named) == len(self.calls), f"a metric sent twice: {self.calls}"
        return named


@pytest.fixture
def fake(monkeypatch) -> FakeStats:
    fake = FakeStats()
    monkeypatch.setattr(stats, "_backend", lambda: fake)
    monkeypatch.setattr(stats, "_waiting_reported", {})
    monkeypatch.setattr(stats, "_waiting_all_sent_at", [0.0])
    return fake


def finished(**values) -> TaskTryRecord:
    base = dict(dag_id="etl", task_id="summarize", run_id="r1", state=COMPLETED, region="DE", source="conn:wt",
                served_by="conn:wt", reason="green_window", delay_s=600.0, energy_kwh=0.5, emissions_g=60.0,
                baseline_emissions_g=200.0, saved_g=140.0)
    return TaskTryRecord(**{**base, **values})


def test_a_decision_to_wait_counts_decided_and_deferred(fake):
    stats.task_decided(finished(state=DEFERRED))
    assert fake.calls == [("incr", "carbon.decided", 1, TAGS), ("incr", "carbon.deferred", 1, TAGS)]


def test_a_decision_to_run_counts_decided_only(fake):
    stats.task_decided(finished(state=RUNNING, region=None))
    assert fake.calls == [("incr", "carbon.decided", 1, {**TAGS, "region": "unknown"})]


def test_a_finished_try_sends_its_figures_and_delay(fake):
    stats.task_finished(finished())
    sent = fake.by_name()
    assert sent == {
        "carbon.delayed": ("incr", 1, TAGS),
        "carbon.emissions_g": ("incr", 60.0, TAGS),
        "carbon.baseline_emissions_g": ("incr", 200.0, TAGS),
        "carbon.saved_g": ("incr", 140.0, TAGS),
        "carbon.energy_kwh": ("incr", 0.5, TAGS),
        "carbon.delay": ("timing", timedelta(seconds=600), TAGS),
    }


@pytest.mark.parametrize(("reason", "expected"), [
    ("released", ("carbon.released", {**TAGS, "reason": "released"})),
    ("eco_off", ("carbon.released", {**TAGS, "reason": "eco_off"})),
    ("deadline", ("carbon.forced_by_deadline", TAGS)),
])
def test_why_it_ran_is_counted_by_reason(fake, reason, expected):
    stats.task_finished(finished(reason=reason, delay_s=None, emissions_g=None, baseline_emissions_g=None,
                                 saved_g=None, energy_kwh=None))
    assert [(stat, tags) for _, stat, _, tags in fake.calls] == [expected]


def test_a_fallback_and_failed_sources_are_counted(fake):
    stats.task_finished(finished(served_by="conn:em", failed_sources=["conn:wt: 503", "bundled: gap"]))
    sent = fake.by_name()
    assert sent["carbon.served_by_fallback"] == ("incr", 1, TAGS)
    assert sent["carbon.source_failures"] == ("incr", 2, TAGS)


def test_what_is_not_known_is_not_sent_and_a_short_wait_is_not_delayed(fake):
    stats.task_finished(finished(delay_s=DELAYED_AFTER_S - 1, emissions_g=None, baseline_emissions_g=None,
                                 saved_g=None, energy_kwh=None))
    assert [stat for _, stat, _, _ in fake.calls] == ["carbon.delay"]
    fake.calls.clear()
    stats.task_finished(finished(delay_s=DELAYED_AFTER_S))
    assert "carbon.delayed" in fake.by_name()


def test_a_negative_saving_counts_as_extra_emissions_never_as_a_falling_counter(fake):
    stats.task_finished(finished(emissions_g=250.0, saved_g=-50.0))
    sent = fake.by_name()
    assert "carbon.saved_g" not in sent
    assert sent["carbon.extra_emissions_g"] == ("incr", 50.0, TAGS)
    assert all(value > 0 for kind, _, value, _ in fake.calls if kind == "incr")


def test_a_start_before_ready_is_a_zero_delay(fake):
    stats.task_finished(finished(delay_s=-3.0))
    assert fake.by_name()["carbon.delay"] == ("timing", timedelta(0), TAGS)


def test_tag_values_are_made_safe_for_statsd_lines(fake):
    stats.task_decided(finished(state=RUNNING, task_id="group.task", region="US CAL,CISO=1"))
    [(_, _, _, tags)] = fake.calls
    assert tags == {"dag_id": "etl", "task_id": "group.task", "region": "US_CAL_CISO_1"}


def test_waiting_gauges_go_to_zero_for_keys_no_longer_reported(fake):
    stats.tasks_waiting({("etl", "a", "DE"): 2, ("etl", "b", None): 1})
    assert sorted((stat, value, tags["task_id"], tags["region"]) for _, stat, value, tags in fake.calls) == [
        ("carbon.waiting", 1, "b", "unknown"), ("carbon.waiting", 2, "a", "DE")]
    fake.calls.clear()
    stats.tasks_waiting({("etl", "a", "DE"): 1})
    assert sorted((value, tags["task_id"]) for _, _, value, tags in fake.calls) == [(0, "b"), (1, "a")]
    fake.calls.clear()
    stats.tasks_waiting({})
    assert [(value, tags["task_id"]) for _, _, value, tags in fake.calls] == [(0, "a")]
    fake.calls.clear()
    stats.tasks_waiting({})
    assert fake.calls == []


def test_waiting_gauges_send_only_what_changed_and_everything_now_and_then(fake, monkeypatch):
    waiting = {("etl", f"t{i}", "DE"): 1 for i in range(1000)}
    stats.tasks_waiting(waiting)
    assert len(fake.calls) == 1000
    fake.calls.clear()
    stats.tasks_waiting({**waiting, ("etl", "t7", "DE"): 2})
    assert [(value, tags["task_id"]) for _, _, value, tags in fake.calls] == [(2, "t7")]
    fake.calls.clear()
    monkeypatch.setattr(stats, "_waiting_all_sent_at", [time.monotonic() - stats.WAITING_RESEND_EVERY_S])
    stats.tasks_waiting(waiting)
    assert len(fake.calls) == 1000


def test_budget_gauges_carry_the_dag_only(fake):
    stats.budget_spent("etl", 250.0, 1000.0)
    assert fake.calls == [("gauge", "carbon.budget.spent_g", 250.0, {"dag_id": "etl"}),
                          ("gauge", "carbon.budget.spent_pct", 25.0, {"dag_id": "etl"})]
    fake.calls.clear()
    stats.budget_spent("etl", 10.0, 0.0)
    assert [stat for _, stat, _, _ in fake.calls] == ["carbon.budget.spent_g"]


def test_a_failing_backend_never_raises_and_warns_once(monkeypatch, caplog):
    def broken():
        raise OSError("no route to statsd")

    monkeypatch.setattr(stats, "_backend", broken)
    monkeypatch.setattr(stats, "_warned", set())
    with caplog.at_level("DEBUG", logger=stats.__name__):
        stats.task_decided(finished(state=DEFERRED))
        stats.task_decided(finished(state=DEFERRED))
    levels = [r.levelname for r in caplog.records if "could not emit" in r.getMessage()]
    assert levels == ["WARNING", "DEBUG"]


def test_every_metric_is_emitted_with_its_declared_tags(fake):
    stats.task_decided(finished(state=DEFERRED))
    stats.task_finished(finished(served_by="conn:em", failed_sources=["x"], saved_g=-1.0))
    stats.task_finished(finished(reason="released", saved_g=1.0))
    stats.task_finished(finished(reason="deadline"))
    stats.tasks_waiting({("etl", "a", "DE"): 1})
    stats.budget_spent("etl", 1.0, 2.0)
    declared = {metric.name: metric for metric in stats.METRICS}
    seen = {stat for _, stat, _, _ in fake.calls}
    assert seen == set(declared)
    for _, stat, _, tags in fake.calls:
        assert tuple(tags) == declared[stat].tags, stat


@pytest.mark.parametrize("metric", stats.METRICS, ids=lambda m: m.name)
def test_names_pass_airflows_validation_with_its_default_prefix(metric):
    assert metric.name.startswith("carbon.")
    assert stat_name_default_handler(f"airflow.{metric.name}") == f"airflow.{metric.name}"
    assert stat_name_otel_handler("airflow", metric.name) == f"airflow.{metric.name}"


def test_a_real_statsd_logger_sends_tagged_lines(monkeypatch):
    """Airflow's own StatsD logger, set up by this module from ``[metrics]`` where Airflow had not, on a UDP socket."""
    pytest.importorskip("statsd", reason="Airflow's StatsD logger needs the statsd package")
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(5)
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.getsockname()[1]))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED", "True")
    monkeypatch.setattr(shared_stats, "_factory", None)
    monkeypatch.setattr(shared_stats, "_backend", None)
    monkeypatch.setattr(stats, "_initialized_pid", None)
    try:
        stats.task_finished(replace(finished(), delay_s=1.5, energy_kwh=0.25, emissions_g=None,
                                    baseline_emissions_g=None, saved_g=None))
        lines = {listener.recv(4096).decode() for _ in range(2)}
    finally:
        listener.close()
    tags = "dag_id=etl,task_id=summarize,region=DE"
    assert lines == {f"airflow.carbon.energy_kwh,{tags}:0.25|c", f"airflow.carbon.delay,{tags}:1500.000000|ms"}
