// The decision of one task instance, every try: what the planner chose and why, then what the run emitted.

import {
  airflowStateText, api, clear, duration, el, empty, errorBox, getJSON, grams, intensity, isNum, isWaiting, kwh,
  parseTime, pct, reasonText, releaseControl, replayedBadge, segment, signalCaveats, table, text, time,
} from "./common.js";
import { intensityChart, showEmpty } from "./charts.js";

const main = document.getElementById("main");
const { dagId, runId, taskId } = main.dataset;
const mapIndex = Number(main.dataset.mapIndex ?? -1);
const HOUR_MS = 3600 * 1000;
const MAX_SPAN_MS = 10 * 24 * HOUR_MS - 60_000; // the most the intensity API answers at once

const STATES = {
  deferred: ["waiting", "brand"],
  running: ["running", "warn"],
  completed: ["completed", "good"],
};

function fact(label, value, title) {
  return el("div", {}, el("dt", {}, label), el("dd", { title: title || undefined }, value));
}

function timeFact(label, iso) {
  return fact(label, time(iso), iso);
}

function compare(now, atStart) {
  if (!isNum(now) && !isNum(atStart)) return null;
  const top = Math.max(isNum(now) ? now : 0, isNum(atStart) ? atStart : 0) || 1;
  const bar = (label, value, better) => el("div", { class: "row" },
    el("span", {}, label),
    el("div", {}, isNum(value) ? el("div", { class: better ? "bar better" : "bar", "data-width": value / top }) : null),
    el("span", { class: "val" }, grams(value)));
  const better = isNum(now) && isNum(atStart) && atStart < now;
  return el("div", {},
    el("div", { class: "section-label" }, "Expected emissions"),
    el("div", { class: "compare" }, bar("if run when decided", now, false), bar("at the planned start", atStart, better)));
}

function savedText(row) {
  if (!isNum(row.saved_g)) return "–";
  const share = isNum(row.baseline_emissions_g) && row.baseline_emissions_g > 0
    ? ` (${pct((100 * row.saved_g) / row.baseline_emissions_g)})` : "";
  return `${grams(row.saved_g)}${share}`;
}

/** A try with a site shares its panels: where its solar came from is part of its record. */
const hasSite = (row) => Boolean(row.site || row.solar_served_by || row.solar_basis);

const SOLAR_BASIS = {
  measured: "the site's measured output",
  forecast: "the site's forecast output: no measurement covered the run",
  "measured+forecast": "measured output, a forecast where no measurement covered the run",
};

function solarBasis(basis) {
  if (!basis) return "no output known: counted as none";
  return SOLAR_BASIS[basis] || String(basis);
}

function record(row) {
  const failed = Array.isArray(row.failed_sources) && row.failed_sources.length ? row.failed_sources : null;
  return el("div", {},
    el("div", { class: "section-label" }, "What it emitted"),
    el("dl", { class: "facts" },
      timeFact("Started", row.started_at),
      timeFact("Ended", row.ended_at),
      fact("Delay", duration(row.delay_s)),
      fact("Intensity", intensity(row.intensity_g_per_kwh), "time-weighted over the run"),
      fact("Intensity had it run when ready", intensity(row.baseline_intensity_g_per_kwh)),
      fact("Energy", kwh(row.energy_kwh)),
      fact("Of which on-site solar", kwh(row.solar_kwh)),
      hasSite(row) ? fact("Solar figure from", solarBasis(row.solar_basis), "how the solar it used was obtained") : null,
      fact("From the grid", kwh(row.grid_kwh)),
      fact("Emissions", grams(row.emissions_g)),
      fact("Baseline emissions", grams(row.baseline_emissions_g), "had it run as soon as it was ready"),
      fact("Saved", el("span", { class: isNum(row.saved_g) && row.saved_g !== 0 ? (row.saved_g > 0 ? "good" : "bad") : undefined },
        savedText(row))),
      fact("Estimated", row.estimated === null || row.estimated === undefined ? "–" : row.estimated ? "yes" : "no",
        "energy or signal estimated rather than measured"),
      fact("Served by", text(row.served_by)),
      fact("Failed sources", failed ? el("span", { class: "bad" }, failed.join("; ")) : "none"),
    ));
}

/** A row written before records said how their energy was obtained: it was the declared figure or the assumed power. */
const BEFORE_METHODS = "declared or assumed (recorded before energy methods)";

/** Whether a meter read the energy (a counter or codecarbon's estimate from the load), for some component. */
const isMetered = (method) => /\b(measured|estimated)-/.test(String(method || ""));

function notMetered(method) {
  if (!method) return "declared or assumed, not metered";
  return method === "none" ? "none of its own" : `${method}, not metered`;
}

function runSeconds(row) {
  const started = parseTime(row.started_at);
  const ended = parseTime(row.ended_at);
  return started === null || ended === null ? null : (ended - started) / 1000;
}

/** "+12.0 %" or "-58.3 %": how far the measured figure lies from the expected one. */
function offBy(expected, measured) {
  if (!isNum(expected) || !isNum(measured) || expected <= 0) return "–";
  const change = (100 * (measured - expected)) / expected;
  return change > 0 ? `+${pct(change)}` : pct(change);
}

/** The plan's expectation beside what the try really took, with where the expectation came from. */
function expectedVsMeasured(row) {
  const gated = row.energy_scope === "gated"; // a sensor's record: the work it let run took its time elsewhere
  const measuredS = gated ? null : runSeconds(row);
  const rows = [
    { what: "Duration", expected: duration(row.expected_duration_s),
      measured: gated ? "– (the tasks it let run)" : duration(measuredS),
      off: offBy(row.expected_duration_s, measuredS), title: "ended_at − started_at" },
    { what: "Energy", expected: kwh(row.expected_energy_kwh),
      measured: isMetered(row.energy_method) ? kwh(row.energy_kwh)
        : `${kwh(row.energy_kwh)} (${notMetered(row.energy_method)})`,
      off: offBy(row.expected_energy_kwh, row.energy_kwh), title: "energy_kwh, PUE included" },
  ];
  const from = row.expected_from ? String(row.expected_from)
    : row.energy_method ? "not recorded" : "not recorded (recorded before expectations)";
  return el("div", { class: "expected-measured" },
    el("div", { class: "section-label" }, "Expected and measured"),
    table([
      { label: "", value: (r) => r.what },
      { label: "Expected", num: true, value: (r) => r.expected },
      { label: "Measured", num: true, value: (r) => r.measured, title: (r) => r.title },
      { label: "Difference", num: true, value: (r) => r.off },
    ], rows, { caption: `Expected from: ${from}`, stack: false }));
}

function pueText(pue) {
  if (!isNum(pue)) return "–";
  return pue === 1 ? "1 (IT energy only)" : `${pue} (the IT energy times this)`;
}

/** How the try's energy was obtained: the method and scope of each component, the PUE, the breakdown, the notes. */
function energySource(row) {
  if (!row.energy_method) {
    return el("div", { class: "energy-source" },
      el("div", { class: "section-label" }, "How the energy was obtained"),
      el("dl", { class: "facts" }, fact("Method", BEFORE_METHODS, "this try was recorded before records said how")));
  }
  const breakdown = row.energy_breakdown_kwh && typeof row.energy_breakdown_kwh === "object"
    ? Object.entries(row.energy_breakdown_kwh) : [];
  const notes = Array.isArray(row.energy_notes) ? row.energy_notes : [];
  return el("div", { class: "energy-source" },
    el("div", { class: "section-label" }, "How the energy was obtained"),
    el("dl", { class: "facts" },
      fact("Method", text(row.energy_method), "per component when they differ"),
      fact("Scope", text(row.energy_scope),
        "process: its own work; machine-split: a machine counter split by CPU-time share; device: whole GPUs; "
        + "task: a declared or assumed figure; gated: the tasks a sensor let run"),
      fact("PUE", pueText(row.pue), "the facility's overhead on the IT energy"),
      fact("Per component (IT energy)", breakdown.length
        ? el("ul", {}, breakdown.map(([name, value]) => el("li", {}, `${name}: ${kwh(value)}`)))
        : "–"),
    ),
    notes.length ? el("ul", { class: "energy-notes small muted" }, notes.map((note) => el("li", {}, String(note))))
      : null);
}

/** A signed saving: green when it saved, red when it cost. */
function signedGrams(g) {
  return el("span", { class: isNum(g) && g !== 0 ? (g > 0 ? "good" : "bad") : undefined }, grams(g));
}

/** Whether the chosen task's energy is on the record yet: its rewrite names the method "gated: ...". */
const chosenTaskFinished = (row) => String(row.energy_method || "").startsWith("gated: ");

/** A choice between regions: where the work ran, what each candidate was expected to emit, the saving's split. */
function where(row) {
  const waiting = row.state === "deferred";
  const failed = Array.isArray(row.failed_sources) ? row.failed_sources.map(String) : [];
  const expected = row.region_expected_g && typeof row.region_expected_g === "object"
    ? Object.entries(row.region_expected_g).map(([region, g]) => ({ region, g })) : [];
  const failure = (region) => failed.filter((entry) => entry.startsWith(`${region}: `)).join("; ");
  const notes = (r) => {
    const parts = [];
    if (r.region === row.region) parts.push(el("span", { class: "badge good" }, waiting ? "planned" : "chosen"));
    if (r.region === row.home_region) parts.push(el("span", { class: "badge" }, "home: the baseline"));
    if (!isNum(r.g)) {
      const why = failure(r.region);
      parts.push(el("span", { class: "bad" }, `its signal failed${why ? `: ${why}` : ""}`));
    }
    return parts.flatMap((part, i) => (i ? [" ", part] : [part]));
  };
  const split = isNum(row.saved_time_g) || isNum(row.saved_place_g)
    ? el("p", { class: "split" }, "Time saved ", signedGrams(row.saved_time_g), ", place saved ",
      signedGrams(row.saved_place_g), ".")
    : el("p", { class: "split muted" }, chosenTaskFinished(row)
      ? "The saving is not split: no baseline in the home region."
      : `The energy, the emissions and the saving, split into what the time and what the place saved, are added `
        + `to this record when ${text(row.chosen_task_id)} finishes.`);
  return el("div", { class: "where" },
    el("div", { class: "section-label" }, "Where"),
    el("dl", { class: "facts" },
      fact(waiting ? "Planned region" : "Chosen region", text(row.region)),
      fact("Task that runs there", text(row.chosen_task_id)),
      fact("Home region", text(row.home_region), "the first candidate: the baseline is this region, run when ready"),
    ),
    expected.length ? table([
      { label: "Candidate", value: (r) => r.region },
      { label: "Expected emissions at its best start", num: true, value: (r) => grams(r.g) },
      { label: "", value: notes },
    ], expected, { stack: false }) : null,
    waiting ? null : split);
}

/** The store keeps a try deferred that Airflow moved on (marked, cleared, queued, deleted): it is not waiting. */
const isStale = (row) => row.state === "deferred" && !isWaiting(row);

function staleText(row) {
  const plan = reasonText(row.reason, "deferred", row.failed_sources);
  return `Not waiting: Airflow has this task instance ${airflowStateText(row)}. Its last plan: ${plan}.`;
}

function runNow(row) {
  return el("div", { class: "run-now" },
    el("div", { class: "section-label" }, "Run now"),
    el("p", { class: "muted small" }, "Start it at the next poll instead of at its planned start. ",
      "Its record keeps who released it, when and why; its saving is still counted against running when ready."),
    releaseControl(row));
}

function tryPanel(row, index) {
  const stale = isStale(row);
  const [stateLabel, tone] = stale ? ["not waiting", "warn"] : STATES[row.state] || [row.state || "unknown", ""];
  const completed = row.state === "completed" || Boolean(row.ended_at);
  const replayed = replayedBadge(row.signal);
  const latest = index === 0;
  return el("section", { class: "panel" },
    el("div", { class: "panel-head" },
      el("h2", {}, `Try ${text(row.try_number)} `, el("span", { class: `badge ${tone}` }, stateLabel),
        replayed ? [" ", replayed] : null),
      el("span", { class: "hint" }, `decided ${time(row.decided_at)}`)),
    el("div", { class: "panel-body" },
      el("p", { class: "reason" }, stale ? staleText(row)
        : capitalise(reasonText(row.reason, row.state, row.failed_sources))),
      latest && isWaiting(row) ? runNow(row) : null,
      el("dl", { class: "facts" },
        fact("Policy", text(row.policy)),
        fact("Region", text(row.region)),
        fact("Source", text(row.source)),
        fact("Signal", text(row.signal), "where the intensity series the plan and the figures use came from"),
        hasSite(row) ? fact("Site", text(row.site), "whose solar panels it shares with other tasks") : null,
        hasSite(row) ? fact("Solar source", text(row.solar_served_by), "the solar source that answered") : null,
        timeFact("Ready at", row.ready_at),
        timeFact("Planned start", row.planned_start),
        timeFact("Deadline", row.deadline),
        latest ? fact("In Airflow now", airflowStateText(row),
          "the task instance's state in Airflow's own database, and its try when not this one") : null,
      ),
      row.home_region ? where(row) : null,
      compare(row.expected_emissions_now_g, row.expected_emissions_at_start_g),
      completed ? [record(row), expectedVsMeasured(row), energySource(row)]
        : el("p", { class: "muted" }, "The record appears here once this try has run."),
    ));
}

function capitalise(value) {
  return value ? value[0].toUpperCase() + value.slice(1) : value;
}

/** Bars sized from data-width (0..1): set through CSSOM, as the page's CSP allows no inline style. */
function sizeBars(root) {
  for (const bar of root.querySelectorAll(".bar[data-width]")) {
    bar.style.width = `${Math.max(1, Math.min(100, Number(bar.dataset.width) * 100))}%`;
  }
}

async function chart(rows) {
  const latest = rows[0];
  const panel = document.getElementById("intensity-panel");
  const container = document.getElementById("chart-intensity");
  const instants = [];
  for (const r of rows) {
    for (const iso of [r.ready_at, r.planned_start, r.deadline, r.started_at, r.ended_at]) instants.push(parseTime(iso));
  }
  const known = instants.filter((t) => t !== null);
  if (!known.length || (!latest.region && !latest.source)) return;
  panel.hidden = false;
  const end = Math.max(...known) + 2 * HOUR_MS;
  const start = Math.max(Math.min(...known) - 2 * HOUR_MS, end - MAX_SPAN_MS);
  try {
    const series = await getJSON(api("intensity", {
      region: latest.region, source: latest.source, start: new Date(start).toISOString(), end: new Date(end).toISOString(),
    }));
    const points = Array.isArray(series.points) ? series.points : [];
    document.getElementById("intensity-note").textContent =
      `g CO₂e/kWh in ${text(series.region || latest.region)} from ${text(series.source || latest.source)}, UTC.`
      + signalCaveats(series);
    if (!points.length) {
      showEmpty(container, "No intensity data for this period.", "The source may not keep history this far back.");
      return;
    }
    const markers = rows.map((r) => ({
      label: `try ${text(r.try_number)}`,
      ready: r.ready_at,
      start: r.started_at,
      planned: r.started_at ? null : r.planned_start,
      readyG: r.baseline_intensity_g_per_kwh,
      startG: r.intensity_g_per_kwh,
    }));
    const deadlines = [...new Set(rows.map((r) => r.deadline).filter(Boolean))];
    const now = Date.now();
    intensityChart(container, { points, periodS: series.period_s, markers, deadlines, now: now >= start && now <= end });
  } catch (error) {
    clear(container, errorBox(`Could not load the grid's intensity: ${error.message}`));
  }
}

async function start() {
  const tries = document.getElementById("tries");
  const path = `decision/${segment(dagId)}/${segment(runId)}/${segment(taskId)}`;
  let rows;
  try {
    rows = await getJSON(api(path, { map_index: mapIndex }));
  } catch (error) {
    if (error.status === 404) rows = [];
    else {
      clear(tries, el("section", { class: "panel" }, errorBox(`Could not load the decision: ${error.message}`)));
      return;
    }
  }
  if (!rows.length) {
    clear(tries, el("section", { class: "panel" }, empty("No carbon decision is recorded for this task instance.",
      "Only carbon-aware tasks record one, when they start; if this task is carbon-aware, it has not started yet.")));
    return;
  }
  rows.sort((a, b) => (b.try_number ?? 0) - (a.try_number ?? 0));
  clear(tries, rows.map((row, index) => tryPanel(row, index)));
  sizeBars(tries);
  chart(rows);
}

start();
