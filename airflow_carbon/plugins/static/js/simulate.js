// The simulation page: post the CSVs to api/simulate and show the side-by-side table and the figures.

import { api, clear, count, el, errorBox, errorMessage, isNum, kwh, pct, table } from "./common.js";

const form = document.getElementById("simulate-form");
const result = document.getElementById("simulate-result");
const submit = document.getElementById("simulate-submit");
const FIGURE = /^data:image\/(png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/=\s]*$/;

const kg = (value) => (isNum(value) ? `${value.toFixed(3)} kg` : "–");
const hours = (value) => (isNum(value) ? `${value.toFixed(2)} h` : "–");

function columns(withSolar, best) {
  const cols = [
    { label: "Policy", value: (r) => (r.policy === best ? [r.policy, " ", el("span", { class: "badge good" }, "lowest")] : r.policy) },
    { label: "Jobs", num: true, value: (r) => count(r.jobs) },
    { label: "Delayed", num: true, value: (r) => count(r.delayed) },
    { label: "Max delay", num: true, value: (r) => hours(r.max_delay_h) },
    { label: "Mean delay", num: true, value: (r) => hours(r.mean_delay_h) },
    { label: "Baseline", num: true, value: (r) => kg(r.baseline_kg) },
    { label: "Scheduled", num: true, value: (r) => kg(r.scheduled_kg) },
    {
      label: "Saving",
      num: true,
      value: (r) => el("span", { class: isNum(r.saving_pct) && r.saving_pct > 0 ? "good" : isNum(r.saving_pct) && r.saving_pct < 0 ? "bad" : undefined },
        pct(r.saving_pct)),
    },
    { label: "Deadline misses", num: true, value: (r) => el("span", { class: r.deadline_misses > 0 ? "bad" : undefined }, count(r.deadline_misses)) },
  ];
  if (withSolar) {
    cols.push(
      { label: "Solar used", num: true, value: (r) => kwh(r.solar_kwh) },
      { label: "Net", num: true, value: (r) => kg(r.net_kg), title: () => "grid emissions after on-site solar" },
      { label: "Net saving", num: true, value: (r) => pct(r.net_saving_pct) },
    );
  }
  return cols;
}

function figureTitle(name) {
  const words = name.replace(/[_-]+/g, " ").replace(/\.png$/i, "").replace(/\bco2\b/gi, "CO₂");
  return words.replace(/^\w/, (c) => c.toUpperCase());
}

function show(body, withSolarFile) {
  const rows = Array.isArray(body.policies) ? body.policies : [];
  const withSolar = withSolarFile || rows.some((r) => isNum(r.solar_kwh) && r.solar_kwh > 0);
  const key = withSolar ? "net_kg" : "scheduled_kg";
  const ranked = rows.filter((r) => isNum(r[key])).sort((a, b) => a[key] - b[key]);
  const best = rows.length > 1 && ranked.length ? ranked[0].policy : null;
  const figures = Object.entries(body.figures || {}).filter(([, src]) => typeof src === "string" && FIGURE.test(src));
  clear(result,
    el("section", { class: "panel" },
      el("div", { class: "panel-head" }, el("h2", {}, "Policies side by side"),
        el("span", { class: "hint" }, "Baseline: every job run as soon as it arrives. kg CO₂e of grid energy.")),
      body.headline ? el("p", { class: "panel-body small muted headline" }, body.headline) : null,
      el("div", { class: "panel-body flush" }, rows.length ? table(columns(withSolar, best), rows) : el("div", { class: "empty" }, "No policy was simulated.")),
      body.table ? el("details", {}, el("summary", {}, "As text"), el("pre", { class: "table-text" }, body.table)) : null),
    figures.length
      ? el("section", { class: "panel" },
        el("div", { class: "panel-head" }, el("h2", {}, "Figures")),
        el("div", { class: "panel-body" }, el("div", { class: "figures" }, figures.map(([name, src]) => el("figure", {},
          el("img", { src, alt: figureTitle(name), loading: "lazy" }), el("figcaption", {}, figureTitle(name)))))))
      : null);
}

function optional(data, name) {
  const value = form.elements[name].value.trim();
  if (value) data.append(name, value);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const policies = [...form.querySelectorAll('input[name="policies"]:checked')].map((box) => box.value);
  if (!policies.length) {
    clear(result, el("section", { class: "panel" }, errorBox("Pick at least one policy.")));
    return;
  }
  const data = new FormData();
  const files = {};
  for (const name of ["jobs", "carbon", "solar"]) {
    const file = form.elements[name].files[0];
    if (file) {
      data.append(name, file, file.name);
      files[name] = file;
    }
  }
  if (!files.jobs || !files.carbon) {
    clear(result, el("section", { class: "panel" }, errorBox("Choose a jobs CSV and a carbon-intensity CSV.")));
    return;
  }
  data.append("policies", policies.join(","));
  data.append("max_delay", form.elements.max_delay.value);
  for (const name of ["threshold", "solar_threshold_kw", "min_saving_pct", "forecast_error", "region"]) optional(data, name);

  submit.disabled = true;
  clear(result, el("section", { class: "panel" }, el("div", { class: "loading" }, "Simulating…")));
  try {
    const response = await fetch(api("simulate"), { method: "POST", body: data, credentials: "same-origin",
      headers: { Accept: "application/json" } });
    if (!response.ok) {
      // the server names the file, line and column: show its words as they are
      const message = await errorMessage(response);
      const prefix = response.status === 400 || response.status === 413 ? "" : `${response.status}: `;
      clear(result, el("section", { class: "panel" }, errorBox(`${prefix}${message}`)));
      return;
    }
    show(await response.json(), Boolean(files.solar));
  } catch (error) {
    clear(result, el("section", { class: "panel" }, errorBox(`The simulation did not answer: ${error.message}`)));
  } finally {
    submit.disabled = false;
  }
});
