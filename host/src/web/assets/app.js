// Sluice dashboard: fetches /api/* with the page's filters and draws every
// chart as SVG or a table. Values from events (feature names, quarantined
// bytes) are untrusted: they only ever go into textContent or attributes,
// never into markup. Each drawn element carries its numbers (data-label,
// data-value) so a test can read them from the DOM.
"use strict";

const REFRESH_SECS = 5;
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
  "#ca8a04", "#db2777", "#4b5563", "#65a30d"];

function el(tag, attrs, text) {
  const svg = ["svg", "g", "rect", "line", "polyline", "circle", "text", "title"].includes(tag);
  const node = svg ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function shown(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number" && !Number.isInteger(value)) return String(Math.round(value * 100) / 100);
  return String(value);
}

// The filters in the address bar, echoed into the form and the JSON links.
function filters() {
  const params = new URLSearchParams(window.location.search);
  const out = new URLSearchParams();
  for (const key of ["from", "to", "plan"]) {
    const value = params.get(key);
    if (value) out.set(key, value);
  }
  return out;
}

async function api(path) {
  const qs = filters().toString();
  const url = path + (qs ? (path.includes("?") ? "&" : "?") + qs : "");
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

function done(container, points) {
  container.setAttribute("data-rendered", "true");
  container.setAttribute("data-points", String(points));
}

function empty(container, message) {
  clear(container);
  container.appendChild(el("p", { class: "empty" }, message || "no data yet"));
  done(container, 0);
}

// Horizontal bars: [{label, value}], largest first as given.
function barChart(container, bars, unit) {
  clear(container);
  if (!bars.length) return empty(container);
  const rowH = 22, labelW = 150, valueW = 70, width = 520;
  const max = Math.max(...bars.map((b) => b.value), 1);
  const svg = el("svg", { viewBox: `0 0 ${width} ${bars.length * rowH + 4}`, class: "chart" });
  bars.forEach((b, i) => {
    const g = el("g", { class: "bar", "data-label": b.label, "data-value": b.value,
      transform: `translate(0, ${i * rowH})` });
    const w = Math.max(1, (width - labelW - valueW) * b.value / max);
    g.appendChild(el("text", { class: "label", x: labelW - 6, y: 15, "text-anchor": "end" }, b.label));
    g.appendChild(el("rect", { x: labelW, y: 3, width: w, height: rowH - 6,
      fill: b.color || COLORS[0] }));
    g.appendChild(el("text", { class: "value", x: labelW + w + 4, y: 15 }, shown(b.value)));
    g.appendChild(el("title", {}, `${b.label}: ${shown(b.value)}${unit ? " " + unit : ""}`));
    svg.appendChild(g);
  });
  container.appendChild(svg);
  done(container, bars.length);
}

// Lines over categorical x values: series [{name, points: [{x, y}]}].
function lineChart(container, series) {
  clear(container);
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort();
  if (!xs.length) return empty(container);
  const width = 520, height = 220, left = 48, right = 70, top = 10, bottom = 30;
  const maxY = Math.max(...series.flatMap((s) => s.points.map((p) => p.y)), 1);
  const x = (v) => left + (xs.length === 1 ? 0 : (width - left - right) * xs.indexOf(v) / (xs.length - 1));
  const y = (v) => top + (height - top - bottom) * (1 - v / maxY);
  const perRow = 4, legendRows = Math.ceil(series.length / perRow);
  const svg = el("svg", { viewBox: `0 0 ${width} ${height + 16 * legendRows + 4}`, class: "chart" });
  svg.appendChild(el("line", { x1: left, y1: y(0), x2: width - right, y2: y(0), class: "axis" }));
  svg.appendChild(el("text", { x: left - 4, y: y(maxY) + 4, "text-anchor": "end", class: "tick" }, shown(maxY)));
  svg.appendChild(el("text", { x: left - 4, y: y(0), "text-anchor": "end", class: "tick" }, "0"));
  svg.appendChild(el("text", { x: left, y: height - 8, class: "tick" }, xs[0]));
  svg.appendChild(el("text", { x: width - right, y: height - 8, "text-anchor": "end", class: "tick" }, xs[xs.length - 1]));
  let count = 0;
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const points = s.points.slice().sort((a, b) => (a.x < b.x ? -1 : a.x > b.x ? 1 : 0));
    const g = el("g", { class: "series", "data-series": s.name });
    g.appendChild(el("polyline", { points: points.map((p) => `${x(p.x)},${y(p.y)}`).join(" "),
      fill: "none", stroke: color, "stroke-width": 2 }));
    for (const p of points) {
      const dot = el("circle", { cx: x(p.x), cy: y(p.y), r: 2.5, fill: color,
        "data-x": p.x, "data-value": p.y });
      dot.appendChild(el("title", {}, `${s.name} ${p.x}: ${shown(p.y)}`));
      g.appendChild(dot);
      count++;
    }
    const last = points[points.length - 1];
    g.appendChild(el("text", { class: "last", x: x(last.x) + 4, y: y(last.y) + 4,
      "data-x": last.x, "data-value": last.y, fill: color }, shown(last.y)));
    g.appendChild(el("text", { class: "legend", x: left + (i % perRow) * 120,
      y: height + 12 + 16 * Math.floor(i / perRow), fill: color }, s.name));
    svg.appendChild(g);
  });
  container.appendChild(svg);
  done(container, count);
}

// A table: columns [{key, title, heat?}], rows of objects.
function table(container, columns, rows, decorate) {
  clear(container);
  if (!rows.length) return empty(container);
  const t = el("table");
  const head = el("tr");
  for (const c of columns) head.appendChild(el("th", {}, c.title || c.key));
  t.appendChild(el("thead")).appendChild(head);
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr");
    for (const c of columns) {
      const td = el("td", { "data-key": c.key, "data-value": row[c.key] ?? "" },
        c.format ? c.format(row[c.key], row) : shown(row[c.key]));
      if (decorate) decorate(td, c, row);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  t.appendChild(body);
  container.appendChild(t);
  done(container, rows.length);
}

function groupSeries(rows, seriesKey, xKey, yKey) {
  const by = new Map();
  for (const r of rows) {
    if (!by.has(r[seriesKey])) by.set(r[seriesKey], []);
    by.get(r[seriesKey]).push({ x: r[xKey], y: r[yKey] });
  }
  return [...by.entries()].map(([name, points]) => ({ name, points }));
}

function latest(rows, key) {
  const last = rows.reduce((m, r) => (r[key] > m ? r[key] : m), "");
  return rows.filter((r) => r[key] === last);
}

const charts = {
  async top_features() {
    const rows = await api("/api/top_features");
    barChart(document.getElementById("chart-top-features"),
      rows.map((r) => ({ label: r.feature, value: r.events })), "events");
  },
  async feature_trend() {
    const rows = await api("/api/feature_trend");
    lineChart(document.getElementById("chart-feature-trend"), groupSeries(rows, "feature", "week", "events"));
  },
  async engagement() {
    const rows = await api("/api/engagement");
    const bars = [];
    for (const r of rows) {
      bars.push({ label: `${r.tier} events/user`, value: r.events_per_user, color: COLORS[0] });
      bars.push({ label: `${r.tier} sessions/user`, value: r.sessions_per_user, color: COLORS[2] });
    }
    barChart(document.getElementById("chart-engagement"), bars);
  },
  async daily_usage() {
    const rows = await api("/api/daily_usage");
    lineChart(document.getElementById("chart-daily-users"), groupSeries(rows, "plan", "day", "active_users"));
    lineChart(document.getElementById("chart-daily-events"), groupSeries(rows, "plan", "day", "events"));
  },
  async retention() {
    const rows = await api("/api/retention");
    const container = document.getElementById("chart-retention");
    const weeks = [...new Set(rows.map((r) => r.week_number))].sort((a, b) => a - b);
    const cohorts = groupSeries(rows, "cohort_week", "week_number", "active_pct");
    const size = new Map(rows.map((r) => [r.cohort_week, r.cohort_users]));
    const active = new Map(rows.map((r) => [`${r.cohort_week}/${r.week_number}`, r.active_users]));
    const columns = [{ key: "cohort", title: "cohort (week of)" }, { key: "users", title: "users" }]
      .concat(weeks.map((w) => ({ key: `w${w}`, title: `week ${w}` })));
    const table_rows = cohorts.map((c) => {
      const row = { cohort: c.name, users: size.get(c.name) };
      for (const p of c.points) row[`w${p.x}`] = p.y;
      return row;
    });
    table(container, columns, table_rows, (td, c, row) => {
      if (!c.key.startsWith("w") || row[c.key] === undefined) return;
      td.classList.add("heat");
      td.setAttribute("data-cohort", row.cohort);
      td.setAttribute("data-week", c.key.slice(1));
      td.setAttribute("data-active", active.get(`${row.cohort}/${c.key.slice(1)}`));
      td.textContent = shown(row[c.key]) + " %";
      td.style.backgroundColor = `rgba(37, 99, 235, ${Math.min(1, row[c.key] / 100).toFixed(2)})`;
      if (row[c.key] > 55) td.classList.add("dark");
    });
  },
  async stickiness() {
    const rows = await api("/api/stickiness");
    const series = [];
    for (const plan of [...new Set(rows.map((r) => r.plan))]) {
      const mine = rows.filter((r) => r.plan === plan);
      for (const m of ["dau", "wau", "mau"]) {
        series.push({ name: `${plan} ${m.toUpperCase()}`, points: mine.map((r) => ({ x: r.day, y: r[m] })) });
      }
    }
    lineChart(document.getElementById("chart-stickiness"), series);
    lineChart(document.getElementById("chart-dau-mau"), groupSeries(rows, "plan", "day", "dau_mau"));
  },
  async active_days() {
    const rows = latest(await api("/api/active_days"), "week");
    const bars = rows.map((r) => ({ label: `${r.plan}: ${r.active_days} day${r.active_days > 1 ? "s" : ""}`,
      value: r.users }));
    barChart(document.getElementById("chart-active-days"), bars, "users");
  },
  async lifecycle() {
    const rows = await api("/api/lifecycle");
    table(document.getElementById("table-lifecycle"), [
      { key: "week" }, { key: "segment" }, { key: "new_users", title: "new" },
      { key: "returning_users", title: "returning" }, { key: "resurrected_users", title: "resurrected" },
      { key: "dormant_users", title: "dormant" }], rows);
  },
  async feature_adoption() {
    const rows = latest(await api("/api/feature_adoption"), "week");
    table(document.getElementById("table-adoption"), [
      { key: "week" }, { key: "plan" }, { key: "feature" }, { key: "users" },
      { key: "active_users", title: "active users" }, { key: "reach_pct", title: "reach %" },
      { key: "uses", title: "uses" }, { key: "uses_per_user", title: "uses per user" }], rows);
  },
  async health() {
    const h = await api("/api/health");
    table(document.getElementById("table-tiers"), [{ key: "tier" }, { key: "position", title: "last batch" },
      { key: "behind", title: "batches behind" }], h.tiers);
    for (const tier of ["bronze", "silver", "gold"]) {
      lineChart(document.getElementById(`chart-throughput-${tier}`), [
        { name: "in", points: h.throughput.map((p) => ({ x: p.t.slice(11, 19), y: p[tier].in })) },
        { name: "out", points: h.throughput.map((p) => ({ x: p.t.slice(11, 19), y: p[tier].out })) }]);
    }
    const reasons = h.quarantine.totals.map((r) => r.reason);
    lineChart(document.getElementById("chart-quarantine"), reasons.map((reason) => ({
      name: reason,
      points: h.quarantine.points.map((p) => ({ x: p.t.slice(11, 19), y: p.counts[reason] || 0 })),
    })));
    table(document.getElementById("table-quarantine"), [{ key: "reason" }, { key: "events" },
      { key: "samples" }], h.quarantine.totals, (td, c, row) => {
      if (c.key !== "samples") return;
      clear(td);
      const link = el("a", { href: "/quarantine?reason=" + encodeURIComponent(row.reason) }, "rows and raw bytes");
      td.appendChild(link);
    });
    table(document.getElementById("table-partitions"), [{ key: "source" }, { key: "partition" },
      { key: "committed", title: "committed offset" }, { key: "lag", title: "lag (events)" }], h.partitions);
    table(document.getElementById("table-plugins"), [{ key: "layer" }, { key: "active" },
      { key: "served", title: "served (batches)", format: (v) => (v || []).map((s) =>
        `${s.plugin} ${s.from_batch}–${s.to_batch}`).join(", ") }], h.plugins);
    table(document.getElementById("table-history"), [{ key: "at" }, { key: "layer" }, { key: "action" },
      { key: "name" }, { key: "version" }, { key: "from_batch", title: "from batch" },
      { key: "note" }], h.history.slice().reverse());
    const shadow = document.getElementById("shadow");
    shadow.textContent = h.shadow ? JSON.stringify(h.shadow, null, 2)
      : (h.live ? "no shadow run" : "shown by a running `sluice run` only");
    done(shadow, h.shadow ? 1 : 0);
  },
};

async function refresh() {
  const results = await Promise.allSettled(Object.entries(charts).map(([name, draw]) =>
    draw().catch((e) => { throw new Error(name + ": " + e.message); })));
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  const updated = document.getElementById("updated");
  updated.textContent = new Date().toISOString().slice(11, 19) + " UTC" +
    (failed.length ? " (failed: " + failed.join("; ") + ")" : "");
  document.body.setAttribute("data-refreshes", String(Number(document.body.getAttribute("data-refreshes") || 0) + 1));
}

function startDashboard() {
  const current = filters();
  for (const key of ["from", "to", "plan"]) {
    const value = current.get(key);
    if (value) document.getElementById(key).value = value;
  }
  const qs = current.toString();
  for (const a of document.querySelectorAll("a.api")) {
    if (qs) a.setAttribute("href", a.getAttribute("href") + "?" + qs);
  }
  document.getElementById("refresh-secs").textContent = String(REFRESH_SECS);
  refresh();
  setInterval(refresh, REFRESH_SECS * 1000);
}

async function startQuarantine() {
  const reason = new URLSearchParams(window.location.search).get("reason") || "";
  document.getElementById("reason").textContent = reason;
  const path = "/api/quarantine/samples?reason=" + encodeURIComponent(reason) + "&limit=50";
  document.getElementById("samples-json").setAttribute("href", path);
  const response = await fetch(path, { cache: "no-store" });
  const container = document.getElementById("table-samples");
  if (!response.ok) return empty(container, "no samples: " + response.status);
  table(container, [{ key: "quarantined_at", title: "at" }, { key: "layer" }, { key: "reason" },
    { key: "detail" }, { key: "source" }, { key: "source_partition", title: "partition" },
    { key: "source_offset", title: "offset" }, { key: "raw", title: "raw (text)" },
    { key: "raw_base64", title: "raw (base64)" }], await response.json(), (td, c) => {
    if (c.key === "raw" || c.key === "raw_base64") td.classList.add("raw");
  });
}

if (document.body.getAttribute("data-page") === "quarantine") startQuarantine();
else startDashboard();
