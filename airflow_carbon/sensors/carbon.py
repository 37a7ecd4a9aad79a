"""A sensor that waits for a cleaner grid, for work that runs in the tasks after it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator

from airflow_carbon.accounting.energy import gated
from airflow_carbon.clock import utcnow
from airflow_carbon.links import CarbonDecisionLink
from airflow_carbon.operators.runtime import CarbonTaskRun, resolve_settings
from airflow_carbon.settings import check_arguments, check_task
from airflow_carbon.triggers.event import CarbonEvent


class CarbonAwareSensor(BaseSensorOperator):
    """Succeed when the grid is clean enough for the work downstream, or at its deadline.

    It plans for the downstream work as declared (``energy_kwh``, or ``power_kw`` over ``expected_duration``).
    Its ``carbon`` record claims no energy of its own (``energy_method`` ``none``): each task it let run adds the
    energy it drew, metered in its own process, to the record as it finishes (see ``plugins/gated.py``).

    :param max_delay: how long after the sensor became ready the work may wait.
    :param deadline: an absolute, templated deadline instead of ``max_delay``.
    :param region: grid region of the signal.
    :param source: connection id of the signal source; None: bundled data, replayed.
    :param policy: ``immediate``, ``threshold`` or ``forecast``.
    :param energy_kwh: energy the downstream work uses.
    :param power_kw: or its power, over ``expected_duration``.
    :param expected_duration: how long the downstream work runs.
    :param min_saving_pct: ``forecast``: wait only for at least this saving.
    :param replan_margin_pct: ``forecast``: keep the planned start unless a new best beats it by this share.
    :param risk_aversion: ``forecast``: 0..1, how far toward its upper quantile a forecaster's forecast is taken.
    :param forecaster: what carries a source's series past its end (``persistence``, ``seasonal``, ``model``,
        ``none``); None: the source connection's extra ``forecaster``, else ``[carbon] forecaster``.
    :param threshold_g_per_kwh: ``threshold``: green at or below this.
    :param on_unavailable: with no signal, ``wait`` until the deadline or ``run`` at once.
    :param refresh_interval: how often the waiting sensor re-plans.
    :param metrics_conn_id: connection of the metrics store.
    :param solar: connection id of the site's on-site solar source; None: the grid alone.
    :param site: the site whose panels the work shares; None: the solar connection's site.
    :param solar_threshold_kw: ``threshold``: enough solar at or above this; None: the work's power.
    :param carbon_budget: the DAG's carbon budget (``"500 g/day"``, or ``{"grams", "period", "strict"}``); a
        budget set in the Carbon view wins.
    :param on_budget_exceeded: a callback (or a list), called with the task's context once per budget period when
        the DAG's emissions cross its budget; ``context["carbon_budget"]`` holds the budget's status.
    :param deferrable: wait in the triggerer (default) rather than in a worker slot; without a
        triggerer, ``deferrable=False`` pokes instead (``mode="reschedule"`` frees the slot between pokes).
    """

    template_fields = ("deadline",)
    ui_color = "#b7e4c7"
    operator_extra_links = (CarbonDecisionLink(),)

    def __init__(
        self,
        *,
        max_delay: timedelta | str | None = None,
        deadline: datetime | str | None = None,
        region: str | None = None,
        source: str | None = None,
        policy: str | None = None,
        energy_kwh: float | None = None,
        power_kw: float | None = None,
        expected_duration: timedelta | str | None = None,
        min_saving_pct: float | None = None,
        threshold_g_per_kwh: float | None = None,
        on_unavailable: str | None = None,
        refresh_interval: timedelta | str | None = None,
        metrics_conn_id: str | None = None,
        solar: str | None = None,
        site: str | None = None,
        solar_threshold_kw: float | None = None,
        risk_aversion: float | None = None,
        replan_margin_pct: float | None = None,
        forecaster: str | None = None,
        carbon_budget: str | dict[str, Any] | None = None,
        on_budget_exceeded: Any = None,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        check_arguments(kwargs.get("task_id", "?"), kwargs, BaseSensorOperator)
        # Airflow fills the arguments this __init__ names from default_args: those were not given on the task.
        default_args = kwargs.get("default_args") or {}
        super().__init__(**kwargs)
        self.deadline = deadline
        self.carbon_options = {
            "max_delay": max_delay, "region": region, "source": source, "policy": policy, "energy_kwh": energy_kwh,
            "power_kw": power_kw, "expected_duration": expected_duration, "min_saving_pct": min_saving_pct,
            "threshold_g_per_kwh": threshold_g_per_kwh, "on_unavailable": on_unavailable,
            "refresh_interval": refresh_interval, "metrics_conn_id": metrics_conn_id, "solar": solar, "site": site,
            "solar_threshold_kw": solar_threshold_kw, "risk_aversion": risk_aversion, "forecaster": forecaster,
            "replan_margin_pct": replan_margin_pct, "carbon_budget": carbon_budget,
            "on_budget_exceeded": on_budget_exceeded,
        }
        given = {name: value for name, value in {**self.carbon_options, "deadline": deadline}.items()
                 if not (name in default_args and default_args[name] is value)}
        check_task(self.task_id, given, default_args)
        self.deferrable = deferrable
        self._carbon: CarbonTaskRun | None = None
        self._poked: CarbonEvent | None = None

    @property
    def carbon_deadline(self) -> datetime | str | None:
        """The deadline as rendered: the setting every carbon-aware operator keeps under this name."""
        return self.deadline

    def _carbon_run(self, context: Any) -> CarbonTaskRun:
        if self._carbon is None:
            self._carbon = CarbonTaskRun.start(self, context, resolve_settings(self), learn=False)
        return self._carbon

    def execute(self, context: Any) -> None:
        # Each execute is one try or one reschedule: an operator object run again in the same process
        # (``dag.test()``, retries) must not keep the previous try's key or read its ready time from memory.
        self._carbon = self._poked = None
        if not self.deferrable:
            super().execute(context)
            return self._finish(context, self._carbon_run(context), self._poked)
        run = self._carbon_run(context)
        return self._finish(context, run, run.wait_if_needed(self))

    def poke(self, context: Any) -> bool:
        """Each poke re-plans; the first also records the ready time, so reschedules keep the deadline."""
        first_poke = self._carbon is None
        run = self._carbon_run(context)
        self._poked = run.decide_now()
        if first_poke:
            run.write_decision(self._poked)
        return self._poked.decision.run_now

    def carbon_resume(self, context: Any, event: dict[str, Any]) -> None:
        carbon_event = CarbonEvent.from_json(self.task_id, event)
        self._finish(context, CarbonTaskRun.resume(self, context, carbon_event), carbon_event)

    def _finish(self, context: Any, run: CarbonTaskRun, event: CarbonEvent | None) -> None:
        if event is None:  # poked to success without a decision in this process: plan once more for the record
            event = run.decide_now()
        succeeded_at = utcnow()
        event = run.begin(event, succeeded_at)
        run.finish(context, event, succeeded_at, succeeded_at, energy=gated(run.settings.pue), estimated=True)
