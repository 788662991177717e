"""``durable ui``: a read-only web page of runs and step timelines, standard library only.

The store lives on one asyncio loop in a background thread (stores belong to the loop
that opened them); ``ThreadingHTTPServer`` handler threads submit coroutines to it.
The page is static HTML plus a script that polls two JSON endpoints:

- ``GET /api/runs?status=S&workflow=W&prefix=P&limit=N&offset=N`` (``limit`` from 1 to
  1000, larger ones give 1000; default 100. A ``limit`` below 1, a negative ``offset`` or one
  that is not an integer is answered 400)
- ``GET /api/run?id=RUN_ID`` (404 for an unknown run). Values (inputs, result, step results,
  signal payloads) stored as more than 64 kB of JSON are left out: ``null``, listed in the
  answer's ``omitted`` (``"inputs"``, ``"steps[2].result"``, ...), their ``*_preview`` cut and
  saying their size.

Answers are strict JSON: NaN, Infinity and -Infinity, legal in stored values, are sent as the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.

Nothing writes to the store. Requests whose ``Host`` header names another host than
``localhost``, an IP address, the ``host`` listened on or one of ``allowed_hosts`` are refused,
whatever the interface (``0.0.0.0`` included), so a web page on another site cannot read runs
through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections.abc import Coroutine, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from durable import _inspect
from durable._plugins import as_store_url, get_plugin_manager
from durable._records import RunQuery, RunStatus
from durable.errors import DurableError, UnknownRunError
from durable.store import Store, redact_text

__all__ = ["UIServer"]

T = TypeVar("T")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
REQUEST_TIMEOUT = 30.0
_LOCAL_NAMES = frozenset({"localhost"})
_ANY_INTERFACE = frozenset({"", "0.0.0.0", "::"})


class UIServer:
    """Serves the run viewer for one store until ``stop()``."""

    def __init__(
        self,
        store_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        poll_interval: float = 2.0,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.store_url = as_store_url(store_url)
        self.host = host
        self.port = port
        self.poll_interval = poll_interval
        names = {_host_name(name) for name in allowed_hosts}
        if host not in _ANY_INTERFACE:
            names.add(_host_name(host))
        self.allowed_hosts: frozenset[str] = frozenset(names) | _LOCAL_NAMES
        """Names a request's ``Host`` header may give besides IP addresses (lower case)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._store: Store | None = None
        self._stopped = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the store and start listening; returns at once (see ``url``)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._loop_thread = threading.Thread(target=loop.run_forever, name="durable-ui-store", daemon=True)
        self._loop_thread.start()
        try:
            self._store = get_plugin_manager().store_from_url(self.store_url)
            self.call(self._store.open())
            self._http = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        except BaseException:
            self.stop()
            raise
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="durable-ui-http", daemon=True
        )
        self._http_thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}/"

    def request_stop(self) -> None:
        """Make ``wait()`` return (safe from a signal handler)."""
        self._stopped.set()

    def wait(self) -> None:
        # Wake up regularly so Ctrl+C reaches the main thread.
        while not self._stopped.wait(0.5):
            pass

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None
        loop, store = self._loop, self._store
        if loop is not None:
            if store is not None:
                try:
                    self.call(store.close())
                except Exception:  # closing is best effort on the way out
                    pass
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5)
            loop.close()
        self._loop = self._loop_thread = self._store = None
        self._stopped.set()

    def __enter__(self) -> UIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the store's loop and wait for its result (from any thread)."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the UI server is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=REQUEST_TIMEOUT)

    # -- data --------------------------------------------------------------------------

    def _require_store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the UI server is not running")
        return self._store

    def host_allowed(self, header: str) -> bool:
        """Whether a request with this ``Host`` header is answered: an IP address (a page on
        another site cannot make a browser send one), ``localhost``, or an allowed name."""
        name = _host_name(header)
        if name in self.allowed_hosts:
            return True
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return True

    def runs_json(self, params: dict[str, list[str]]) -> dict[str, Any]:
        statuses = frozenset(RunStatus(s) for s in params.get("status", []) if s)
        limit = min(_integer(params, "limit", DEFAULT_LIMIT, minimum=1), MAX_LIMIT)
        offset = _integer(params, "offset", 0, minimum=0)
        query = RunQuery(
            statuses=statuses or None,
            workflow=_first(params, "workflow") or None,
            id_prefix=_first(params, "prefix") or None,
            limit=limit,
            offset=offset,
        )
        store = self._require_store()

        async def summaries() -> list[_inspect.RunSummary]:
            return await _inspect.summarize(store, await _inspect.list_reported(store, query))

        runs = self.call(summaries())
        return {
            "runs": [r.to_json() for r in runs],
            "limit": limit,
            "offset": offset,
            "observed_at": time.time(),
        }

    def run_json(self, run_id: str) -> dict[str, Any]:
        timeline = _inspect.load_timeline(self._require_store(), run_id, max_value=_inspect.DISPLAY_LIMIT)
        return self.call(timeline).to_json()

    def config_json(self) -> dict[str, Any]:
        return {
            "store": _inspect.redact_url(self.store_url),
            "poll_interval": self.poll_interval,
            "statuses": [str(s) for s in RunStatus],
        }


def _first(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _integer(params: dict[str, list[str]], name: str, default: int, *, minimum: int) -> int:
    text = _first(params, name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"?{name}= must be an integer, got {text[:40]!r}") from None
    if value < minimum:
        raise ValueError(f"?{name}= must be at least {minimum}, got {value}")
    return value


def _host_name(header: str) -> str:
    """The host of a ``Host`` header (or of a name given to allow): without its port, in lower
    case, ``[::1]`` for an IPv6 address."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.partition("]")[0] + "]"
    if header.count(":") > 1:  # a bare IPv6 address, as --host takes it
        return f"[{header}]"
    return header.partition(":")[0].rstrip(".")


def _handler_for(server: UIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "durable-ui"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a page polling every two seconds would flood the terminal

        def do_GET(self) -> None:
            header = self.headers.get("Host", "")
            if not server.host_allowed(header):
                self._send_json(HTTPStatus.FORBIDDEN, {"error": "unexpected Host header"})
                return
            parts = urlsplit(self.path)
            params = parse_qs(parts.query)
            try:
                if parts.path in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE.encode())
                elif parts.path == "/app.js":
                    self._send(HTTPStatus.OK, "text/javascript; charset=utf-8", SCRIPT.encode())
                elif parts.path == "/app.css":
                    self._send(HTTPStatus.OK, "text/css; charset=utf-8", STYLE.encode())
                elif parts.path == "/api/config":
                    self._send_json(HTTPStatus.OK, server.config_json())
                elif parts.path == "/api/runs":
                    self._send_json(HTTPStatus.OK, server.runs_json(params))
                elif parts.path == "/api/run":
                    run_id = _first(params, "id")
                    if not run_id:
                        self._send_json(HTTPStatus.BAD_REQUEST, {"error": "missing ?id=RUN_ID"})
                    else:
                        self._send_json(HTTPStatus.OK, server.run_json(run_id))
                else:
                    self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {parts.path}"})
            except UnknownRunError as exc:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
            except ValueError as exc:
                self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except (DurableError, TimeoutError, OSError) as exc:
                message = redact_text(f"{type(exc).__name__}: {exc}", server.store_url)
                self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": message})

        def _send_json(self, status: HTTPStatus, data: Any) -> None:
            body = _inspect.json_text(data).encode()
            self._send(status, "application/json; charset=utf-8", body)

        def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
                "frame-ancestors 'none'",
            )
            self.end_headers()
            self.wfile.write(body)

    return Handler


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>durable runs</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header>
  <a href="#" class="brand">durable</a>
  <span id="store" class="muted"></span>
  <span class="spacer"></span>
  <span id="refreshed" class="muted"></span>
</header>
<main>
  <section id="list-view" hidden>
    <form id="filters">
      <select id="filter-status"><option value="">any status</option></select>
      <input id="filter-workflow" placeholder="workflow" autocomplete="off">
      <input id="filter-prefix" placeholder="run id prefix" autocomplete="off">
    </form>
    <table id="runs" class="grid">
      <thead><tr><th>Run</th><th>Workflow</th><th>Status</th><th>Created</th><th>Updated</th>
      <th>Duration</th><th>Error</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="runs-empty" class="muted" hidden>No runs match.</p>
  </section>
  <section id="run-view" hidden>
    <p><a href="#">&larr; all runs</a></p>
    <h1><span id="run-id"></span> <span id="run-status" class="badge"></span></h1>
    <dl id="run-facts"></dl>
    <div id="run-error" hidden><h2>Error</h2><pre id="run-traceback"></pre></div>
    <h2>Timeline</h2>
    <div id="timeline-box"></div>
    <div class="legend">
      <span class="key completed"></span>completed <span class="key failed"></span>failed
      <span class="key signal"></span>signal wait <span class="key sleep"></span>sleep
      <span class="key child"></span>child run <span class="key retried"></span>had retries
    </div>
    <h2>Steps</h2>
    <table id="steps" class="grid">
      <thead><tr><th>#</th><th>Key</th><th>Task</th><th>Status</th><th>Attempts</th><th>Start</th>
      <th>Duration</th><th>Result / error</th></tr></thead>
      <tbody></tbody>
    </table>
    <h2>Signals</h2>
    <table id="signals" class="grid">
      <thead><tr><th>Seq</th><th>Name</th><th>Delivery id</th><th>Sent</th><th>Payload</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <p id="problem" class="problem" hidden></p>
</main>
<script src="/app.js"></script>
</body>
</html>
"""

STYLE = """
:root { --fg: #1d2329; --muted: #6b7580; --line: #e3e7ec; --bg: #fff; --head: #f6f8fa;
  --completed: #2f9e5b; --failed: #d64545; --running: #2d7fd3; --waiting: #7b61d9;
  --pending: #b36bc4; --cancelled: #d99a2b; --signal: #7b61d9; --sleep: #9aa5b1; --child: #2d7fd3;
  --interrupted: #b5473a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { display: flex; gap: 14px; align-items: baseline; padding: 10px 20px; background: var(--head);
  border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; font-size: 17px; color: var(--fg); text-decoration: none; }
.spacer { flex: 1; }
.muted { color: var(--muted); }
main { padding: 14px 20px 40px; max-width: 1200px; }
h1 { font-size: 20px; margin: 6px 0 12px; word-break: break-all; }
h2 { font-size: 15px; margin: 22px 0 8px; }
a { color: var(--running); }
table.grid { border-collapse: collapse; width: 100%; }
.grid th, .grid td { text-align: left; padding: 5px 10px 5px 0; border-bottom: 1px solid var(--line);
  vertical-align: top; }
.grid th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; }
.grid td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; word-break: break-all; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px;
  font-weight: 600; vertical-align: middle; background: var(--muted); }
.badge.completed { background: var(--completed); } .badge.failed { background: var(--failed); }
.badge.running { background: var(--running); } .badge.waiting { background: var(--waiting); }
.badge.pending { background: var(--pending); } .badge.cancelled { background: var(--cancelled); }
.badge.interrupted { background: var(--interrupted); } .badge.sleeping { background: var(--sleep); }
.detail { color: var(--muted); font-size: 12.5px; margin-left: 6px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; word-break: break-all; }
pre { background: #fbf3f3; border: 1px solid #f0d5d5; padding: 10px; overflow: auto; font-size: 12px;
  max-height: 320px; }
.err { color: var(--failed); }
form#filters { display: flex; gap: 8px; margin-bottom: 10px; }
form#filters input, form#filters select { padding: 4px 6px; font: inherit; }
#timeline-box { border: 1px solid var(--line); border-radius: 6px; padding: 6px 0; overflow-x: auto; }
svg#timeline { display: block; width: 100%; min-width: 640px; }
svg text { font-size: 12px; fill: var(--fg); }
svg .label { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
svg .axis text, svg .dur { fill: var(--muted); font-size: 11px; }
svg .grid-line { stroke: var(--line); }
svg .dur.inside { fill: #fff; }
svg g[data-row="run"] .dur.inside { fill: var(--fg); }
svg .now { stroke: var(--running); stroke-dasharray: 4 3; }
svg .bar { rx: 3; }
svg .bar.completed { fill: var(--completed); } svg .bar.failed { fill: var(--failed); }
svg .bar.signal { fill: var(--signal); } svg .bar.sleep { fill: var(--sleep); }
svg .bar.child { fill: var(--child); }
svg .bar.run { fill: var(--muted); opacity: .35; }
svg .bar.run.completed { fill: var(--completed); } svg .bar.run.failed { fill: var(--failed); }
svg .bar.run.cancelled { fill: var(--cancelled); }
svg .bar.run.interrupted { fill: var(--interrupted); }
svg .retried { stroke: var(--cancelled); stroke-width: 2; }
.legend { margin-top: 6px; color: var(--muted); font-size: 12px; }
.legend .key { display: inline-block; width: 12px; height: 10px; border-radius: 2px; margin: 0 4px 0 12px;
  vertical-align: middle; }
.legend .key:first-child { margin-left: 0; }
.key.completed { background: var(--completed); } .key.failed { background: var(--failed); }
.key.signal { background: var(--signal); } .key.sleep { background: var(--sleep); }
.key.child { background: var(--child); } .key.retried { border: 2px solid var(--cancelled); }
.problem { color: var(--failed); font-weight: 600; }
"""

SCRIPT = r"""
"use strict";
const SVG = "http://www.w3.org/2000/svg";
let config = { poll_interval: 2, statuses: [] };
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

async function renderList() {
  const params = new URLSearchParams({ limit: "200" });
  const status = document.getElementById("filter-status").value;
  const workflow = document.getElementById("filter-workflow").value.trim();
  const prefix = document.getElementById("filter-prefix").value.trim();
  if (status) params.append("status", status);
  if (workflow) params.set("workflow", workflow);
  if (prefix) params.set("prefix", prefix);
  const data = await getJSON("/api/runs?" + params);
  const body = document.querySelector("#runs tbody");
  body.replaceChildren(...data.runs.map((r) => {
    const end = r.ended_at !== null ? r.ended_at : data.observed_at;
    const error = r.error ? `${r.error.type.split(".").pop()}: ${r.error.message}` : "";
    const detail = statusDetail(r);
    const row = el("tr", { "data-run-id": r.run_id, "data-status": r.status },
      el("td", { class: "mono" }, el("a", { href: runHref(r.run_id) }, r.run_id)),
      el("td", {}, r.workflow),
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
  const errorBox = document.getElementById("run-error");
  errorBox.hidden = !(run.error && run.error.traceback);
  document.getElementById("run-traceback").textContent = run.error ? run.error.traceback : "";

  document.getElementById("timeline-box").replaceChildren(drawTimeline(run));

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
      el("td", { class: "mono" }, outcome));
  }));
  document.querySelector("#signals tbody").replaceChildren(...run.signals.map((g) =>
    el("tr", {}, el("td", {}, g.seq), el("td", { class: "mono" }, g.name),
      el("td", { class: "mono" }, g.delivery_id || "-"), el("td", {}, fmtTime(g.sent_at)),
      el("td", { class: "mono" }, g.payload_preview))));
  document.title = `${run.run_id} \u00b7 durable`;
  refreshed(run.observed_at);
}

async function refresh() {
  const id = currentRun();
  document.getElementById("list-view").hidden = id !== null;
  document.getElementById("run-view").hidden = id === null;
  try {
    if (id === null) { document.title = "durable runs"; await renderList(); } else { await renderRun(id); }
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
  for (const id of ["filter-status", "filter-workflow", "filter-prefix"]) {
    document.getElementById(id).addEventListener("input", refresh);
  }
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
  window.addEventListener("hashchange", refresh);
  await refresh();
  schedule();
}
boot();
"""
