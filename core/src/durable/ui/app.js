"use strict";
const SVG = "http://www.w3.org/2000/svg";
let config = { poll_interval: 2, statuses: [], actions: false, token: null };
const FILTERS = ["status", "workflow", "prefix", "version", "age"];
let countsCache = { key: null, at: 0, counts: null };
const AGES = { "15m": 900, "1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000 };
let timer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}
function fmtTime(ts) {
  if (ts === null || ts === undefined) return "-";
  const d = new Date(ts * 1000), p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
function fmtDur(s) {
  if (s < 1) return `${Math.round(s * 1000)}ms`;
  if (s < 60) return `${s.toFixed(2)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h${String(m % 60).padStart(2, "0")}m` : `${Math.floor(h / 24)}d${h % 24}h`;
}
function inFlightText(f) {
  if (f.known) return f.steps.map((s) => `in ${s.key}, attempt ${s.attempt}`).join(", ");
  return "step in flight unknown, " +
    (f.after === null ? "before the first checkpoint" : `after checkpoint ${f.after}`);
}
function waitingText(w) {
  if (w.kind === "sleep") return `sleep until ${fmtTime(w.until)}`;
  return `signal ${w.signal}` + (w.timeout !== null ? `, timeout ${fmtDur(w.timeout)}` : "") +
    (w.delivered ? ", delivered" : "");
}
function statusDetail(r) {
  if (r.status === "interrupted") {
    if (r.waiting_for && !r.in_flight) return "was waiting for " + waitingText(r.waiting_for);
    return r.in_flight ? inFlightText(r.in_flight) : "";
  }
  return r.waiting_for ? waitingText(r.waiting_for) : "";
}
// A run's queue entry as `durable runs show` words it (the CLI's _queue_text).
function queueText(q, now) {
  const parts = [q.queue, `priority ${q.priority}`];
  if (q.partition_key !== null) parts.push(`partition ${q.partition_key}`);
  if (q.not_before > now) parts.push(`not before ${fmtTime(q.not_before)}`);
  if (q.debounce_key !== null) parts.push(`debounce key ${q.debounce_key}`);
  return parts.join(", ");
}
function clip(text, n) { return text.length <= n ? text : text.slice(0, n - 1) + "\u2026"; }
function badge(status) { return el("span", { class: "badge " + status }, status); }
function runHref(id) { return "#run=" + encodeURIComponent(id); }
function currentRun() {
  const m = location.hash.match(/^#run=(.*)$/);
  return m ? decodeURIComponent(m[1]) : null;
}
async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}
function problem(message) {
  const p = document.getElementById("problem");
  p.hidden = !message;
  p.textContent = message || "";
}
function refreshed(ts) {
  const every = ` \u00b7 every ${config.poll_interval}s`;
  document.getElementById("refreshed").textContent = "updated " + fmtTime(ts) + every;
}

// The list's state lives in the URL's fragment (#status=failed&workflow=w&age=1h&after_id=...),
// so a filtered page, or a page deep in the history, can be bookmarked, shared and gone back to.
function listState() {
  return new URLSearchParams(location.hash.startsWith("#run=") ? "" : location.hash.slice(1));
}
function listHash(state) {
  return "#" + state.toString();
}
function showFilters(state) {
  for (const name of FILTERS) {
    const input = document.getElementById("filter-" + name);
    if (document.activeElement !== input) input.value = state.get(name) || "";
  }
}
function filtersChanged() {
  const state = new URLSearchParams();
  for (const name of FILTERS) {
    const value = document.getElementById("filter-" + name).value.trim();
    if (value) state.set(name, value);
  }
  // A change of filter starts again from the newest run; typing replaces the history entry.
  history.replaceState(null, "", listHash(state));
  refresh();
}
function apiParams(state) {
  const params = new URLSearchParams();
  for (const name of ["status", "workflow", "prefix", "version"]) {
    if (state.get(name)) params.set(name, state.get(name));
  }
  const age = AGES[state.get("age") || ""];
  if (age) params.set("since", String(Date.now() / 1000 - age));
  return params;
}
function renderCounts(counts, state) {
  const box = document.getElementById("counts");
  const chip = (status, label, n) => {
    const next = new URLSearchParams(state);
    next.delete("after_created"); next.delete("after_id");
    if (status) next.set("status", status); else next.delete("status");
    const current = (state.get("status") || "") === status;
    return el("a", { href: listHash(next), "data-count": status || "all", class: current ? "current" : "" },
      label, el("span", { class: "n" }, n));
  };
  const more = counts.counts_capped ? "+" : "";
  box.replaceChildren(chip("", "all", counts.total + more), ...config.statuses
    .filter((s) => counts.counts[s] > 0 || s === state.get("status"))
    .map((s) => chip(s, s, counts.counts[s])));
}

async function renderList() {
  const state = listState();
  document.getElementById("back").setAttribute("href", listHash(state));
  showFilters(state);
  const params = apiParams(state);
  const page = new URLSearchParams(params);
  page.set("limit", String(config.page_size || 50));
  if (state.get("after_id")) {
    page.set("after_created", state.get("after_created") || "");
    page.set("after_id", state.get("after_id"));
  }
  // Counts read up to 10,000 runs: asked again when the filters change, else every 10 s at most.
  const countsKey = new URLSearchParams(params);
  countsKey.delete("since");
  const key = countsKey + "&age=" + (state.get("age") || "");
  const stale = key !== countsCache.key || Date.now() - countsCache.at > 10000;
  const [data, counts] = await Promise.all([getJSON("/api/runs?" + page),
    stale ? getJSON("/api/counts?" + params) : Promise.resolve(countsCache.counts)]);
  if (stale) countsCache = { key, at: Date.now(), counts };
  renderCounts(counts, state);
  const next = document.getElementById("page-next");
  next.hidden = data.next === null;
  if (data.next !== null) {
    const after = new URLSearchParams(state);
    after.set("after_created", String(data.next.created_at));
    after.set("after_id", data.next.run_id);
    next.setAttribute("href", listHash(after));
  }
  const first = new URLSearchParams(state);
  first.delete("after_created"); first.delete("after_id");
  const deep = state.get("after_id") !== null;
  document.getElementById("page-first").hidden = !deep;
  document.getElementById("page-first").setAttribute("href", listHash(first));
  document.getElementById("page-info").textContent = `${data.runs.length} run(s)` +
    (deep ? ` older than ${state.get("after_id")}` : "");
  const body = document.querySelector("#runs tbody");
  body.replaceChildren(...data.runs.map((r) => {
    const end = r.ended_at !== null ? r.ended_at : data.observed_at;
    const error = r.error ? `${r.error.type.split(".").pop()}: ${r.error.message}` : "";
    const detail = statusDetail(r);
    const row = el("tr", { "data-run-id": r.run_id, "data-status": r.status },
      el("td", { class: "mono" }, el("a", { href: runHref(r.run_id) }, r.run_id)),
      el("td", {}, r.workflow, ...(r.version ? [" ", el("span", { class: "muted version" }, r.version)] : []),
        ...(r.queue ? [" ", el("span", { class: "muted queue", title: queueText(r.queue, data.observed_at) },
          "on " + r.queue.queue)] : [])),
      el("td", {}, badge(r.status), ...(detail ? [el("span", { class: "detail" }, detail)] : [])),
      el("td", {}, fmtTime(r.created_at)), el("td", {}, fmtTime(r.updated_at)),
      el("td", {}, fmtDur(Math.max(0, end - r.created_at))),
      el("td", { class: "err", title: error }, clip(error, 80)));
    return row;
  }));
  document.getElementById("runs-empty").hidden = data.runs.length > 0;
  refreshed(data.observed_at);
}

function drawTimeline(run) {
  const steps = run.steps;
  const W = 1000, L = 250, R = 70, ROW = 26, TOP = 30;
  const H = TOP + ROW * (steps.length + 1) + 8;
  const start = run.start, span = Math.max(run.end - run.start, 0.001);
  const x = (t) => L + ((t - start) / span) * (W - L - R);
  const root = svg("svg", { id: "timeline", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `timeline of ${steps.length} steps` });
  const axis = svg("g", { class: "axis" });
  for (let i = 0; i <= 5; i++) {
    const t = start + (span * i) / 5, gx = x(t);
    axis.append(svg("line", { class: "grid-line", x1: gx, x2: gx, y1: TOP - 8, y2: H - 4 }));
    const anchor = i === 0 ? "start" : i === 5 ? "end" : "middle";
    axis.append(svg("text", { x: gx, y: TOP - 14, "text-anchor": anchor }, "+" + fmtDur((span * i) / 5)));
  }
  root.append(axis);
  const row = (i, label, title, cls, t0, t1, extra) => {
    const y = TOP + i * ROW;
    const g = svg("g", Object.assign({ class: "row" }, extra || {}));
    g.append(svg("text", { class: "label", x: 10, y: y + ROW / 2 + 4 }, clip(label, 32)));
    const bx = x(t0), bw = Math.max(x(t1) - bx, 3);
    const bar = svg("rect", { class: "bar " + cls, x: bx, y: y + 5, width: bw, height: ROW - 10 });
    bar.append(svg("title", {}, title));
    g.append(bar);
    const text = fmtDur(Math.max(0, t1 - t0));
    const inside = bw > 60;
    const tx = inside ? bx + bw - 6 : bx + bw + 6;
    g.append(svg("text", { class: inside ? "dur inside" : "dur", x: tx, y: y + ROW / 2 + 4,
      "text-anchor": inside ? "end" : "start" }, text));
    root.append(g);
    return bar;
  };
  const live = !["completed", "failed", "cancelled", "interrupted"].includes(run.status);
  row(0, `run \u00b7 ${run.workflow}`, `${run.run_id}: ${run.status}`, "run " + run.status,
    run.created_at, run.end, { "data-row": "run" });
  steps.forEach((s, i) => {
    const cls = s.status === "failed" ? "failed" : s.kind === "task" ? "completed" : s.kind;
    const t1 = s.ends_at;
    const detail = s.error ? `\n${s.error.type}: ${s.error.message}`
      : s.kind === "sleep" && s.until !== null ? `\nuntil ${fmtTime(s.until)} (${s.until_iso})`
      : s.result_preview ? `\n\u2192 ${s.result_preview}` : "";
    const tip = `${s.key} (${s.task}) ${s.status}, ${s.attempts} attempt(s), ${fmtDur(s.duration)}` + detail;
    const bar = row(i + 1, s.key, tip, cls, s.started_at, t1, { "data-key": s.key, "data-status": s.status });
    bar.setAttribute("data-key", s.key);
    if (s.failed_attempts > 0 && s.status !== "failed") bar.classList.add("retried");
  });
  if (live) {
    const nx = x(run.observed_at);
    root.append(svg("line", { class: "now", x1: nx, x2: nx, y1: TOP - 8, y2: H - 4 }));
  }
  return root;
}

function fact(list, name, value, cls) {
  const attrs = { "data-fact": name };
  if (cls) attrs.class = cls;
  list.append(el("dt", {}, name), el("dd", attrs, value));
}

async function renderRun(id) {
  const run = await getJSON("/api/run?id=" + encodeURIComponent(id));
  document.getElementById("run-id").textContent = run.run_id;
  const status = document.getElementById("run-status");
  status.className = "badge " + run.status;
  const asked = run.cancel_requested && run.status !== "cancelled";
  status.textContent = run.status + (asked ? " (cancel requested)" : "");
  const facts = document.getElementById("run-facts");
  facts.replaceChildren();
  fact(facts, "workflow", run.workflow);
  // The version that created it (stored with the run), and every version that executed it (its
  // journal): a run created before versions were stored shows the latter only.
  if (run.version) fact(facts, "version", run.version, "mono");
  const others = run.versions.filter((v) => v !== run.version);
  if (others.length) fact(facts, "executed by", run.versions.join(", "), "mono");
  if (run.forked_from) {
    const origin = run.forked_from;
    facts.append(el("dt", {}, "forked from"), el("dd", { class: "mono", "data-fact": "forked from" },
      el("a", { href: runHref(origin.run_id) }, origin.run_id), ` at step ${origin.from_step}`,
      el("span", { class: "muted" }, ` (${origin.copied} checkpoint(s) copied)`)));
  }
  if (run.queue) fact(facts, "queue", queueText(run.queue, run.observed_at));
  if (run.parent_run_id) facts.append(el("dt", {}, "parent"),
    el("dd", { class: "mono" }, el("a", { href: runHref(run.parent_run_id) }, run.parent_run_id)));
  fact(facts, "created", fmtTime(run.created_at));
  fact(facts, "updated", fmtTime(run.updated_at));
  fact(facts, "duration", fmtDur(run.duration) + (run.ended_at !== null ? " (stopped)" : ""));
  if (run.status === "interrupted") {
    if (run.last_owner) {
      const gone = run.lease_expires_at === null ? "no live lease"
        : run.lease_expires_at > run.observed_at ? "its process is gone"
        : `its lease ended ${fmtTime(run.lease_expires_at)}`;
      fact(facts, "last owner", `${run.last_owner} (${gone})`, "mono");
    }
    if (run.in_flight) fact(facts, "in flight", inFlightText(run.in_flight), "mono");
    if (run.waiting_for) fact(facts, "was waiting", "for " + waitingText(run.waiting_for));
  } else {
    if (run.owner) fact(facts, "owner", `${run.owner} (lease until ${fmtTime(run.lease_expires_at)})`);
    if (run.in_flight) {
      fact(facts, "in flight", inFlightText(run.in_flight) + " (at its last lease renewal)", "mono");
    }
    if (run.waiting_for) fact(facts, "waiting for", waitingText(run.waiting_for));
  }
  if (run.wake_at) fact(facts, "wakes at", fmtTime(run.wake_at));
  const shown = (name) => run.omitted.includes(name) ? run[name + "_preview"] : JSON.stringify(run[name]);
  fact(facts, "inputs", shown("inputs"), "mono");
  if (run.has_result) fact(facts, "result", shown("result"), "mono");
  if (run.error) fact(facts, "error", `${run.error.type}: ${run.error.message}`, "err");
  for (const child of run.children) {
    const link = el("a", { href: runHref(child.run_id) }, child.run_id);
    facts.append(el("dt", {}, "child run"), el("dd", { class: "mono" }, link, " ", badge(child.status)));
  }
  showActions(run);
  const family = document.getElementById("family");
  family.hidden = !(run.parent_run_id || run.children.length);
  if (!family.hidden) {
    const tree = await getJSON("/api/tree?id=" + encodeURIComponent(run.run_id));
    document.getElementById("tree").replaceChildren(el("ul", {}, treeNode(tree.root, run.run_id)));
  }
  const errorBox = document.getElementById("run-error");
  errorBox.hidden = !(run.error && run.error.traceback);
  document.getElementById("run-traceback").textContent = run.error ? run.error.traceback : "";

  document.getElementById("timeline-box").replaceChildren(drawTimeline(run));

  const versioned = run.steps.some((s) => s.version);  // a column only where code has versions
  document.querySelector('#steps th[data-col="version"]').hidden = !versioned;
  document.querySelector("#steps tbody").replaceChildren(...run.steps.map((s, i) => {
    let outcome;
    if (s.status === "failed" && s.error) {
      outcome = el("details", {}, el("summary", { class: "err" }, `${s.error.type}: ${s.error.message}`),
        el("pre", {}, s.error.traceback || ""));
    } else if (s.kind === "sleep" && s.until !== null) {
      outcome = el("span", { title: s.until_iso }, `until ${fmtTime(s.until)}`);
    } else {
      outcome = s.result_preview;
      if (s.failed_attempts > 0) {
        outcome = `${s.result_preview}  (after ${s.failed_attempts} failed attempt(s))`;
      }
    }
    return el("tr", { "data-key": s.key }, el("td", {}, i + 1), el("td", { class: "mono" }, s.key),
      el("td", { class: "mono" }, s.task), el("td", {}, badge(s.status)), el("td", {}, s.attempts),
      el("td", {}, "+" + fmtDur(Math.max(0, s.started_at - run.start))), el("td", {}, fmtDur(s.duration)),
      ...(versioned ? [el("td", { class: "mono", "data-col": "version" }, s.version || "-")] : []),
      el("td", { class: "mono" }, outcome));
  }));
  renderOutputs(run);
  document.querySelector("#signals tbody").replaceChildren(...run.signals.map((g) =>
    el("tr", {}, el("td", {}, g.seq), el("td", { class: "mono" }, g.name),
      el("td", { class: "mono" }, g.delivery_id || "-"), el("td", {}, fmtTime(g.sent_at)),
      el("td", { class: "mono" }, g.payload_preview))));
  document.title = `${run.run_id} \u00b7 durable`;
  refreshed(run.observed_at);
}

// Events (latest value per key) and streams (key, items, closed): null on a store without them.
function renderOutputs(run) {
  const box = document.getElementById("outputs");
  box.hidden = run.events === null && run.streams === null;
  if (box.hidden) return;
  const events = Object.keys(run.events || {}).sort();
  document.getElementById("events-empty").hidden = events.length > 0;
  document.querySelector("#events tbody").replaceChildren(...events.map((key) =>
    el("tr", { "data-event": key }, el("td", { class: "mono" }, key),
      el("td", { class: "mono" }, run.event_previews[key]))));
  const streams = run.streams || [];
  document.getElementById("streams-empty").hidden = streams.length > 0;
  document.querySelector("#streams tbody").replaceChildren(...streams.map((st) =>
    el("tr", { "data-stream": st.key }, el("td", { class: "mono" }, st.key), el("td", {}, st.items),
      el("td", {}, st.closed ? "closed" : "open"))));
}

function treeNode(node, current) {
  const detail = statusDetail(node);
  const item = el("li", { "data-run-id": node.run_id, class: node.run_id === current ? "current" : "" },
    el("span", { class: "node" }, el("a", { href: runHref(node.run_id), class: "mono" }, node.run_id), " ",
      el("span", { class: "muted" }, node.workflow), " ", badge(node.status),
      ...(detail ? [el("span", { class: "detail" }, detail)] : [])));
  if (node.children.length) item.append(el("ul", {}, ...node.children.map((c) => treeNode(c, current))));
  return item;
}

function showActions(run) {
  const box = document.getElementById("actions");
  box.hidden = !config.actions;
  if (!config.actions) return;
  box.setAttribute("data-run-id", run.run_id);
  const final = ["completed", "cancelled"].includes(run.status);
  document.querySelector("#action-cancel button").disabled = final || run.cancel_requested;
  document.querySelector("#action-resume button").disabled = !["failed", "cancelled"].includes(run.status);
  document.querySelector("#action-signal button").disabled = ["completed", "failed", "cancelled"]
    .includes(run.status);
}

async function submitAction(event) {
  event.preventDefault();
  const form = event.target;
  const body = new URLSearchParams(new FormData(form));
  body.set("run_id", document.getElementById("actions").getAttribute("data-run-id"));
  const result = document.getElementById("action-result");
  let data;
  try {
    const response = await fetch("/api/action", { method: "POST", body, cache: "no-store" });
    data = await response.json();
    data.ok = response.ok && data.ok;
    if (!response.ok) data.message = data.error || response.statusText;
  } catch (err) {
    data = { ok: false, message: String(err.message || err) };
  }
  result.hidden = false;
  result.className = data.ok ? "ok" : "refused";
  result.textContent = data.message;
  countsCache.at = 0;  // the action changed a status
  await refresh();
}

async function refresh() {
  const id = currentRun();
  document.getElementById("list-view").hidden = id !== null;
  document.getElementById("run-view").hidden = id === null;
  try {
    if (id === null) { document.title = "durable runs"; await renderList(); } else {
      document.getElementById("action-result").hidden = document.getElementById("actions")
        .getAttribute("data-run-id") !== id;
      await renderRun(id);
    }
    problem(null);
  } catch (err) {
    problem(String(err.message || err));
  }
}

function schedule() {
  if (timer !== null) clearInterval(timer);
  timer = setInterval(refresh, Math.max(config.poll_interval, 0.2) * 1000);
}

async function boot() {
  try { config = await getJSON("/api/config"); } catch (err) { problem(String(err.message || err)); }
  document.getElementById("store").textContent = config.store || "";
  const select = document.getElementById("filter-status");
  for (const s of config.statuses) select.append(el("option", { value: s }, s));
  for (const name of FILTERS) document.getElementById("filter-" + name).addEventListener("input", filtersChanged);
  for (const form of document.querySelectorAll("form.action")) {
    form.elements.token.value = config.token || "";
    form.addEventListener("submit", submitAction);
  }
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
  window.addEventListener("hashchange", refresh);
  await refresh();
  schedule();
}
boot();
