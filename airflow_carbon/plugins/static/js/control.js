// The Control page: eco-mode switches, budgets and the audit log from api/eco, api/budgets and api/audit, and the
// forms that change them. Every change carries a reason; a refused one shows the API's own words.

import {
  api, clear, count, dagUrl, el, empty, errorBox, errorMessage, getJSON, grams, isNum, pct, segment, table, text, time,
} from "./common.js";

const status = document.getElementById("control-status");
const ecoForm = document.getElementById("eco-form");
const budgetForm = document.getElementById("budget-form");
const auditForm = document.getElementById("audit-form");
const REFRESH_MS = 60_000;
const HOUR_MS = 3_600_000;
const knownDags = new Set();

/** Sends a change; resolves to the JSON answer, or throws with the API's detail. */
async function send(method, path, body, params) {
  const response = await fetch(api(path, params), {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) {
    let message = await errorMessage(response);
    if (response.status === 401) message = "You are signed out of Airflow: sign in again, then reload this page.";
    if (response.status === 403) message = `Not allowed: ${message}`;
    throw new Error(message);
  }
  return response.json();
}

function say(message, ok = true) {
  clear(status, ok ? el("div", { class: "badge good" }, message) : errorBox(message));
}

function dagLink(dagId) {
  return dagId === null || dagId === undefined ? el("strong", {}, "every DAG") : el("a", { href: dagUrl(dagId) }, dagId);
}

function rememberDags(ids) {
  const before = knownDags.size;
  for (const id of ids) if (id) knownDags.add(id);
  if (knownDags.size === before) return;
  clear(document.getElementById("dag-options"), [...knownDags].sort().map((id) => el("option", { value: id })));
}

/** A reason for a one-click action in a table row; null when the person cancels. */
function askReason(question) {
  for (;;) {
    const answer = window.prompt(`${question}\nReason (kept in the audit log):`);
    if (answer === null) return null;
    if (answer.trim()) return answer.trim();
  }
}

async function guarded(action, done) {
  try {
    await action();
    say(done);
  } catch (error) {
    say(error.message, false);
  }
  await refresh();
}

// ---- eco-mode ----

function windowsText(windows) {
  return Array.isArray(windows) && windows.length ? windows.join("; ") : "all the time";
}

function switchOn(row) {
  const scope = row.dag_id === null ? "every DAG" : `DAG ${row.dag_id}`;
  const reason = askReason(`Switch carbon-awareness on again for ${scope}?`);
  if (reason === null) return;
  guarded(() => send("POST", "eco/on", { dag_id: row.dag_id, reason }), `Carbon-awareness is on again for ${scope}.`);
}

const ECO_COLUMNS = [
  { label: "Scope", value: (r) => dagLink(r.dag_id) },
  { label: "Off now", value: (r) => (r.active ? el("span", { class: "badge warn" }, "off now") : el("span", { class: "badge" }, "not now")) },
  { label: "Until", value: (r) => (r.until ? time(r.until) : "switched on again") },
  { label: "Windows (UTC)", cls: "wrap", value: (r) => windowsText(r.windows) },
  { label: "Set by", value: (r) => text(r.set_by) },
  { label: "Set at", value: (r) => time(r.set_at) },
  { label: "Reason", cls: "wrap", value: (r) => text(r.reason) },
  { label: "", value: (r) => el("button", { type: "button", "data-action": "eco-on" }, "Switch on") },
];

function renderEco(state) {
  const switches = Array.isArray(state.switches) ? state.switches : [];
  rememberDags(switches.map((s) => s.dag_id));
  const global = switches.find((s) => s.dag_id === null);
  const activeDags = switches.filter((s) => s.dag_id !== null && s.active).map((s) => s.dag_id);
  let summary;
  if (state.off_everywhere) {
    summary = el("p", { class: "reason bad" }, "Carbon-awareness is OFF for every DAG now",
      global && global.until ? ` until ${time(global.until)} UTC` : "", ": tasks run at once.");
  } else if (activeDags.length) {
    summary = el("p", { class: "reason" }, `Carbon-awareness is off now for ${activeDags.length} DAG(s): ${activeDags.join(", ")}.`);
  } else {
    summary = el("p", { class: "reason good" }, "Carbon-awareness is on: tasks wait for a cleaner grid as planned.");
  }
  clear(document.getElementById("eco-summary"), summary);
  document.getElementById("eco-now").textContent = `Times in UTC. As of ${time(state.now)}.`;
  const body = document.getElementById("eco-body");
  if (!switches.length) {
    clear(body);
    return;
  }
  clear(body, table(ECO_COLUMNS, switches));
  body.querySelectorAll('button[data-action="eco-on"]').forEach((button, i) => {
    button.addEventListener("click", () => switchOn(switches[i]));
  });
}

/** "2026-03-01 18:00" or "2026-03-01T18:00" (UTC), or an instant with its zone: ISO 8601 with a zone. */
function untilInstant(value) {
  const iso = value.trim().replace(/^(\d{4}-\d{2}-\d{2})\s+/, "$1T");
  if (!iso) return null;
  return /(Z|[+-]\d{2}:?\d{2})$/i.test(iso) ? iso : `${iso}Z`;
}

document.getElementById("eco-ends").addEventListener("change", (event) => {
  document.getElementById("eco-until-field").hidden = event.target.value !== "at";
});

ecoForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const off = !event.submitter || event.submitter.value !== "on";
  const data = new FormData(ecoForm);
  const dagId = String(data.get("dag_id") || "").trim() || null;
  const reason = String(data.get("reason") || "").trim();
  const scope = dagId === null ? "every DAG" : `DAG ${dagId}`;
  if (!reason) {
    say("Give a reason: it is kept in the audit log.", false);
    return;
  }
  if (!off) {
    guarded(() => send("POST", "eco/on", { dag_id: dagId, reason }), `Carbon-awareness is on again for ${scope}.`);
    return;
  }
  const ends = String(data.get("ends") || "");
  let until = null;
  if (ends === "at") {
    until = untilInstant(String(data.get("until") || ""));
    if (!until) {
      say("Give the time it ends (UTC), or choose another end.", false);
      return;
    }
  } else if (ends) {
    until = new Date(Date.now() + Number(ends) * HOUR_MS).toISOString();
  }
  const windows = String(data.get("windows") || "").split(";").map((w) => w.trim()).filter(Boolean);
  guarded(() => send("POST", "eco/off", { dag_id: dagId, until, windows, reason }),
    `Carbon-awareness is off for ${scope}${until ? ` until ${time(until)} UTC` : ""}${windows.length ? ` in ${windows.join("; ")}` : ""}.`);
});

// ---- budgets ----

function clearBudget(row) {
  const reason = askReason(`Clear the carbon budget of DAG ${row.dag_id}?`);
  if (reason === null) return;
  guarded(() => send("DELETE", `budgets/${segment(row.dag_id)}`, null, { reason }), `The budget of ${row.dag_id} is cleared.`);
}

const BUDGET_COLUMNS = [
  { label: "DAG", value: (r) => dagLink(r.dag_id) },
  { label: "Budget", num: true, value: (r) => grams(r.budget_g) },
  { label: "Period", value: (r) => `${text(r.period)} from ${time(r.period_start)}`, title: (r) => `${r.period_start} to ${r.period_end}` },
  { label: "Spent", num: true, value: (r) => grams(r.spent_g) },
  { label: "Projection", num: true, value: (r) => grams(r.projected_g), title: () => "spent so far, carried at the period's pace to its end" },
  { label: "% spent", num: true, value: (r) => el("span", { class: isNum(r.spent_pct) && r.spent_pct >= 100 ? "bad" : undefined }, pct(r.spent_pct)) },
  { label: "Over?", value: (r) => (r.over ? el("span", { class: "badge bad" }, "over") : el("span", { class: "badge good" }, "within")) },
  { label: "Strict", value: (r) => (r.strict ? "plans stricter when over" : "no") },
  { label: "Source", value: (r) => text(r.source) },
  { label: "Set by", value: (r) => (r.set_by ? `${r.set_by}, ${time(r.set_at)}` : "–") },
  { label: "", value: (r) => (r.source === "api" ? el("button", { type: "button", "data-action": "budget-clear" }, "Clear") : "") },
];

function renderBudgets(rows) {
  rememberDags(rows.map((r) => r.dag_id));
  document.getElementById("budgets-count").textContent = count(rows.length);
  const body = document.getElementById("budgets-body");
  if (!rows.length) {
    clear(body, empty("No DAG has a carbon budget.", "Set one below, or with carbon_budget=... in the DAG's default_args."));
    return;
  }
  clear(body, table(BUDGET_COLUMNS, rows));
  const clearable = rows.filter((r) => r.source === "api");
  body.querySelectorAll('button[data-action="budget-clear"]').forEach((button, i) => {
    button.addEventListener("click", () => clearBudget(clearable[i]));
  });
}

budgetForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const setting = !event.submitter || event.submitter.value !== "clear";
  const data = new FormData(budgetForm);
  const dagId = String(data.get("dag_id") || "").trim();
  const reason = String(data.get("reason") || "").trim();
  if (!dagId || !reason) {
    say("Give the DAG and a reason: the reason is kept in the audit log.", false);
    return;
  }
  if (!setting) {
    guarded(() => send("DELETE", `budgets/${segment(dagId)}`, null, { reason }), `The budget of ${dagId} is cleared.`);
    return;
  }
  const gramsText = String(data.get("grams") || "").trim();
  if (!gramsText) {
    say("Give the budget in grams of CO₂e.", false);
    return;
  }
  const body = { grams: Number(gramsText), period: String(data.get("period")), strict: data.get("strict") !== null, reason };
  guarded(() => send("PUT", `budgets/${segment(dagId)}`, body),
    `${dagId} has a budget of ${grams(body.grams)} per ${body.period}.`);
});

// ---- audit ----

const ACTIONS = {
  release: "released a task",
  eco_off: "switched carbon-awareness off",
  eco_on: "switched carbon-awareness on",
  budget_set: "set a budget",
  budget_clear: "cleared a budget",
  budget_exceeded: "found the budget exceeded",
};

function instance(r) {
  if (!r.task_id) return "–";
  const parts = [r.task_id, r.run_id ? `in ${r.run_id}` : "", isNum(r.map_index) && r.map_index >= 0 ? `[${r.map_index}]` : ""];
  return parts.filter(Boolean).join(" ");
}

function detailText(detail) {
  if (!detail || typeof detail !== "object") return "";
  return Object.entries(detail).map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join("; ") : text(value)}`).join(", ");
}

const AUDIT_COLUMNS = [
  { label: "When", value: (r) => time(r.at) },
  { label: "Who", value: (r) => text(r.actor) },
  { label: "What", value: (r) => ACTIONS[r.action] || text(r.action) },
  { label: "DAG", value: (r) => dagLink(r.dag_id) },
  { label: "Task instance", cls: "wrap", value: (r) => instance(r) },
  { label: "Reason", cls: "wrap", value: (r) => text(r.reason) },
  { label: "Detail", cls: "wrap", value: (r) => detailText(r.detail) || "–" },
];

function renderAudit(rows) {
  rememberDags(rows.map((r) => r.dag_id));
  const body = document.getElementById("audit-body");
  clear(body, rows.length ? table(AUDIT_COLUMNS, rows) : empty("Nothing changed yet.", "Releases, eco-mode and budget changes appear here."));
}

auditForm.addEventListener("submit", (event) => {
  event.preventDefault();
  loadAudit();
});

// ---- loading ----

async function load(id, url, render) {
  try {
    render(await getJSON(url));
  } catch (error) {
    clear(document.getElementById(id), errorBox(`Could not load: ${error.message}`));
  }
}

function loadAudit() {
  const dagId = document.getElementById("audit-dag").value.trim();
  return load("audit-body", api("audit", { dag_id: dagId }), renderAudit);
}

async function refresh() {
  await Promise.all([
    load("eco-summary", api("eco"), renderEco),
    load("budgets-body", api("budgets"), renderBudgets),
    loadAudit(),
  ]);
}

refresh();
setInterval(refresh, REFRESH_MS);
