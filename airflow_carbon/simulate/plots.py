"""The seed experiment's seven figures, comparing every simulated policy with the immediate baseline.

The two solar figures are drawn only when a solar series was given: without one they would be empty.

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg canvas: nothing
goes through pyplot, so no backend is switched, no global figure registry fills up and each
figure is freed once written. The data behind each figure comes from a small pure function
that tests can check without looking at images. matplotlib comes with the ``plots`` extra; without
it, importing this module raises ``MissingExtraError`` saying how to install it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from airflow_carbon.errors import MissingExtraError

try:
    import matplotlib.dates as mdates
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ImportError as error:
    raise MissingExtraError("the figures need matplotlib: pip install 'airflow-carbon[plots]'") from error

from airflow_carbon.accounting import JobRecord
from airflow_carbon.signals import Series
from airflow_carbon.signals.series import from_epoch_s

BASELINE = "immediate"
HOURS = np.arange(24)
FIGSIZE = (11.0, 5.5)
DPI = 100
NO_SOLAR = "no solar data given"
_BASELINE_COLOR = "0.55"
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")

Results = Mapping[str, Sequence[JobRecord]]


@dataclass(frozen=True)
class Totals:
    """Total kg CO2 of one policy: ``*_kg`` grid only (energy x intensity), ``net_*`` after on-site solar.

    Records whose figure is None (signal did not cover the run) are left out of the sum.
    """

    baseline_kg: float
    scheduled_kg: float
    net_baseline_kg: float
    net_kg: float


def delays_h(records: Sequence[JobRecord]) -> np.ndarray:
    """How long each job waited after it became ready, in hours."""
    return np.array([r.delay_s for r in records], dtype=float) / 3600.0


def _hour(instant: datetime) -> int:
    return instant.astimezone(UTC).hour


def starts_per_hour(records: Sequence[JobRecord]) -> np.ndarray:
    """Jobs started in each hour of the day (UTC), 24 counts: where a policy moves the load."""
    return np.bincount([_hour(r.started_at) for r in records], minlength=24).astype(int)


def solar_kwh_per_hour(records: Sequence[JobRecord]) -> np.ndarray:
    """Solar kWh the jobs used, by the UTC hour each job started in (jobs are short next to an hour)."""
    return np.bincount([_hour(r.started_at) for r in records], weights=[r.solar_kwh for r in records],
                       minlength=24).astype(float)


def intensities_at_execution(records: Sequence[JobRecord]) -> np.ndarray:
    """Mean grid intensity (gCO2eq/kWh) over each job's run; jobs the signal did not cover are left out."""
    return np.array([r.intensity_g_per_kwh for r in records if r.intensity_g_per_kwh is not None], dtype=float)


def _kg(pairs: Sequence[tuple[float, float | None]]) -> float:
    return sum(weight * value for weight, value in pairs if value is not None) / 1000.0


def totals_kg(results: Results) -> dict[str, Totals]:
    """Per policy, the sums behind the baseline-vs-scheduled bars, in kg CO2."""
    return {
        policy: Totals(
            baseline_kg=_kg([(r.energy_kwh, r.baseline_intensity_g_per_kwh) for r in records]),
            scheduled_kg=_kg([(r.energy_kwh, r.intensity_g_per_kwh) for r in records]),
            net_baseline_kg=_kg([(1.0, r.baseline_emissions_g) for r in records]),
            net_kg=_kg([(1.0, r.emissions_g) for r in records]),
        )
        for policy, records in results.items()
    }


def best_policy(results: Results) -> str:
    """The non-immediate policy with the lowest net emissions (first on a tie); the baseline if it is alone."""
    totals = totals_kg(results)
    candidates = [policy for policy in results if policy != BASELINE] or list(results)
    return min(candidates, key=lambda policy: (totals[policy].net_kg, totals[policy].scheduled_kg))


def time_span(results: Results, intensity: Series) -> tuple[datetime, datetime]:
    """From the first job ready to the last job ended under any policy; the whole series if there are no jobs."""
    records = [r for records in results.values() for r in records]
    if not records:
        return from_epoch_s(intensity.first_epoch_s), from_epoch_s(intensity.end_epoch_s)
    return min(r.ready_at for r in records), max(r.ended_at for r in records)


def signal_note(intensity: Series) -> str:
    """Title suffix flagging a carbon series that is not plain measurement or forecast."""
    flags = [name for name, flag in (("replayed", intensity.replayed), ("estimated", intensity.estimated)) if flag]
    return f" ({', '.join(flags)} carbon data)" if flags else ""


def step_xy(series: Series, start: datetime, end: datetime) -> tuple[list[datetime], np.ndarray]:
    """Edges and values of the periods overlapping ``[start, end)``, ready for ``step(where="post")``."""
    part = series.between(start, end)
    if not len(part):
        return [], np.array([])
    return [from_epoch_s(t) for t in part.bounds_epoch_s], np.append(part.values, part.values[-1])


def colors(policies: Sequence[str]) -> dict[str, str]:
    """One color per policy, the same in every figure; the baseline is grey."""
    others = iter(_PALETTE * (len(policies) // len(_PALETTE) + 1))
    return {policy: _BASELINE_COLOR if policy == BASELINE else next(others) for policy in policies}


def _new_figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=14, color="0.3",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.6"})


def _legend_above(figure: Figure, ax: Axes) -> None:
    """Legend outside the plot area, so it never covers data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 4), frameon=False)


def _time_axis(ax: Axes, start: datetime, end: datetime) -> None:
    locator = mdates.AutoDateLocator(tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.set_xlim(start, end)
    ax.set_xlabel("time (UTC)")


def _hour_bars(ax: Axes, per_policy: Mapping[str, np.ndarray], palette: Mapping[str, str]) -> None:
    """Bars of 24 hourly values per policy, side by side within each hour."""
    width = 0.8 / max(len(per_policy), 1)
    for n, (policy, values) in enumerate(per_policy.items()):
        ax.bar(HOURS - 0.4 + width * (n + 0.5), values, width, label=policy, color=palette[policy])
    ax.set_xticks(HOURS)
    ax.set_xlim(-0.6, 23.6)
    ax.set_xlabel("hour of day (UTC)")


def plot_delay_distribution(figure: Figure, ax: Axes, results: Results, palette: Mapping[str, str]) -> None:
    """Histogram of the waits each scheduling policy imposed; the baseline never waits, so it is left out."""
    delays = {policy: delays_h(records) for policy, records in results.items() if policy != BASELINE}
    ax.set_title("Delay from ready to start per policy")
    ax.set_xlabel("delay (h, 15 min bins)")
    ax.set_ylabel("jobs")
    if not delays:
        _note(ax, "no scheduling policy besides immediate")
        return
    longest = max(float(d.max(initial=0.0)) for d in delays.values())
    edges = np.arange(0.0, np.ceil(longest * 4.0) / 4.0 + 0.25, 0.25)
    labels = [f"{p} ({int(np.sum(d > 0))} of {d.size} delayed)" for p, d in delays.items()]
    ax.hist(list(delays.values()), bins=edges, label=labels, color=[palette[p] for p in delays])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_above(figure, ax)


def plot_jobs_per_hour(figure: Figure, ax: Axes, results: Results, palette: Mapping[str, str]) -> None:
    """Where in the day each policy starts the jobs, against the baseline's arrival pattern."""
    _hour_bars(ax, {policy: starts_per_hour(records) for policy, records in results.items()}, palette)
    ax.set_title("Jobs started per hour of day")
    ax.set_ylabel("jobs started")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_above(figure, ax)


def plot_grid_intensity(figure: Figure, ax: Axes, results: Results, intensity: Series,
                        palette: Mapping[str, str]) -> None:
    """The signal the planners saw, with where the best policy moved each job from and to."""
    start, end = time_span(results, intensity)
    x, y = step_xy(intensity, start, end)
    ax.step(x, y, where="post", color="0.2", linewidth=1.5, label=f"grid intensity {intensity.region}")
    best = best_policy(results)
    records = results.get(best, [])
    ax.scatter([r.ready_at for r in records], [intensity.at(r.ready_at) for r in records], marker="o",
               facecolors="none", edgecolors="0.45", s=30, label=f"{best}: ready", zorder=3)
    ax.scatter([r.started_at for r in records], [r.intensity_g_per_kwh for r in records], marker="o",
               color=palette[best], s=18, label=f"{best}: started", zorder=4)
    ax.set_title(f"Grid carbon intensity, jobs of {best} marked{signal_note(intensity)}")
    ax.set_ylabel(f"carbon intensity ({intensity.unit})")
    _time_axis(ax, start, end)
    _legend_above(figure, ax)


def plot_intensity_at_execution(figure: Figure, ax: Axes, results: Results, intensity: Series,
                                palette: Mapping[str, str]) -> None:
    """Spread of the intensity jobs ran at: box per policy with every job as a jittered point."""
    policies = list(results)
    values = [intensities_at_execution(records) for records in results.values()]
    positions = np.arange(1, len(policies) + 1)
    ax.boxplot(values, positions=positions, widths=0.5, showfliers=False, showmeans=True,
               medianprops={"color": "black"},
               meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"})
    jitter = np.random.default_rng(0)
    for position, policy, points in zip(positions, policies, values, strict=True):
        ax.scatter(position + jitter.uniform(-0.15, 0.15, points.size), points, s=12, alpha=0.6,
                   color=palette[policy], zorder=3)
    ax.set_xticks(positions, [p + " (baseline)" if p == BASELINE else p for p in policies])
    ax.set_title(f"Grid intensity each job ran at (box: quartiles, diamond: mean){signal_note(intensity)}")
    ax.set_xlabel("policy")
    ax.set_ylabel(f"mean intensity over the run ({intensity.unit})")


def plot_co2(figure: Figure, ax: Axes, results: Results, intensity: Series, solar: Series | None,
             palette: Mapping[str, str]) -> None:
    """Total emissions of each policy next to the baseline, grid only and, with solar, net of it."""
    totals = totals_kg(results)
    first = next(iter(totals.values()), Totals(0.0, 0.0, 0.0, 0.0))
    bars = {"immediate (baseline)": (first.baseline_kg, first.net_baseline_kg, _BASELINE_COLOR)}
    bars |= {p: (t.scheduled_kg, t.net_kg, palette[p]) for p, t in totals.items() if p != BASELINE}
    groups = ["grid only\n(energy x intensity)"] + (["net of on-site solar"] if solar is not None else [])
    width = 0.8 / len(bars)
    for n, (label, (grid_kg, net_kg, color)) in enumerate(bars.items()):
        heights = [grid_kg, net_kg][: len(groups)]
        bases = [first.baseline_kg, first.net_baseline_kg][: len(groups)]
        drawn = ax.bar(np.arange(len(groups)) - 0.4 + width * (n + 0.5), heights, width, label=label, color=color)
        ax.bar_label(drawn, [f"{h:.3f}\n{100.0 * (h - b) / b:+.1f}%" if b else f"{h:.3f}"
                             for h, b in zip(heights, bases, strict=True)], fontsize=9, padding=2)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.margins(y=0.2)
    ax.set_ylabel("total emissions (kg CO2eq)")
    solar_note = "" if solar is not None else f"; {NO_SOLAR}, grid only"
    ax.set_title(f"Total CO2: baseline vs scheduled{signal_note(intensity)}{solar_note}")
    _legend_above(figure, ax)


def plot_solar_profile(figure: Figure, ax: Axes, results: Results, intensity: Series, solar: Series | None) -> None:
    """The on-site power the jobs could share; a note in place of the curve without solar data."""
    start, end = time_span(results, intensity)
    ax.set_title("On-site solar power available")
    ax.set_ylabel("solar power (kW)")
    _time_axis(ax, start, end)
    if solar is None:
        ax.set_ylim(0.0, 1.0)
        _note(ax, NO_SOLAR)
        return
    x, y = step_xy(solar, start, end)
    ax.step(x, y, where="post", color="tab:orange", linewidth=1.5)
    ax.fill_between(x, y, step="post", color="tab:orange", alpha=0.3)
    ax.set_ylim(bottom=0.0)


def plot_solar_energy_used(figure: Figure, ax: Axes, results: Results, solar: Series | None,
                           palette: Mapping[str, str]) -> None:
    """Where in the day each policy used solar; all zero, with a note, without solar data."""
    _hour_bars(ax, {policy: solar_kwh_per_hour(records) for policy, records in results.items()}, palette)
    ax.set_title("Solar energy used per hour of day (by job start)")
    ax.set_ylabel("solar energy used (kWh)")
    if solar is None:
        ax.set_ylim(0.0, 1.0)
        _note(ax, NO_SOLAR)
    _legend_above(figure, ax)


def write_plots(results: Results, intensity: Series, solar: Series | None, out_dir: Path) -> list[Path]:
    """Write the PNG figures into ``out_dir`` (created) and return their paths: all seven with solar, and
    without it the five that do not show solar (the two solar ones would hold nothing but a note)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    palette = colors(list(results))
    drawers: dict[str, Callable[[Figure, Axes], None]] = {
        "delay_distribution": lambda f, a: plot_delay_distribution(f, a, results, palette),
        "jobs_per_hour": lambda f, a: plot_jobs_per_hour(f, a, results, palette),
        "grid_intensity": lambda f, a: plot_grid_intensity(f, a, results, intensity, palette),
        "intensity_at_execution": lambda f, a: plot_intensity_at_execution(f, a, results, intensity, palette),
        "co2_baseline_vs_scheduled": lambda f, a: plot_co2(f, a, results, intensity, solar, palette),
    }
    if solar is not None:
        drawers["solar_profile"] = lambda f, a: plot_solar_profile(f, a, results, intensity, solar)
        drawers["solar_energy_used"] = lambda f, a: plot_solar_energy_used(f, a, results, solar, palette)
    paths = []
    for name, draw in drawers.items():
        figure, ax = _new_figure()
        draw(figure, ax)
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=DPI)
        figure.clear()
        paths.append(path)
    return paths
