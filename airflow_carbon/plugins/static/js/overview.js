// The overview ("/" and "/dag/{dag_id}"): deferred now, history per DAG and day, and the charts.

import {
  api, clear, count, dagUrl, duration, el, empty, errorBox, getJSON, grams, intensity, isNum, keepReleases, kwh,
  parseTime, pct, reasonText, releaseControl, releaseFormOpen, signalCaveats, table, taskUrl, text, time,
} from "./common.js";
import { dailyBars, delayHistogram, intensityChart, showEmpty } from "./charts.js";

const main = document.getElementById("main");
const fixedDag = main.dataset.dagId || "";
const filters = JSON.parse(main.dataset.query || "{}");
const TASK_LIMIT = 5000;
const MARKER_LIMIT = 400;
const REFRESH_MS = 60_000;
const AFTER_RELEASE_MS = 20_000; // the next release poll (15 s by default), and the task leaves the table
const HOUR_S = 3600;
const MAX_SPAN_DAYS = 10; // the most the intensity API answers at once
const MAX_SPAN_MS = MAX_SPAN_DAYS * 24 * HOUR_S * 1000 - 60_000;

const howTo = () => [
  "Wrap a task that can wait, e.g. ",
  el("code", {}, "@carbon_aware(max_delay=timedelta(hours=4))"),
  ", and its runs show up here once they finish.",
];

// ---- deferred now ----

function sourceCell(row) {
  const fallback = row.served_by && row.served_by !== row.source;
  return [text(row.source), fallback ? el("div", {}, el("span", { class: "badge warn", title: "the task's own source failed" }, `via ${row.served_by}`)) : null];
}

const DEFERRED_COLUMNS = [
  ...(fixedDag ? [] : [{ label: "DAG", value: (r) => el("a", { href: dagUrl(r.dag_id) }, r.dag_id) }]),
  {
    label: "Task",
    value: (r) => [
      el("a", { href: taskUrl(r), title: "the carbon decision of this task instance" }, r.task_id),
      el("div", { class: "small muted" }, reasonText(r.reason, "deferred", r.failed_sources)),
    ],
  },
  // The whole id, wrapped: runs of one minute differ only in their last characters.
  { label: "Run", value: (r) => el("span", { class: "mono small run", title: r.run_id }, r.run_id) },
  { label: "Map index", num: true, value: (r) => (isNum(r.map_index) && r.map_index >= 0 ? String(r.map_index) : "–") },
  { label: "Region", value: (r) => text(r.region) },
  { label: "Source", value: sourceCell },
  { label: "Ready at", value: (r) => time(r.ready_at, { short: true }), title: (r) => r.ready_at },
  {
    label: "Planned start",
    value: (r) => [time(r.planned_start, { short: true }),
      el("div", { class: "small muted" }, `planned ${time(r.decided_at, { short: true })}`)],
    title: (r) => `${text(r.planned_start)}, as the plan made at ${text(r.decided_at)} chose: the trigger re-plans `
      + "at every refresh",
  },
  { label: "Deadline", value: (r) => time(r.deadline, { short: true }), title: (r) => r.deadline },
  {
    label: "Current intensity",
    num: true,
    value: (r) => intensity(r.current_intensity_g_per_kwh),
    title: (r) => `at the latest plan, ${time(r.decided_at)} UTC`,
  },
  {
    label: "Expected saving",
    num: true,
    value: (r) => {
      const share = isNum(r.expected_saving_g) && isNum(r.expected_emissions_now_g) && r.expected_emissions_now_g > 0
        ? ` (${pct((100 * r.expected_saving_g) / r.expected_emissions_now_g)})` : "";
      return el("span", { class: isNum(r.expected_saving_g) && r.expected_saving_g > 0 ? "good" : undefined },
        `${grams(r.expected_saving_g)}${share}`);
    },
    title: (r) => `now ${grams(r.expected_emissions_now_g)}, at the planned start ${grams(r.expected_emissions_at_start_g)}`,
  },
  { label: "Waited", num: true, value: (r) => duration(r.waited_s) },
  { label: "May still wait", num: true, value: (r) => duration(r.remaining_s) },
  { label: "Run now", value: (r) => releaseControl(r, { onReleased: () => setTimeout(loadDeferred, AFTER_RELEASE_MS) }) },
];

let deferredRows = [];

async function loadDeferred() {
  const body = document.getElementById("deferred-body");
  const badge = document.getElementById("deferred-count");
  if (releaseFormOpen()) return deferredRows; // someone is typing a reason: refresh at the next tick
  try {
    const rows = await getJSON(api("deferred", fixedDag ? { dag_id: fixedDag } : {}));
    deferredRows = fixedDag ? rows.filter((r) => r.dag_id === fixedDag) : rows;
    keepReleases(deferredRows);
    badge.textContent = String(deferredRows.length);
    const sorted = [...deferredRows].sort((a, b) => (parseTime(a.planned_start) ?? 0) - (parseTime(b.planned_start) ?? 0));
    if (!sorted.length) {
      clear(body, empty("No task is waiting for a cleaner window right now.",
        "Carbon-aware tasks appear here while they are deferred, with when they plan to start and what waiting saves."));
    } else {
      clear(body, table(DEFERRED_COLUMNS, sorted));
    }
    document.getElementById("deferred-updated").textContent = `Times in UTC, today's without a date. Updated ${time(new Date().toISOString(), { short: true })}, refreshed every minute.`;
  } catch (error) {
    badge.textContent = "!";
    clear(body, errorBox(`Could not load the deferred tasks: ${error.message}`));
  }
  return deferredRows;
}

// ---- history ----

const sum = (rows, key) => rows.reduce((total, r) => total + (isNum(r[key]) ? r[key] : 0), 0);

const HISTORY_COLUMNS = [
  ...(fixedDag ? [] : [{ label: "DAG", value: (r) => (r.total ? "Total" : el("a", { href: dagUrl(r.dag_id) }, r.dag_id)) }]),
  { label: "Day (UTC)", value: (r) => (r.total ? (fixedDag ? "Total" : "") : text(r.day)) },
  { label: "Tasks run", num: true, value: (r) => count(r.tasks_run) },
  { label: "Delayed", num: true, value: (r) => count(r.delayed) },
  { label: "Forced by deadline", num: true, value: (r) => count(r.forced_by_deadline) },
  { label: "Served by fallback", num: true, value: (r) => count(r.served_by_fallback) },
  { label: "Energy", num: true, value: (r) => kwh(r.energy_kwh) },
  { label: "Solar", num: true, value: (r) => kwh(r.solar_kwh), title: () => "on-site solar energy the tasks used" },
  { label: "Grid", num: true, value: (r) => kwh(r.grid_kwh), title: () => "energy the tasks drew from the grid" },
  { label: "Emissions", num: true, value: (r) => grams(r.emissions_g) },
  { label: "Baseline", num: true, value: (r) => grams(r.baseline_emissions_g) },
  {
    label: "Saved",
    num: true,
    value: (r) => [el("span", { class: isNum(r.saved_g) ? (r.saved_g > 0 ? "good" : r.saved_g < 0 ? "bad" : undefined) : undefined },
      grams(r.saved_g)), splitText(r)],
    title: (r) => (hasSplit(r) ? "of the tasks that chose a region: what waiting saved and what moving saved" : ""),
  },
  { label: "% saved", num: true, value: (r) => pct(r.saved_pct) },
];

/** Days some of whose tasks chose between regions split their saving into what the time and the place saved. */
const hasSplit = (r) => isNum(r.saved_time_g) || isNum(r.saved_place_g);

function splitText(r) {
  return hasSplit(r)
    ? el("div", { class: "small muted split" }, `time ${grams(r.saved_time_g)} · place ${grams(r.saved_place_g)}`)
    : null;
}

/** A sum over the rows that have the figure; null when none has it. */
function sumKnown(rows, key) {
  const known = rows.filter((r) => isNum(r[key]));
  return known.length ? sum(known, key) : null;
}

function totals(rows) {
  const baseline = sum(rows, "baseline_emissions_g");
  const saved = sum(rows, "saved_g");
  return {
    total: true,
    tasks_run: sum(rows, "tasks_run"),
    delayed: sum(rows, "delayed"),
    forced_by_deadline: sum(rows, "forced_by_deadline"),
    served_by_fallback: sum(rows, "served_by_fallback"),
    energy_kwh: sum(rows, "energy_kwh"),
    solar_kwh: sum(rows, "solar_kwh"),
    grid_kwh: sum(rows, "grid_kwh"),
    emissions_g: sum(rows, "emissions_g"),
    baseline_emissions_g: baseline,
    saved_g: saved,
    saved_pct: baseline > 0 ? (100 * saved) / baseline : null,
    saved_time_g: sumKnown(rows, "saved_time_g"),
    saved_place_g: sumKnown(rows, "saved_place_g"),
  };
}

async function loadHistory() {
  const body = document.getElementById("history-body");
  try {
    const rows = await getJSON(api("history", filters));
    rows.sort((a, b) => String(b.day).localeCompare(String(a.day)) || String(a.dag_id).localeCompare(String(b.dag_id)));
    if (!rows.length) {
      const filtered = Object.keys(filters).some((k) => k !== "dag_id") || (filters.dag_id && !fixedDag);
      clear(body, filtered
        ? empty("No carbon-aware task ran for these filters.", "Widen the days or clear the filters.")
        : empty(fixedDag ? "No carbon-aware task of this DAG has run yet." : "No carbon-aware task has run yet.", howTo()));
    } else {
      clear(body, table(HISTORY_COLUMNS, rows, { foot: rows.length > 1 ? totals(rows) : null }));
    }
    fillOptions("dag-options", rows.map((r) => r.dag_id));
    emissionsChart(rows);
    return rows;
  } catch (error) {
    clear(body, errorBox(`Could not load the history: ${error.message}`));
    showEmpty(document.getElementById("chart-emissions"), "No history to chart.");
    return [];
  }
}

function fillOptions(id, values) {
  const list = document.getElementById(id);
  if (!list) return;
  const unique = [...new Set(values.filter((v) => v !== null && v !== undefined && v !== ""))].sort();
  clear(list, unique.map((v) => el("option", { value: v })));
}

// ---- charts ----

function emissionsChart(rows) {
  const container = document.getElementById("chart-emissions");
  const byDay = new Map();
  for (const r of rows) {
    const day = byDay.get(r.day) || { baseline: 0, actual: 0 };
    day.baseline += isNum(r.baseline_emissions_g) ? r.baseline_emissions_g : 0;
    day.actual += isNum(r.emissions_g) ? r.emissions_g : 0;
    byDay.set(r.day, day);
  }
  const days = [...byDay.keys()].filter(Boolean).sort();
  if (!days.length) {
    showEmpty(container, "No emissions recorded yet.", "Each day's bars appear once carbon-aware tasks have run.");
    return;
  }
  document.getElementById("emissions-key").hidden = false;
  dailyBars(container, {
    days,
    series: [
      { label: "baseline", values: days.map((d) => byDay.get(d).baseline), colorVar: "--chart-baseline" },
      { label: "actual", values: days.map((d) => byDay.get(d).actual), colorVar: "--chart-actual" },
    ],
    format: grams,
    unitLabel: "CO₂e",
  });
}

// ---- on-site solar ----

const BASIS = {
  measured: "measured",
  forecast: "forecast: no measurement covered it",
  "measured+forecast": "measured, forecast where no measurement covered it",
};

async function loadSolar() {
  try {
    return await getJSON(api("solar", filters));
  } catch (error) {
    clear(document.getElementById("chart-solar"), errorBox(`Could not load the on-site solar: ${error.message}`));
    return null;
  }
}

/** How a site's output was obtained over the days shown, from each day's basis. */
function outputBasis(rows) {
  const kinds = new Set(rows.map((r) => r.output_basis).filter(Boolean));
  if (kinds.size === 1) return BASIS[[...kinds][0]] || [...kinds][0];
  return "measured where a meter covered it, else forecast";
}

function drawSolar(site, rows) {
  const container = document.getElementById("chart-solar");
  const mine = rows.filter((r) => r.site === site && r.day).sort((a, b) => a.day.localeCompare(b.day));
  const days = mine.map((r) => r.day);
  const used = sum(mine, "solar_kwh");
  const others = sum(mine, "used_kwh") - used;
  const notes = [`kWh per UTC day at ${site}: its panels' output (${outputBasis(mine)}) beside the solar the task `
    + "runs the filters select used."];
  if (used <= 0) notes.push("No on-site solar covered these task runs.");
  if (others > 1e-6) notes.push(`Tasks not shown here (other DAGs, or outside the filters) used ${kwh(others)} of it.`);
  document.getElementById("solar-note").textContent = notes.join(" ");
  document.getElementById("solar-key").hidden = false;
  dailyBars(container, {
    days,
    series: [
      { label: "site output", values: mine.map((r) => r.output_kwh), colorVar: "--chart-solar-output" },
      { label: "used by these tasks", values: mine.map((r) => r.solar_kwh), colorVar: "--chart-solar" },
    ],
    details: [
      { label: "output", values: mine.map((r) => (r.output_basis || "none reported").replace("+", " + ")) },
      { label: "all tasks at the site", values: mine.map((r) => kwh(r.used_kwh)) },
      { label: "these tasks from the grid", values: mine.map((r) => kwh(r.grid_kwh)) },
    ],
    format: kwh,
    unitLabel: "kWh",
  });
}

function solarSection(rows, tasks) {
  const container = document.getElementById("chart-solar");
  const select = document.getElementById("solar-site");
  const output = new Map();
  for (const r of rows) output.set(r.site, (output.get(r.site) || 0) + (isNum(r.output_kwh) ? r.output_kwh : 0));
  const sites = [...output.entries()].filter(([, kwhs]) => kwhs > 0).sort((a, b) => b[1] - a[1]).map(([site]) => site);
  if (!sites.length) {
    if (!rows.length && Array.isArray(tasks) && !tasks.length) {
      showEmpty(container, "No carbon-aware task has run yet.", "Solar per day appears here once tasks have run.");
    } else {
      showEmpty(container, "No site reports solar output yet.",
        "Tasks given a site with a solar source share its panels; each day's output appears here, beside what they "
        + "used, once one of them has run. The Simulate page compares policies with a solar file.");
    }
    return;
  }
  if (sites.length > 1) {
    clear(select, sites.map((site, i) => el("option", { value: site, selected: i === 0 }, site)));
    select.hidden = false;
    select.addEventListener("change", () => drawSolar(select.value, rows));
  }
  drawSolar(sites[0], rows);
}

function delaysChart(tasks) {
  const container = document.getElementById("chart-delays");
  const delays = tasks.map((r) => r.delay_s).filter(isNum);
  if (!delays.length) {
    showEmpty(container, "No carbon-aware task has run yet.", "The spread of delays appears here once tasks have run.");
    return;
  }
  delayHistogram(container, delays);
}

function signalKey(r) {
  return JSON.stringify([r.region ?? "", r.source ?? ""]);
}

function signalLabel(key) {
  const [region, source] = JSON.parse(key);
  return `${region || "no region"} · ${source || "default source"}`;
}

/** Region/source pairs of the rows, the most used first. */
function signals(tasks, deferred) {
  const counts = new Map();
  for (const r of [...tasks, ...deferred]) counts.set(signalKey(r), (counts.get(signalKey(r)) || 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([key, n]) => ({ key, n }));
}

async function drawIntensity(key, tasks, deferred) {
  const container = document.getElementById("chart-intensity");
  const note = document.getElementById("intensity-note");
  const [region, source] = JSON.parse(key);
  const mine = tasks.filter((r) => signalKey(r) === key).slice(-MARKER_LIMIT);
  // with days picked, only the waiting tasks that became ready in them
  const first = filters.start ? parseTime(`${filters.start}T00:00:00Z`) : -Infinity;
  const last = filters.end ? parseTime(`${filters.end}T00:00:00Z`) + 24 * HOUR_S * 1000 : Infinity;
  const waiting = deferred.filter((r) => signalKey(r) === key && (parseTime(r.ready_at) ?? 0) >= first
    && (parseTime(r.ready_at) ?? 0) < last);
  const instants = [];
  for (const r of mine) instants.push(parseTime(r.ready_at), parseTime(r.started_at), parseTime(r.ended_at));
  for (const r of waiting) instants.push(parseTime(r.ready_at), parseTime(r.planned_start), parseTime(r.deadline));
  const known = instants.filter((t) => t !== null);
  if (!known.length) known.push(Date.now());
  // the filters are UTC days, both included
  let start = filters.start ? parseTime(`${filters.start}T00:00:00Z`) : Math.min(...known) - HOUR_S * 1000;
  let end = filters.end ? parseTime(`${filters.end}T00:00:00Z`) + 24 * HOUR_S * 1000 : Math.max(...known) + HOUR_S * 1000;
  let clipped = "";
  if (end - start > MAX_SPAN_MS) {
    start = end - MAX_SPAN_MS;
    clipped = ` The last ${MAX_SPAN_DAYS} days shown; pick days above to see others.`;
  }
  clear(container, el("div", { class: "loading" }, "Loading the grid's intensity…"));
  try {
    const series = await getJSON(api("intensity", {
      region, source, start: new Date(start).toISOString(), end: new Date(end).toISOString(),
    }));
    const points = Array.isArray(series.points) ? series.points : [];
    if (!points.length) {
      showEmpty(container, `No intensity data for ${signalLabel(key)} in this period.`,
        "The source may not keep history this far back; try more recent days.");
      return;
    }
    note.textContent = `g CO₂e/kWh in ${series.region || region || "the region"} from ${series.source || source || "its source"}, UTC; `
      + `each task is drawn from when it was ready to when it started.${clipped}${signalCaveats(series)}`;
    document.getElementById("intensity-key").hidden = false;
    const markers = [
      ...mine.map((r) => ({
        label: `${r.dag_id} · ${r.task_id}${isNum(r.map_index) && r.map_index >= 0 ? ` [${r.map_index}]` : ""}`,
        ready: r.ready_at, start: r.started_at, readyG: r.baseline_intensity_g_per_kwh, startG: r.intensity_g_per_kwh,
        detail: `${grams(r.emissions_g)} emitted, ${grams(r.saved_g)} saved`
          + (hasSplit(r) ? ` (time ${grams(r.saved_time_g)}, place ${grams(r.saved_place_g)})` : ""),
      })),
      ...waiting.map((r) => ({
        label: `${r.dag_id} · ${r.task_id} (waiting)`, ready: r.ready_at, planned: r.planned_start,
        readyG: r.current_intensity_g_per_kwh, detail: `deadline ${time(r.deadline)}`,
      })),
    ];
    const now = Date.now();
    intensityChart(container, { points, periodS: series.period_s, markers, now: now >= start && now <= end });
  } catch (error) {
    clear(container, errorBox(`Could not load the grid's intensity: ${error.message}`));
  }
}

function intensitySection(tasks, deferred) {
  const container = document.getElementById("chart-intensity");
  const select = document.getElementById("intensity-signal");
  const pairs = signals(tasks, deferred);
  if (!pairs.length) {
    showEmpty(container, "No carbon-aware task has run yet.", howTo());
    return;
  }
  if (pairs.length > 1) {
    clear(select, pairs.map((p, i) => el("option", { value: p.key, selected: i === 0 }, `${signalLabel(p.key)} (${p.n})`)));
    select.hidden = false;
    select.addEventListener("change", () => drawIntensity(select.value, tasks, deferred));
  }
  drawIntensity(pairs[0].key, tasks, deferred);
}

async function loadTasks() {
  try {
    const tasks = await getJSON(api("tasks", { ...filters, limit: TASK_LIMIT }));
    tasks.sort((a, b) => (parseTime(a.ready_at) ?? 0) - (parseTime(b.ready_at) ?? 0));
    fillOptions("task-options", tasks.map((r) => r.task_id));
    fillOptions("region-options", tasks.map((r) => r.region));
    if (tasks.length >= TASK_LIMIT) {
      document.getElementById("charts-hint").textContent = `For the latest ${TASK_LIMIT.toLocaleString("en-US")} task runs the filters select.`;
    }
    return tasks;
  } catch (error) {
    clear(document.getElementById("chart-delays"), errorBox(`Could not load the task runs: ${error.message}`));
    return null;
  }
}

async function start() {
  const [deferred, , tasks, solar] = await Promise.all([loadDeferred(), loadHistory(), loadTasks(), loadSolar()]);
  if (solar) solarSection(solar, tasks);
  if (tasks) {
    delaysChart(tasks);
    const matching = deferred.filter((r) => (!filters.task_id || r.task_id === filters.task_id)
      && (!filters.region || r.region === filters.region) && (!filters.dag_id || r.dag_id === filters.dag_id));
    intensitySection(tasks, matching);
  } else {
    clear(document.getElementById("chart-intensity"), errorBox("Could not load the task runs."));
  }
  setInterval(() => {
    if (document.visibilityState === "visible") loadDeferred();
  }, REFRESH_MS);
}

start();
