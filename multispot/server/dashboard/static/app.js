// The multispot dashboard: plain JavaScript over /api/v1, no build step, no external resources.
// Every piece of data reaches the page through textContent or an SVG attribute, never parsed as HTML.
"use strict";

const API = "api/v1";
const TOKEN_KEY = "multispot.token";
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"]);
const REFRESH_MS = 4000;
const SVG_NS = "http://www.w3.org/2000/svg";

// ------------------------------------------------------------------ small helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
}

function money(value) {
  if (value === null || value === undefined) return "n/a";
  const abs = Math.abs(value);
  return (value < 0 ? "-$" : "$") + abs.toFixed(abs !== 0 && abs < 1 ? 4 : 2);
}

function percent(part, whole) {
  if (part === null || part === undefined || !whole) return "";
  return `${((100 * part) / whole).toFixed(1)}%`;
}

function when(iso) {
  if (!iso) return "-";
  const date = new Date(iso);
  return date.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${seconds % 60 ? (seconds % 60) + "s" : ""}`;
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  return `${hours}h${minutes ? minutes + "m" : ""}`;
}

function stateBadge(state) {
  return el("span", { class: `state state-${state}`, "data-state": state, text: state });
}

function jobLink(id) {
  return el("a", { href: `#/job/${encodeURIComponent(id)}`, "data-job": id, text: id });
}

function table(headers, rows, numeric) {
  const numbers = new Set(numeric || []);
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: numbers.has(h) ? "num" : null, text: h })))),
    el(
      "tbody",
      {},
      rows.map((cells) =>
        el(
          "tr",
          {},
          cells.map((cell, i) =>
            el("td", { class: numbers.has(headers[i]) ? "num" : null }, cell instanceof Node ? cell : String(cell ?? "-")),
          ),
        ),
      ),
    ),
  );
}

// ------------------------------------------------------------------ the API

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path) {
  const response = await fetch(`${API}${path}`, {
    headers: { Authorization: `Bearer ${token()}`, Accept: "application/json" },
    cache: "no-store",
  });
  if (response.status === 401) throw new Unauthorized("the token was refused");
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json(); // the server's errors: {"error": {"type", "message", "field"?}}
      if (body && body.error && body.error.message) detail = body.error.message;
    } catch (_) {
      // not JSON: the status line says enough
    }
    throw new Error(detail);
  }
  return response.json();
}

function listOf(body, key) {
  // a list, or an object that holds it under `key`
  if (Array.isArray(body)) return body;
  return (body && body[key]) || [];
}

// ------------------------------------------------------------------ routing and refresh

let generation = 0; // bumped on each navigation: a slow answer for an old page is dropped
let timer = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, "").split("?")[0]; // #/savings?by=team: the query is the page's
  const [page, ...rest] = hash.split("/");
  return { page: page || "jobs", arg: rest.length ? decodeURIComponent(rest.join("/")) : null };
}

async function show() {
  const current = ++generation;
  clearTimeout(timer);
  if (!token()) return showLogin();
  document.getElementById("login").hidden = true;
  document.getElementById("logout").hidden = false;
  const { page, arg } = route();
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === (page === "job" ? "jobs" : page));
  }
  const view = document.getElementById("view");
  try {
    let again = false;
    if (page === "job" && arg) again = await renderJob(view, arg, current);
    else if (page === "savings") await renderSavings(view, current);
    else again = await renderJobs(view, current);
    if (again && current === generation) timer = setTimeout(() => refresh(current), REFRESH_MS);
  } catch (error) {
    if (current !== generation) return;
    if (error instanceof Unauthorized) return logout("Your token was refused; sign in again.");
    view.replaceChildren(el("p", { class: "error", role: "alert", text: `Could not load this page: ${error.message}` }));
  }
}

function refresh(current) {
  if (current === generation && !document.hidden) show();
  else if (current === generation) timer = setTimeout(() => refresh(current), REFRESH_MS);
}

// ------------------------------------------------------------------ sign in

function showLogin(message) {
  generation++;
  document.getElementById("view").replaceChildren();
  document.getElementById("login").hidden = false;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("token").focus();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  try {
    await whoAmI();
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    const text = error instanceof Unauthorized ? "That token was refused." : `Could not sign in: ${error.message}`;
    document.getElementById("login-error").textContent = text;
    return;
  }
  input.value = "";
  show();
}

async function whoAmI() {
  const me = await api("/me");
  const user = me.user || me;
  document.getElementById("who").textContent =
    `${user.name || "?"} · team ${user.team || "?"}${user.admin ? " · admin" : ""}`;
}

// ------------------------------------------------------------------ jobs list

const costCache = new Map(); // job id → cost report of a job that has ended (it no longer changes)

async function jobCost(job) {
  if (costCache.has(job.id)) return costCache.get(job.id);
  const report = await api(`/jobs/${encodeURIComponent(job.id)}/cost`).catch(() => null);
  if (report && TERMINAL.has(job.state)) costCache.set(job.id, report);
  return report;
}

async function renderJobs(view, current) {
  const jobs = listOf(await api("/jobs?limit=100"), "jobs");
  const costs = await Promise.all(jobs.map(jobCost));
  if (current !== generation) return false;
  const rows = jobs.map((job, i) => {
    const cost = costs[i];
    const progress = job.progress ? `${job.progress.step}/${job.progress.total_steps || "?"}` : "-";
    return [
      jobLink(job.id),
      job.name,
      stateBadge(job.state),
      job.provider,
      (job.attempts || []).length,
      job.preemptions ?? 0,
      progress,
      when(job.created),
      cost ? money(cost.actual_usd) : "n/a",
      cost ? money(cost.savings_usd) : "n/a",
    ];
  });
  const headers = ["job", "name", "state", "provider", "attempts", "preemptions", "progress", "created", "cost", "saved"];
  view.replaceChildren(
    el("h1", { text: "Jobs" }),
    jobs.length
      ? table(headers, rows, ["attempts", "preemptions", "cost", "saved"])
      : el("p", { class: "muted", text: "No jobs yet: submit one with `multispot submit job.yaml`." }),
  );
  view.querySelector("table")?.setAttribute("id", "jobs");
  return jobs.some((job) => !TERMINAL.has(job.state));
}

// ------------------------------------------------------------------ one job

async function renderJob(view, id, current) {
  const ref = encodeURIComponent(id);
  const [job, cost, checkpoints, events] = await Promise.all([
    api(`/jobs/${ref}`),
    api(`/jobs/${ref}/cost`).catch((error) => ({ error: error.message })),
    api(`/jobs/${ref}/checkpoints`).catch((error) => ({ error: error.message })),
    api(`/jobs/${ref}/events`).catch(() => []),
  ]);
  if (current !== generation) return false;
  const attempts = job.attempts || [];
  view.replaceChildren(
    el("h1", {}, el("span", { text: `${job.id} ` }), stateBadge(job.state)),
    el(
      "dl",
      { class: "facts card" },
      fact("name", job.name),
      fact("provider", job.provider),
      fact("message", job.message || "-"),
      fact("created", when(job.created)),
      fact("ended", when(job.ended)),
      fact("progress", job.progress ? `step ${job.progress.step} of ${job.progress.total_steps || "?"}` : "-"),
      fact("preemptions", String(job.preemptions ?? 0)),
      fact("checkpoints", job.checkpoint_uri),
    ),
    el("h2", { text: "Attempts" }),
    legend([
      ["spot", "spot"],
      ["on-demand", "on-demand"],
      ["waiting", "waiting for capacity"],
      ["preemption", "preempted"],
      ["resume", "resumed from a checkpoint"],
    ]),
    el("div", { class: "card" }, timeline(attempts)),
    attemptsTable(attempts),
    el("h2", { text: "Cost against on-demand" }),
    costSection(cost),
    el("h2", { text: "Checkpoints" }),
    checkpointsSection(checkpoints),
    el("h2", { text: "Events" }),
    eventsTable(listOf(events, "events")),
  );
  return !TERMINAL.has(job.state);
}

function fact(name, value) {
  return [el("dt", { text: name }), el("dd", { text: value })];
}

function legend(items) {
  return el(
    "div",
    { class: "legend" },
    items.map(([cls, text]) => el("span", {}, el("span", { class: `swatch ${cls}` }), text)),
  );
}

function attemptsTable(attempts) {
  const rows = attempts.map((a) => [
    a.n,
    stateBadge(a.state),
    a.market,
    [a.provider, a.region, a.instance_type].filter(Boolean).join(" / "),
    a.resumed_from_step ?? "-",
    a.interruptions,
    when(a.started),
    when(a.ended),
    a.message || "",
  ]);
  const headers = ["#", "state", "market", "where", "resumed from step", "absorbed interruptions", "started", "ended", "message"];
  const node = table(headers, rows, ["#", "resumed from step", "absorbed interruptions"]);
  node.id = "attempts";
  return node;
}

// The attempts as bars on one time axis: waiting (submitted → started), running (started → ended),
// a red mark where an attempt was preempted, a green one where an attempt resumed from a checkpoint.
function timeline(attempts) {
  const shown = attempts.filter((a) => a.submitted || a.started);
  if (!shown.length) return el("p", { class: "muted", text: "No attempt has been submitted yet." });
  const now = Date.now();
  const t = (iso) => (iso ? Date.parse(iso) : null);
  const start = Math.min(...shown.map((a) => t(a.submitted) ?? t(a.started)));
  const end = Math.max(start + 1000, ...shown.map((a) => t(a.ended) ?? now));
  const width = 920, left = 190, right = 30, top = 28, rowHeight = 50;
  const height = top + rowHeight * shown.length + 8;
  const x = (ms) => left + ((ms - start) / (end - start)) * (width - left - right);

  const parts = [axis(start, end, x, top, height)];
  shown.forEach((a, i) => {
    const y = top + i * rowHeight;
    const barY = y + 18, barH = 14;
    const submitted = t(a.submitted) ?? t(a.started);
    const started = t(a.started);
    const ended = t(a.ended) ?? (TERMINAL.has(a.state) || a.outcome ? submitted : now);
    const market = a.market === "on-demand" ? "on-demand" : "spot";
    const row = svgEl("g", { class: "attempt", "data-attempt": a.n, "data-market": market, "data-state": a.state });
    row.append(
      svgEl("text", { x: 0, y: barY + 11, text: `#${a.n} ${market}` }),
      svgEl("text", { x: 0, y: barY + 26, class: "muted", text: a.instance_type || a.provider || "" }),
    );
    const waitEnd = started ?? ended;
    if (waitEnd > submitted) {
      row.append(bar("bar waiting", x(submitted), barY, x(waitEnd) - x(submitted), barH, `#${a.n} waiting for capacity`));
    }
    if (started !== null) {
      row.append(bar(`bar ${market}`, x(started), barY, x(ended) - x(started), barH,
        `#${a.n} ${market} ${a.state}, ${duration((ended - started) / 1000)}`));
    }
    if (a.resumed_from_step !== null && a.resumed_from_step !== undefined) {
      const at = x(started ?? submitted);
      row.append(svgEl("g", { class: "resume", "data-attempt": a.n, "data-step": a.resumed_from_step },
        svgEl("path", { d: `M${at},${barY + barH + 2} l-5,8 h10 z` }),
        svgEl("text", { x: at + 8, y: barY + barH + 12, text: `resumed from step ${a.resumed_from_step}` }),
        svgEl("title", { text: `attempt ${a.n} restored the checkpoint of step ${a.resumed_from_step}` })));
    }
    if (a.state === "PREEMPTED") {
      const at = x(ended);
      row.append(svgEl("g", { class: "preemption", "data-attempt": a.n },
        svgEl("path", { d: `M${at},${barY - 1} l-5,-8 h10 z` }),
        svgEl("text", { x: at - 8, y: barY - 4, "text-anchor": "end", text: "preempted" }),
        svgEl("title", { text: `attempt ${a.n} preempted: ${a.message || ""}` })));
    }
    if (a.interruptions > 0) {
      row.append(svgEl("text", { x: x(ended) + 6, y: barY + 11, class: "muted",
        text: `${a.interruptions} absorbed` }));
    }
    parts.push(row);
  });
  return svgEl("svg", {
    id: "timeline", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `timeline of ${shown.length} attempts`,
  }, parts);
}

function bar(cls, x, y, width, height, title) {
  return svgEl("rect", { class: cls, x, y, width: Math.max(2, width), height, rx: 2 }, svgEl("title", { text: title }));
}

function axis(start, end, x, top, bottom) {
  const span = (end - start) / 1000;
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
  const step = steps.find((s) => span / s <= 8) || 86400 * Math.ceil(span / 86400 / 8);
  const group = svgEl("g", { class: "axis" });
  for (let s = 0; s <= span; s += step) {
    const at = x(start + s * 1000);
    group.append(
      svgEl("line", { x1: at, x2: at, y1: top - 6, y2: bottom, class: "grid" }),
      svgEl("text", { x: at, y: top - 10, "text-anchor": "middle", text: `+${duration(s)}` }),
    );
  }
  group.append(svgEl("text", { x: 0, y: top - 10, text: when(new Date(start).toISOString()) }));
  return group;
}

function costSection(cost) {
  if (!cost || cost.error) {
    return el("p", { class: "muted", text: `No cost report: ${cost ? cost.error : "unavailable"}.` });
  }
  const actual = cost.actual_usd, onDemand = cost.on_demand_usd;
  const box = el("div", { class: "card", id: "cost" });
  if (actual === null || actual === undefined || onDemand === null || onDemand === undefined) {
    box.append(el("p", { class: "muted", text: "No price is known for some attempt, so no cost is shown." }));
  } else {
    const width = 920, left = 190, barH = 20, max = Math.max(actual, onDemand, 1e-9);
    const w = (v) => Math.max(2, (v / max) * (width - left - 120));
    box.append(svgEl("svg", { viewBox: `0 0 ${width} 70`, width, height: 70, role: "img",
      "aria-label": "cost against the on-demand counterfactual" },
      svgEl("text", { x: 0, y: 20, text: "this job" }),
      svgEl("rect", { class: "cost-actual", x: left, y: 6, width: w(actual), height: barH }),
      svgEl("text", { x: left + w(actual) + 6, y: 20, text: money(actual) }),
      svgEl("text", { x: 0, y: 52, text: "all on-demand" }),
      svgEl("rect", { class: "cost-on-demand", x: left, y: 38, width: w(onDemand), height: barH }),
      svgEl("text", { x: left + w(onDemand) + 6, y: 52, text: money(onDemand) })));
    box.append(el("p", {}, el("strong", { text: `saved ${money(cost.savings_usd)}` }),
      cost.savings_percent !== null && cost.savings_percent !== undefined ? ` (${cost.savings_percent}%)` : "",
      ` · ${cost.actual_basis || "estimated"}`,
      cost.lost_work_usd ? ` · lost work ${money(cost.lost_work_usd)}` : ""));
  }
  const lines = (cost.attempts || []).map((line) => [
    line.attempt, line.market, line.instance_type || "-", money(line.cost), money(line.counterfactual_usd),
  ]);
  if (lines.length) box.append(table(["attempt", "market", "instance", "cost", "on-demand"], lines, ["attempt", "cost", "on-demand"]));
  for (const note of cost.notes || []) box.append(el("p", { class: "muted", text: `note: ${note}` }));
  return box;
}

function checkpointsSection(body) {
  if (!body || body.error) return el("p", { class: "muted", text: `No checkpoints: ${body ? body.error : "unavailable"}.` });
  const rows = listOf(body, "checkpoints").map((c) => [
    c.step,
    c.valid ? "yes" : "no",
    c.bytes ?? "-",
    c.attempt ?? "-",
    c.time ? when(c.time) : "-",
    c.reason || "",
  ]);
  if (!rows.length) return el("p", { class: "muted", text: `No checkpoint under ${body.uri || "the job's URI"} yet.` });
  const node = table(["step", "valid", "bytes", "attempt", "time", "reason"], rows, ["step", "bytes", "attempt"]);
  node.id = "checkpoints";
  return node;
}

function eventsTable(events) {
  if (!events.length) return el("p", { class: "muted", text: "No events." });
  const rows = events.map((e) => {
    const event = e.event || e;
    const time = typeof event.time === "number" ? new Date(event.time * 1000).toISOString() : event.time;
    return [when(time), event.attempt ?? "-", event.kind, event.message];
  });
  const node = table(["time", "attempt", "kind", "message"], rows);
  node.id = "events";
  return node;
}

// ------------------------------------------------------------------ savings

const GROUPS = [["team", "team"], ["provider", "provider"], ["instance_type", "instance type"]];

async function renderSavings(view, current) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const group = GROUPS.some(([g]) => g === params.get("by")) ? params.get("by") : "team";
  const [groups, points] = await Promise.all([
    api(`/savings?group_by=${group}`),
    api(`/savings/timeline?group_by=${group}&bucket=day`),
  ]);
  if (current !== generation) return;
  const select = el("select", { id: "group-by", "aria-label": "group by", onchange: (e) => {
    location.hash = `#/savings?by=${e.target.value}`;
  } }, GROUPS.map(([value, label]) => el("option", { value, selected: value === group, text: label })));
  const rows = listOf(groups, "groups").map((g) => [
    g.key ?? "-", g.jobs, money(g.cost), money(g.on_demand), money(g.saved), percent(g.saved, g.on_demand),
  ]);
  const summary = rows.length
    ? table([GROUPS.find(([g]) => g === group)[1], "jobs", "cost", "on-demand", "saved", "saved %"], rows,
      ["jobs", "cost", "on-demand", "saved", "saved %"])
    : el("p", { class: "muted", text: "No job has a cost yet." });
  summary.id = "savings";
  summary.dataset.group = group;
  view.replaceChildren(
    el("h1", { text: "Savings against on-demand" }),
    el("div", { class: "toolbar" }, el("label", { for: "group-by", text: "by" }), select),
    summary,
    el("h2", { text: "Saved per day" }),
    savingsChart(listOf(points, "points")),
  );
}

function savingsChart(points) {
  if (!points.length) return el("p", { class: "muted", text: "Nothing saved yet." });
  const buckets = [...new Set(points.map((p) => p.bucket))].sort();
  const keys = [...new Set(points.map((p) => String(p.key)))].sort();
  const width = 920, left = 70, top = 16, plot = 220, bottom = 40;
  const values = points.map((p) => p.saved || 0);
  const high = Math.max(0, ...values), low = Math.min(0, ...values);
  const span = high - low || 1;
  const y = (v) => top + ((high - v) / span) * plot;
  const slot = (width - left - 10) / buckets.length;
  const barW = Math.max(3, Math.min(40, (slot - 8) / keys.length));
  const parts = [
    svgEl("line", { x1: left, x2: width - 10, y1: y(0), y2: y(0), class: "grid" }),
    svgEl("text", { x: left - 6, y: y(high) + 4, "text-anchor": "end", text: money(high) }),
    svgEl("text", { x: left - 6, y: y(0) + 4, "text-anchor": "end", text: money(0) }),
  ];
  buckets.forEach((bucket, i) => {
    const x0 = left + i * slot + 4;
    parts.push(svgEl("text", { x: x0 + (barW * keys.length) / 2, y: top + plot + 18, "text-anchor": "middle",
      text: String(bucket).slice(0, 10) }));
    keys.forEach((key, k) => {
      const point = points.find((p) => p.bucket === bucket && String(p.key) === key);
      if (!point) return;
      const v = point.saved || 0;
      parts.push(svgEl("rect", { class: `series-${k % 6}`, "data-key": key, "data-bucket": bucket,
        x: x0 + k * barW, y: Math.min(y(v), y(0)), width: barW - 1, height: Math.max(1, Math.abs(y(v) - y(0))) },
        svgEl("title", { text: `${key}, ${String(bucket).slice(0, 10)}: saved ${money(v)} of ${money(point.on_demand)}` })));
    });
  });
  return el("div", { class: "card" },
    legend(keys.map((key, k) => [`series-${k % 6}`, key])),
    svgEl("svg", { id: "savings-chart", viewBox: `0 0 ${width} ${top + plot + bottom}`, width,
      height: top + plot + bottom, role: "img", "aria-label": "saved per day" }, parts));
}

// ------------------------------------------------------------------ start

document.getElementById("login-form").addEventListener("submit", signIn);
document.getElementById("logout").addEventListener("click", () => logout());
window.addEventListener("hashchange", show);
if (token()) whoAmI().catch(() => {});
show();
