// Shared by the Carbon pages: relative URLs, fetching, safe DOM building and formatting.
// Every value from the API goes into the page as text (textContent), never as HTML.

const html = document.documentElement;

/** The way back from this page to the plugin's root ("./", "../", ...), written by the server. */
export const base = html.dataset.base || "./";

/** "light" or "dark" when the page was opened with ?theme=..., kept on every link. */
export const theme = html.dataset.theme || "";

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** A relative URL of the JSON API: api("deferred") or api("history", {dag_id: "x"}). */
export function api(path, params) {
  return `${base}api/${path}${query(params)}`;
}

/** A relative URL of another Carbon page, keeping the theme. */
export function pageUrl(path, params) {
  return `${base}${path}${query({ ...(params || {}), theme })}`;
}

export function segment(value) {
  return encodeURIComponent(String(value));
}

/** The decision page of one task instance. */
export function taskUrl(row) {
  const path = `task/${segment(row.dag_id)}/${segment(row.run_id)}/${segment(row.task_id)}`;
  const mapIndex = row.map_index ?? -1;
  return pageUrl(path, mapIndex >= 0 ? { map_index: mapIndex } : {});
}

export function dagUrl(dagId) {
  return pageUrl(`dag/${segment(dagId)}`);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The server's own words for a failed request: FastAPI's {"detail": ...} as it is, else the status. */
export async function errorMessage(response) {
  let text = "";
  try {
    text = await response.text();
    const body = JSON.parse(text);
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) {
      return body.detail.map((item) => [item.loc && item.loc.join("."), item.msg].filter(Boolean).join(": ")).join("\n");
    }
    if (body.detail !== undefined) return JSON.stringify(body.detail);
  } catch {
    // not JSON: fall through to the text or the status
  }
  return text.trim() || `${response.status} ${response.statusText}`;
}

async function answer(response) {
  if (!response.ok) {
    let message = await errorMessage(response);
    if (response.status === 401) message = "You are signed out of Airflow: sign in again, then reload this page.";
    if (response.status === 403) message = `Not allowed: ${message}`;
    throw new ApiError(response.status, message);
  }
  return response.json();
}

export async function getJSON(url) {
  return answer(await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }));
}

/** POST a JSON body with the UI's session, as getJSON reads: the answer's JSON, or an ApiError with its detail. */
export async function postJSON(url, body) {
  return answer(await fetch(url, {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body ?? {}),
  }));
}

/**
 * el("td", {class: "num", "data-label": "Saved"}, "12 g", otherNode): an element whose children are text or nodes.
 * Strings become text nodes; attributes go through setAttribute; href must be relative or a fragment.
 */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "href" && /^\s*[a-z][a-z0-9+.-]*:/i.test(String(value))) continue; // never javascript:, never off-site
    if (key === "hidden" || key === "disabled" || key === "checked" || key === "selected") {
      node[key] = Boolean(value);
    } else if (key === "text") {
      node.textContent = String(value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** An empty state that says what to do; `what` and `todo` are text or nodes. */
export function empty(what, todo) {
  return el("div", { class: "empty" }, el("strong", {}, what), todo ? el("div", {}, todo) : null);
}

export function errorBox(message) {
  return el("div", { class: "error-box", role: "alert" }, message);
}

// ---- formatting ----

const NA = "–";

export function isNum(value) {
  return typeof value === "number" && Number.isFinite(value);
}

/** "45 s", "12 min", "3 h 20 min", "2 d 4 h". */
export function duration(seconds) {
  if (!isNum(seconds)) return NA;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) {
    const rest = minutes % 60;
    return rest ? `${hours} h ${rest} min` : `${hours} h`;
  }
  const days = Math.floor(hours / 24);
  const restH = hours % 24;
  return restH ? `${days} d ${restH} h` : `${days} d`;
}

/** Milliseconds since the epoch; an instant without a zone is UTC (never the browser's zone). */
export function parseTime(iso) {
  if (!iso) return null;
  const value = String(iso);
  const zoned = /(Z|[+-]\d{2}:?\d{2})$/i.test(value) || !value.includes("T");
  const t = Date.parse(zoned ? value : `${value}Z`);
  return Number.isNaN(t) ? null : t;
}

const pad = (n) => String(n).padStart(2, "0");

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * "Mar 1, 13:30" in UTC (Airflow's default time zone; the history is per UTC day), with the year when not this one;
 * `short`: only "13:30" for today.
 */
export function time(iso, { short = false } = {}) {
  const t = parseTime(iso);
  if (t === null) return NA;
  const d = new Date(t);
  if (short && d.toISOString().slice(0, 10) === new Date().toISOString().slice(0, 10)) {
    return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  }
  const year = d.getUTCFullYear() === new Date().getUTCFullYear() ? "" : ` ${d.getUTCFullYear()}`;
  return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}${year}, ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

function fixed(value, digits) {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Three significant figures at most, without trailing zeros: "163", "37.2", "2.7", "0.05". */
function sig(value) {
  const a = Math.abs(value);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
  return value.toLocaleString("en-US", { maximumFractionDigits: digits });
}

/** Grams of CO2e: "850 g", "12.4 kg", "1.2 t". */
export function grams(g) {
  if (!isNum(g)) return NA;
  const a = Math.abs(g);
  if (a >= 1e6) return `${sig(g / 1e6)} t`;
  if (a >= 1000) return `${sig(g / 1000)} kg`;
  return `${sig(g)} g`;
}

/** Energy: "1.2 kWh", "540 Wh", "0.5 Wh", and "7.85 mWh" for a task that runs for seconds. */
export function kwh(value) {
  if (!isNum(value)) return NA;
  if (value !== 0 && Math.abs(value) < 1e-4) return `${sig(value * 1e6)} mWh`;
  if (Math.abs(value) < 1 && value !== 0) return `${fixed(value * 1000, Math.abs(value) < 0.01 ? 1 : 0)} Wh`;
  return `${sig(value)} kWh`;
}

export function intensity(value) {
  return isNum(value) ? `${fixed(value, 0)} g/kWh` : NA;
}

export function pct(value) {
  return isNum(value) ? `${fixed(value, 1)} %` : NA;
}

export function count(value) {
  return isNum(value) ? fixed(value, 0) : NA;
}

export function text(value) {
  return value === undefined || value === null || value === "" ? NA : String(value);
}

/** The planner's reason in words, for the state the row is in. */
export function reasonText(reason, state, failedSources) {
  const failed = Array.isArray(failedSources) && failedSources.length ? failedSources.join("; ") : "";
  const waiting = state === "deferred";
  switch (reason) {
    case "green_window":
      return waiting ? "waiting for a cleaner window" : "ran in a cleaner window";
    case "solar":
      return waiting ? "waiting for on-site solar" : "ran on on-site solar";
    case "deadline":
      return waiting ? "waiting until its deadline" : "ran at its deadline";
    case "immediate":
      return waiting ? "about to run (immediate policy)" : "ran at once (immediate policy)";
    case "no_green_window":
      return "ran at once: no cleaner window before the deadline";
    case "below_min_saving":
      return "ran at once: waiting would have saved too little";
    case "signal_unavailable":
      return `signal unavailable: ${failed || "no source answered"}${waiting ? " (waiting for the deadline)" : ""}`;
    case undefined:
    case null:
    case "":
      return waiting ? "waiting" : NA;
    default:
      return String(reason);
  }
}

// ---- waiting, as Airflow sees it, and "Run now" ----

/**
 * A try waits while the store has it deferred and Airflow has its task instance deferred at that same try
 * (the API's airflow_state.waiting): not once it was marked, cleared, queued or deleted in Airflow.
 */
export function isWaiting(row) {
  return row.state === "deferred" && row.airflow_state === "deferred" && row.airflow_try_number === row.try_number;
}

/** What Airflow says of the task instance: "deferred", "success (at try 2)", "not in Airflow's database". */
export function airflowStateText(row) {
  if (row.airflow_state === undefined) return NA;
  if (row.airflow_state === null && row.airflow_try_number === null) return "not in Airflow's database";
  const state = row.airflow_state || "no state";
  return row.airflow_try_number === row.try_number ? state : `${state} (at try ${text(row.airflow_try_number)})`;
}

/** Releases this page made, by try, so that a refreshed table still shows them until the row leaves. */
const releases = new Map();

function tryKey(row) {
  return JSON.stringify([row.dag_id, row.run_id, row.task_id, row.map_index ?? -1, row.try_number]);
}

/** Forget the releases of tries no longer listed. */
export function keepReleases(rows) {
  const listed = new Set(rows.map(tryKey));
  for (const key of releases.keys()) if (!listed.has(key)) releases.delete(key);
}

/** True while someone is typing a reason: a refresh must not wipe the form. */
export function releaseFormOpen() {
  return Boolean(document.querySelector("form.release-form"));
}

function releasedNote(release) {
  const who = release.released_by || "you";
  return el("div", { class: "release-done", role: "status" },
    el("span", { class: "badge good" }, "released, starting"),
    el("div", { class: "small muted", title: release.reason ? `reason: ${release.reason}` : undefined },
      `Released by ${who} at ${time(release.released_at)} UTC; it starts at the next poll, within ~15 s.`));
}

/**
 * A "Run now" button for a waiting try: it asks for a reason in a small form (no prompt(): the Airflow UI's
 * iframe allows no dialogs), POSTs the release and shows who released it and when, or the API's refusal.
 */
export function releaseControl(row, { onReleased } = {}) {
  const holder = el("div", { class: "release" });
  const known = releases.get(tryKey(row));
  if (known) return clear(holder, releasedNote(known));
  const open = el("button", { type: "button", class: "release-open",
    title: "Start this task instance now instead of at its planned start; you are asked why." }, "Run now");
  open.addEventListener("click", () => {
    const reason = el("input", { type: "text", name: "reason", required: true, maxlength: "500",
      placeholder: "Why now? Kept with your name", "aria-label": "Reason to run it now" });
    const send = el("button", { type: "submit", class: "primary" }, "Run now");
    const cancel = el("button", { type: "button" }, "Cancel");
    const outcome = el("div", { class: "release-outcome small", role: "alert" });
    const form = el("form", { class: "release-form" }, reason, el("div", { class: "release-buttons" }, send, cancel),
      outcome);
    cancel.addEventListener("click", () => clear(holder, open));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const why = reason.value.trim();
      if (!why) {
        outcome.classList.add("bad");
        outcome.textContent = "Give a reason: it is kept with your name.";
        return;
      }
      send.disabled = true;
      outcome.classList.remove("bad");
      outcome.textContent = "Releasing…";
      const path = `release/${segment(row.dag_id)}/${segment(row.run_id)}/${segment(row.task_id)}`;
      try {
        const release = await postJSON(api(path, { map_index: row.map_index ?? -1 }), { reason: why });
        releases.set(tryKey(row), release);
        clear(holder, releasedNote(release));
        if (onReleased) onReleased(release);
      } catch (error) {
        send.disabled = false;
        outcome.classList.add("bad");
        outcome.textContent = error.status === 404 ? `Not waiting any more: ${error.message}` : error.message;
      }
    });
    clear(holder, form);
    reason.focus();
  });
  return clear(holder, open);
}

/** How a record's ``signal`` names a series replayed onto today (signals/replay.py writes it). */
const REPLAY_PREFIX = "replay of ";

/** A "replayed data" badge for a record whose plan used recorded past data shifted onto today; null otherwise. */
export function replayedBadge(signal) {
  if (typeof signal !== "string" || !signal.startsWith(REPLAY_PREFIX)) return null;
  const origin = signal.slice(REPLAY_PREFIX.length);
  return el("span", {
    class: "badge warn replayed",
    title: `The plan used recorded past data (${origin}) shifted onto today, not a forecast of today's grid: `
      + "its emissions and savings are illustrations, not measurements.",
  }, "replayed data");
}

/** What the series' own flags say about it, for the chart's note. */
export function signalCaveats(series) {
  const notes = [];
  if (series.replayed) notes.push("replayed from recorded data");
  if (series.estimated) notes.push("some values estimated");
  if (Array.isArray(series.failed_sources) && series.failed_sources.length) {
    notes.push(`failed on the way: ${series.failed_sources.join("; ")}`);
  }
  return notes.length ? ` Signal ${notes.join(", ")}.` : "";
}

// ---- theme ----

/** A CSS custom property as written, for the charts' font. */
export function cssVar(name) {
  return getComputedStyle(html).getPropertyValue(name).trim();
}

/** A colour of the palette as the theme in force resolves it: the palette is written light-dark(light, dark). */
export function themeColor(name) {
  const probe = document.createElement("span");
  probe.hidden = true;
  probe.style.color = `var(${name})`;
  document.body.append(probe);
  const color = getComputedStyle(probe).color;
  probe.remove();
  return color;
}

/** Calls back when the OS switches between light and dark (unless ?theme pins one). */
export function onThemeChange(callback) {
  if (theme || !window.matchMedia) return;
  const media = window.matchMedia("(prefers-color-scheme: dark)");
  if (media.addEventListener) media.addEventListener("change", callback);
}

/** Rows of a table with a label on each cell, so that narrow screens can stack them. */
export function table(columns, rows, { foot, caption, stack = true } = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : undefined }, c.label)));
  const body = rows.map((row) => el("tr", {}, columns.map((c) => cell(c, row))));
  const tableNode = el(
    "table",
    { class: stack ? "data stack" : "data" },
    caption ? el("caption", { class: "small muted" }, caption) : null,
    el("thead", {}, head),
    el("tbody", {}, body),
    foot ? el("tfoot", {}, el("tr", {}, columns.map((c) => cell(c, foot)))) : null,
  );
  return el("div", { class: "table-wrap" }, tableNode);
}

function cell(column, row) {
  const value = column.value(row);
  const attrs = { "data-label": column.label, class: [column.num ? "num" : "", column.cls || ""].join(" ").trim() || undefined };
  if (column.title) attrs.title = column.title(row) || undefined;
  return el("td", attrs, el("span", { class: "v" }, value));
}
