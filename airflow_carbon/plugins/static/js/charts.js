// The Carbon charts, drawn with the vendored uPlot (static/vendor/uPlot.iife.min.js, global `uPlot`).
// Each chart follows its container's width and is redrawn when the OS switches light/dark.

import { clear, cssVar, duration, el, empty, onThemeChange, parseTime, themeColor, time } from "./common.js";

const DAY_S = 86400;
/** Per chart container: its plot and how to draw it again; resize and theme listeners are added once. */
const mounted = new WeakMap();

function font() {
  return `11px ${cssVar("--font") || "sans-serif"}`;
}

function axis(extra) {
  const grid = themeColor("--chart-grid");
  return {
    stroke: themeColor("--chart-axis"),
    grid: { stroke: grid, width: 1 },
    ticks: { stroke: grid, width: 1, size: 4 },
    font: font(),
    labelFont: font(),
    ...extra,
  };
}

const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
const pad = (n) => String(n).padStart(2, "0");

/** 24-hour UTC ticks, the day under the first tick of each day; only days when ticks are a day apart or more. */
function timeValues(u, splits, axisIdx, space, incr) {
  return splits.map((ts, i) => {
    const d = utc(ts);
    if (incr >= DAY_S) return dayLabel(ts);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    const newDay = i === 0 || utc(splits[i - 1]).getDate() !== d.getDate();
    return newDay ? `${hm}\n${dayLabel(ts)}` : hm;
  });
}

function widthOf(container) {
  return Math.max(280, Math.floor(container.clientWidth || container.parentElement.clientWidth || 600));
}

/**
 * Draw `build()`'s options and data into `container`, and keep it drawn: resized with its container,
 * rebuilt with the theme. Drawing into the same container again (another site or signal picked) replaces
 * the chart, listeners included. Returns the uPlot instance.
 */
function mount(container, height, build) {
  let state = mounted.get(container);
  if (!state) {
    state = { plot: null, draw: null, height };
    mounted.set(container, state);
    if (window.ResizeObserver) {
      let last = widthOf(container);
      new ResizeObserver(() => {
        const width = widthOf(container);
        if (state.plot && Math.abs(width - last) > 2) {
          last = width;
          state.plot.setSize({ width, height: state.height });
        }
      }).observe(container);
    }
    onThemeChange(() => state.draw && state.draw());
  }
  forget(container);
  state.height = height;
  state.draw = () => {
    if (state.plot) state.plot.destroy();
    const [options, data] = build();
    clear(container);
    state.plot = new uPlot({ width: widthOf(container), height, ...options }, data, container);
    return state.plot;
  };
  return state.draw();
}

/** The container's chart is gone (an empty state or an error took its place): not redrawn with the theme. */
function forget(container) {
  const state = mounted.get(container);
  if (!state) return;
  if (state.plot) state.plot.destroy();
  state.plot = null;
  state.draw = null;
  container.removeAttribute("role");
  container.removeAttribute("aria-label");
}

export function showEmpty(container, what, todo) {
  forget(container);
  clear(container, empty(what, todo));
}

// ---- grid intensity with the tasks' ready and start times ----

/** The value of a stepped series at `t` (seconds), or null outside it. */
function valueAt(xs, ys, periodS, t) {
  if (!xs.length || t < xs[0] || t >= xs[xs.length - 1] + periodS) return null;
  let lo = 0;
  let hi = xs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (xs[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return ys[lo];
}

/**
 * points: [[iso, g_per_kwh], ...]; markers: [{label, ready, start, planned, readyG, startG}] with ISO times;
 * deadlines: ISO times drawn as dashed verticals; now: draw a "now" line.
 */
export function intensityChart(container, { points, periodS, markers = [], deadlines = [], height = 300, now = true }) {
  const xs = [];
  const ys = [];
  for (const [iso, g] of points) {
    const t = parseTime(iso);
    if (t !== null && typeof g === "number") {
      xs.push(t / 1000);
      ys.push(g);
    }
  }
  if (!xs.length) return null;
  const period = periodS || (xs.length > 1 ? xs[1] - xs[0] : 1800);
  // the step lasts a whole period: repeat the last value at its end so the line reaches it
  const dataX = [...xs, xs[xs.length - 1] + period];
  const dataY = [...ys, ys[ys.length - 1]];

  const secs = (iso) => (parseTime(iso) ?? NaN) / 1000;
  const marks = markers.map((m) => {
    const ready = secs(m.ready);
    const start = secs(m.start);
    const planned = secs(m.planned);
    const at = (t, fallback) => {
      const v = Number.isFinite(t) ? valueAt(xs, ys, period, t) : null;
      return v ?? (typeof fallback === "number" ? fallback : null);
    };
    return {
      ...m,
      readyS: ready,
      startS: start,
      plannedS: planned,
      readyY: at(ready, m.readyG),
      startY: at(start, m.startG),
      plannedY: at(planned, m.readyG),
    };
  });
  const deadlineS = deadlines.map(secs).filter(Number.isFinite);
  const times = [dataX[0], dataX[dataX.length - 1]];
  for (const m of marks) for (const t of [m.readyS, m.startS, m.plannedS]) if (Number.isFinite(t)) times.push(t);
  for (const t of deadlineS) times.push(t);
  const xMin = Math.min(...times);
  const xMax = Math.max(...times);
  const pad = Math.max((xMax - xMin) * 0.01, period / 2);

  let tip = null;
  const build = () => {
    const line = themeColor("--chart-line");
    const colors = {
      ready: themeColor("--chart-ready"),
      start: themeColor("--chart-start"),
      planned: themeColor("--chart-planned"),
      axis: themeColor("--chart-axis"),
      bg: themeColor("--bg"),
    };
    const options = {
      tzDate: utc,
      legend: { show: false },
      cursor: { y: false, points: { show: false }, drag: { x: true, y: false } },
      scales: { x: { time: true, range: () => [xMin - pad, xMax + pad] }, y: { range: (u, lo, hi) => [0, Math.max(hi * 1.1, 1)] } },
      axes: [axis({ values: timeValues, space: 56 }), axis({ label: "g CO₂e/kWh", size: 56, values: (u, vals) => vals.map((v) => `${v}`) })],
      series: [
        {},
        {
          label: "grid intensity",
          stroke: line,
          width: 1.5,
          fill: themeColor("--chart-fill"),
          paths: uPlot.paths.stepped({ align: 1 }),
          points: { show: false },
        },
      ],
      hooks: {
        draw: [(u) => drawMarks(u, marks, deadlineS, now, colors)],
        setCursor: [(u) => (tip = hover(u, marks, tip))],
      },
    };
    tip = null;
    return [options, [dataX, dataY]];
  };
  return mount(container, height, build);
}

function drawMarks(u, marks, deadlineS, now, colors) {
  const { ctx } = u;
  const dpr = uPlot.pxRatio;
  const { left, top, width, height } = u.bbox;
  const x = (t) => u.valToPos(t, "x", true);
  const y = (v) => u.valToPos(v, "y", true);
  const inside = (px) => px >= left - 1 && px <= left + width + 1;
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, width, height);
  ctx.clip();

  const vline = (t, color, dash, label, atBottom = false) => {
    const px = x(t);
    if (!inside(px)) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = dpr;
    ctx.setLineDash(dash.map((d) => d * dpr));
    ctx.beginPath();
    ctx.moveTo(px, top);
    ctx.lineTo(px, top + height);
    ctx.stroke();
    ctx.setLineDash([]);
    if (label) {
      ctx.fillStyle = color;
      ctx.font = `${11 * dpr}px ${getComputedStyle(document.body).fontFamily}`;
      ctx.fillText(label, px + 4 * dpr, atBottom ? top + height - 5 * dpr : top + 12 * dpr);
    }
  };
  for (const t of deadlineS) vline(t, colors.planned, [4, 3], "deadline");
  if (now) vline(Date.now() / 1000, colors.axis, [2, 3], "now", true);

  const r = 4 * dpr;
  const dot = (t, v, color, filled) => {
    if (!Number.isFinite(t) || v === null) return;
    const px = x(t);
    if (!inside(px)) return;
    ctx.beginPath();
    ctx.arc(px, y(v), r, 0, 2 * Math.PI);
    if (filled) {
      ctx.fillStyle = color;
      ctx.fill();
      ctx.strokeStyle = colors.bg;
      ctx.lineWidth = dpr;
      ctx.stroke();
    } else {
      ctx.fillStyle = colors.bg;
      ctx.fill();
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5 * dpr;
      ctx.stroke();
    }
  };
  const link = (t0, v0, t1, v1, color) => {
    if (![t0, t1].every(Number.isFinite) || v0 === null || v1 === null || t1 <= t0) return;
    ctx.strokeStyle = color;
    ctx.globalAlpha = 0.55;
    ctx.lineWidth = dpr;
    ctx.beginPath();
    ctx.moveTo(x(t0), y(v0));
    ctx.lineTo(x(t1), y(v1));
    ctx.stroke();
    ctx.globalAlpha = 1;
  };
  for (const m of marks) {
    if (Number.isFinite(m.startS)) link(m.readyS, m.readyY, m.startS, m.startY, colors.start);
    else link(m.readyS, m.readyY, m.plannedS, m.plannedY, colors.planned);
  }
  // ready rings, then planned starts, then actual starts on top
  for (const m of marks) dot(m.readyS, m.readyY, colors.ready, false);
  for (const m of marks) if (!Number.isFinite(m.startS)) dot(m.plannedS, m.plannedY, colors.planned, true);
  for (const m of marks) if (Number.isFinite(m.startS)) dot(m.startS, m.startY, colors.start, true);
  ctx.restore();
}

/** A tooltip naming the marker nearest the cursor, within 10 px. */
function hover(u, marks, tip) {
  const { left, top } = u.cursor;
  let node = tip;
  if (!node) {
    node = el("div", { class: "chart-tip", hidden: true });
    u.over.append(node);
  }
  if (left === undefined || left < 0 || !marks.length) {
    node.hidden = true;
    return node;
  }
  let best = null;
  let bestD = 100;
  for (const m of marks) {
    for (const [t, v] of [[m.readyS, m.readyY], [m.startS, m.startY], [m.plannedS, m.plannedY]]) {
      if (!Number.isFinite(t) || v === null) continue;
      const dx = u.valToPos(t, "x") - left;
      const dy = u.valToPos(v, "y") - top;
      const d = dx * dx + dy * dy;
      if (d < bestD) {
        bestD = d;
        best = m;
      }
    }
  }
  if (!best) {
    node.hidden = true;
    return node;
  }
  const lines = [
    el("strong", {}, best.label),
    el("div", {}, `ready ${time(best.ready)}`),
    Number.isFinite(best.startS)
      ? el("div", {}, `started ${time(best.start)}`, ` · waited ${duration(best.startS - best.readyS)}`)
      : el("div", {}, `planned ${time(best.planned)}`),
  ];
  if (best.detail) lines.push(el("div", { class: "muted" }, best.detail));
  clear(node, lines);
  node.hidden = false;
  const w = u.over.clientWidth;
  node.style.left = `${Math.min(left + 12, Math.max(0, w - 260))}px`;
  node.style.top = `${Math.max(0, top - 10)}px`;
  return node;
}

// ---- bars per UTC day ----

/**
 * days: ["2025-03-01", ...]; series: [{label, values, colorVar}]; format: value -> text;
 * details: [{label, values}] of text per day, shown in the tooltip only.
 */
export function dailyBars(container, { days, series, format, unitLabel, details = [], height = 240 }) {
  const xs = days.map((d) => Date.parse(`${d}T12:00:00Z`) / 1000);
  if (!xs.length) return null;
  const n = series.length;
  const alignFor = (i) => (n === 1 ? 0 : i === 0 ? -1 : 1);
  const build = () => {
    const options = {
      tzDate: utc,
      legend: { show: false },
      cursor: { y: false, points: { show: false }, drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: () => [Math.min(...xs) - DAY_S * 0.7, Math.max(...xs) + DAY_S * 0.7] },
        y: { range: (u, lo, hi) => [0, Math.max(hi * 1.1, 1e-9)] },
      },
      axes: [
        axis({ space: 60, values: (u, vals) => vals.map((v) => dayLabel(v)) , splits: (u) => daySplits(u, xs) }),
        axis({ label: unitLabel, size: 64, values: (u, vals) => vals.map((v) => format(v)) }),
      ],
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.label,
          fill: themeColor(s.colorVar),
          stroke: themeColor(s.colorVar),
          width: 0,
          paths: uPlot.paths.bars({ size: [n === 1 ? 0.6 : 0.38, n === 1 ? 48 : 28], align: alignFor(i) }),
          points: { show: false },
        })),
      ],
      hooks: { setCursor: [(u) => (tipNode = barTip(u, days, series, format, details, tipNode))] },
    };
    tipNode = null;
    return [options, [xs, ...series.map((s) => s.values)]];
  };
  let tipNode = null;
  const plot = mount(container, height, build);
  container.setAttribute("role", "img");
  container.setAttribute("aria-label", `${series.map((s) => s.label).join(" and ")} per UTC day, ${days.length} `
    + `day${days.length === 1 ? "" : "s"} from ${days[0]} to ${days[days.length - 1]}`);
  return plot;
}

function dayLabel(ts) {
  const d = utc(ts);
  return `${d.toLocaleString("en-US", { month: "short" })} ${d.getDate()}`;
}

/** Ticks on the days themselves, thinned to fit. */
function daySplits(u, xs) {
  const [min, max] = [u.scales.x.min, u.scales.x.max];
  const visible = xs.filter((x) => x >= min && x <= max);
  const room = Math.max(1, Math.floor(u.bbox.width / uPlot.pxRatio / 64));
  const step = Math.max(1, Math.ceil(visible.length / room));
  return visible.filter((_, i) => i % step === 0);
}

/** The chart's tooltip node (made on first use) and the bar under the cursor; ``i`` is null, and the tip hidden, off the bars. */
function cursorTip(u, node) {
  let tip = node;
  if (!tip) {
    tip = el("div", { class: "chart-tip", hidden: true });
    u.over.append(tip);
  }
  const i = u.cursor.idx;
  if (i === null || i === undefined || u.cursor.left < 0) {
    tip.hidden = true;
    return { tip, i: null };
  }
  return { tip, i };
}

function barTip(u, days, series, format, details, node) {
  const { tip, i } = cursorTip(u, node);
  if (i === null) return tip;
  clear(
    tip,
    el("strong", {}, days[i]),
    series.map((s) => el("div", {}, `${s.label}: ${format(s.values[i])}`)),
    details.map((d) => el("div", { class: "muted" }, `${d.label}: ${d.values[i]}`)),
  );
  tip.hidden = false;
  const w = u.over.clientWidth;
  tip.style.left = `${Math.min(u.cursor.left + 12, Math.max(0, w - 220))}px`;
  tip.style.top = "8px";
  return tip;
}

// ---- histogram of delays ----

const BIN_WIDTHS_S = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

export function delayHistogram(container, delaysS, { height = 240 } = {}) {
  const values = delaysS.filter((v) => typeof v === "number" && Number.isFinite(v)).map((v) => Math.max(0, v));
  if (!values.length) return null;
  const max = Math.max(...values);
  const width = BIN_WIDTHS_S.find((w) => max / w <= 24) || Math.ceil(max / 24 / 86400) * 86400;
  const bins = Math.max(1, Math.floor(max / width) + 1);
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor(v / width))] += 1;
  const centres = counts.map((_, i) => (i + 0.5) * width);
  const build = () => {
    const options = {
      legend: { show: false },
      cursor: { y: false, points: { show: false }, drag: { x: false, y: false } },
      scales: {
        x: { time: false, range: () => [0, bins * width] },
        y: { range: (u, lo, hi) => [0, Math.max(Math.ceil(hi * 1.15), 1)] },
      },
      axes: [
        axis({ values: (u, vals) => vals.map((v) => duration(v)), space: 70, incrs: BIN_WIDTHS_S }),
        axis({ label: "task runs", size: 48, values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? `${v}` : "")) }),
      ],
      series: [
        {},
        {
          label: "task runs",
          fill: themeColor("--chart-line"),
          stroke: themeColor("--chart-line"),
          width: 0,
          paths: uPlot.paths.bars({ size: [0.92, 200], align: 0 }),
          points: { show: false },
        },
      ],
      hooks: {
        setCursor: [
          (u) => {
            tipNode = histTip(u, counts, width, tipNode);
          },
        ],
      },
    };
    tipNode = null;
    return [options, [centres, counts]];
  };
  let tipNode = null;
  return mount(container, height, build);
}

function histTip(u, counts, width, node) {
  const { tip, i } = cursorTip(u, node);
  if (i === null) return tip;
  const n = counts[i];
  clear(tip, el("strong", {}, `${duration(i * width)} – ${duration((i + 1) * width)}`),
    el("div", {}, `${n} task run${n === 1 ? "" : "s"}`));
  tip.hidden = false;
  tip.style.left = `${Math.min(u.cursor.left + 12, Math.max(0, u.over.clientWidth - 200))}px`;
  tip.style.top = "8px";
  return tip;
}

