// doorman-serve's dashboard. Every name from the broker (cluster, queue, worker, task, exception,
// alert subject) goes into the page as text (textContent), never as HTML. No inline script, no other origin.
"use strict";

const view = { range: "1h", cluster: null, charts: {} };
window.doormanCharts = view.charts; // read by the browser test

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

function fmt(v, unit) {
  if (v === null || v === undefined) return "–";
  if (unit === "s") return v < 120 ? v.toFixed(1) + " s" : (v / 60).toFixed(1) + " min";
  return String(v);
}

function when(ts) {
  return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

function renderStatus(status) {
  const box = document.getElementById("status");
  box.replaceChildren();
  const select = document.getElementById("cluster");
  const names = status.clusters.map((c) => c.cluster);
  if (view.cluster === null || !names.includes(view.cluster)) view.cluster = names[0] || null;
  select.replaceChildren(...names.map((n) => { const o = el("option", null, n); o.value = n; return o; }));
  if (view.cluster !== null) select.value = view.cluster;
  if (!status.clusters.length) box.append(el("p", "empty", "No snapshot yet."));
  for (const c of status.clusters) {
    const card = el("div", "card");
    card.dataset.cluster = c.cluster;
    card.append(el("h2", null, c.cluster));
    const dl = el("dl");
    const row = (k, v, cls) => { dl.append(el("dt", null, k)); dl.append(el("dd", cls, v)); };
    row("broker", c.broker_up ? "up" : "down" + (c.error ? ": " + c.error : ""), c.broker_up ? "good" : "bad");
    row("snapshot age", fmt(c.age_seconds, "s"));
    row("workers alive / known", fmt(c.workers_alive) + " / " + fmt(c.workers_known));
    row("pending", fmt(c.pending));
    row("oldest waiting", fmt(c.oldest_age_seconds, "s"));
    row("active", fmt(c.active));
    row("unacked", fmt(c.unacked));
    row("alerts firing", String(c.alerts_firing.length), c.alerts_firing.length ? "bad" : "good");
    card.append(dl);
    if (c.alerts_firing.length) {
      const ul = el("ul");
      for (const a of c.alerts_firing) ul.append(el("li", "sev-text-" + a.severity, a.severity + ": " + (a.title || a.alert_type) + " (" + a.subject + ")"));
      card.append(ul);
    }
    box.append(card);
  }
}

const PALETTE = ["#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#3949ab",
  "#c0ca33", "#d81b60"];

function chart(id, title, labels, columns, ts) {
  const box = document.getElementById(id);
  if (view.charts[id]) view.charts[id].destroy();
  box.replaceChildren();
  const series = [{}].concat(labels.map((label, i) => ({
    label: label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
    points: { show: ts.length < 80 },
  })));
  const width = Math.max(320, box.clientWidth || 480);
  const u = new uPlot({ width: width, height: 220, series: series, scales: { x: { time: true } },
    axes: [{}, { size: 50 }] }, [ts].concat(columns), box);
  view.charts[id] = u;
}

function renderHistory(h) {
  const ts = h.ts;
  const qnames = Object.keys(h.queues);
  chart("chart-pending", "pending", qnames, qnames.map((q) => h.queues[q].pending), ts);
  chart("chart-oldest", "oldest", qnames, qnames.map((q) => h.queues[q].oldest_age), ts);
  chart("chart-workers", "workers", ["workers alive", "active", "unacked"], [h.workers_alive, h.active, h.unacked], ts);
}

const RANGE_TEXT = { "1h": "1 h", "24h": "24 h", "7d": "7 d" };
const HOW_TO = "start the workers with -E (or worker_send_task_events = True)";

// One plain sentence when task outcomes cannot be trusted or are not read at all; null when events are on.
function taskNotice(t) {
  if (t === null || t === undefined) {
    return "Task outcomes are not read: the newest snapshot has no task section (doorman-collect --once, or " +
      "task_events is off in the configuration). Run the daemon (doorman-collect without --once) and " + HOW_TO + ".";
  }
  if (t.events === "off") {
    return "Task events are off: workers run tasks but send no task events, so no failure or runtime is counted; " +
      HOW_TO + ".";
  }
  if (t.events === "partial") {
    return "Task events are partial: no task events from " + (t.silent_workers.join(", ") || "some workers") +
      "; their tasks are not counted: " + HOW_TO + ".";
  }
  if (t.events === "unknown") {
    return "Task events not confirmed yet: no task has run since the collector started" +
      (t.since ? " (" + when(t.since) + ")" : "") + ".";
  }
  return null;
}

function seconds(v) {
  if (v === null || v === undefined) return "–";
  const text = v < 1 ? (v * 1000).toFixed(0) + " ms" : v.toFixed(2) + " s";
  return v >= 10 ? ">" + text : text; // a rank past the last bound (10 s) reads as 10 s
}

function renderTasks(h, status) {
  const c = status.clusters.find((x) => x.cluster === view.cluster) || null;
  const t = c ? c.tasks : null;
  const notice = document.getElementById("task-notice");
  const text = c ? taskNotice(t) : null;
  notice.textContent = text || "";
  notice.hidden = !text;
  notice.dataset.events = t ? t.events : "none";
  const totals = h.task_totals || {};
  const exceptions = new Map((t ? t.rows : []).map((r) => [r.name, r]));
  const names = Object.keys(totals).sort((a, b) =>
    (totals[b].failed - totals[a].failed) || (totals[b].runs - totals[a].runs) || (a < b ? -1 : 1));
  document.getElementById("task-caption").textContent = "Over the last " + (RANGE_TEXT[view.range] || view.range) +
    (t && t.since ? "; exceptions since the collector started (" + when(t.since) + ")" : "");
  const body = document.querySelector("#task-table tbody");
  body.replaceChildren();
  for (const n of names) {
    const x = totals[n];
    const tr = el("tr", x.failed ? "failing" : null);
    tr.dataset.task = n;
    const e = exceptions.get(n);
    tr.append(el("td", "name", n), el("td", "runs", x.runs), el("td", "failed", x.failed),
      el("td", "ratio", x.runs ? (100 * x.failed / x.runs).toFixed(1) + " %" : "–"), el("td", "retried", x.retried),
      el("td", "p95", seconds(x.p95_runtime)),
      el("td", "exception", e && e.top_exception ? e.top_exception + " ×" + e.top_exception_count : "–"));
    body.append(tr);
  }
  if (!names.length) {
    const tr = el("tr");
    const td = el("td", "empty", "No task outcome recorded in this range.");
    td.colSpan = 7;
    tr.append(td);
    body.append(tr);
  }
  const tasks = h.tasks || {};
  const byFailures = names.filter((n) => totals[n].failed > 0).slice(0, 10);
  const failing = byFailures.length ? byFailures : names.slice(0, 10);
  chart("chart-task-failures", "failures", failing, failing.map((n) => tasks[n].failed), h.ts);
  const timed = names.filter((n) => totals[n].p95_runtime !== null).sort((a, b) => totals[b].runs - totals[a].runs).slice(0, 10);
  chart("chart-task-runtime", "p95 runtime", timed, timed.map((n) => tasks[n].p95_runtime), h.ts);
}

function renderTimeline(data) {
  const box = document.getElementById("timeline");
  box.replaceChildren();
  if (!data.alerts.length) { box.append(el("p", "empty", "No alert in this range.")); return; }
  const lanes = new Map();
  for (const a of data.alerts) {
    const key = a.alert_type + " " + a.subject;
    if (!lanes.has(key)) lanes.set(key, []);
    lanes.get(key).push(a);
  }
  const span = data.to - data.from;
  for (const [key, alerts] of lanes) {
    const lane = el("div", "lane");
    lane.append(el("div", "name", key));
    const track = el("div", "track");
    for (const a of alerts) {
      const start = Math.max(a.started_at, data.from);
      const end = a.resolved_at === null ? data.to : Math.min(a.resolved_at, data.to);
      const s = el("div", "span sev-" + a.severity + (a.resolved_at === null ? " firing" : ""));
      s.style.left = (100 * (start - data.from) / span) + "%";
      s.style.width = Math.max(0.2, 100 * (end - start) / span) + "%";
      s.title = a.severity + ": " + (a.title || a.alert_type) + " — " + when(a.started_at) + " → " +
        (a.resolved_at === null ? "firing" : when(a.resolved_at));
      s.dataset.fingerprint = a.fingerprint;
      s.dataset.alertType = a.alert_type;
      track.append(s);
    }
    lane.append(track);
    box.append(lane);
  }
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const status = await getJSON("/api/v1/status");
    renderStatus(status);
    const q = "?range=" + encodeURIComponent(view.range) + (view.cluster !== null ? "&cluster=" + encodeURIComponent(view.cluster) : "");
    const [h, a] = await Promise.all([getJSON("/api/v1/history" + q), getJSON("/api/v1/alerts" + q)]);
    renderHistory(h);
    renderTasks(h, status);
    renderTimeline(a);
    document.getElementById("updated").textContent = "updated " + when(Date.now() / 1000);
    document.body.dataset.loaded = "1";
    err.hidden = true;
  } catch (e) {
    err.textContent = "Cannot load: " + e.message;
    err.hidden = false;
  }
}

function start() {
  for (const b of document.querySelectorAll("#ranges button")) {
    b.addEventListener("click", () => {
      view.range = b.dataset.range;
      for (const o of document.querySelectorAll("#ranges button")) o.classList.toggle("on", o === b);
      refresh();
    });
  }
  document.getElementById("cluster").addEventListener("change", (e) => { view.cluster = e.target.value; refresh(); });
  refresh();
  setInterval(refresh, 10000);
}

document.addEventListener("DOMContentLoaded", start);
