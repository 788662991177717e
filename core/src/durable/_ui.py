"""``durable ui``: a web page of runs and step timelines, standard library only.

The store lives on one asyncio loop in a background thread (stores belong to the loop
that opened them); ``ThreadingHTTPServer`` handler threads submit coroutines to it.
The page is static files (``durable/ui/``: index.html, app.js, style.css, package data)
that poll JSON endpoints (``_ui_api`` parses their parameters):

- ``GET /api/runs?status=S&workflow=W&prefix=P&version=V&since=T&until=T&limit=N`` (and
  ``&after_created=T&after_id=ID``): a page of runs, newest first, with ``next``, the cursor of
  the following page (keyset paging);
- ``GET /api/counts?...``: runs per reported status under the same filters (at most 10,000 read);
- ``GET /api/run?id=RUN_ID`` (404 for an unknown run): its record, steps, signals, child runs,
  version and the versions that executed it, a fork's origin, its events and streams. Values
  (inputs, result, step results, signal payloads) stored as more than 64 kB of JSON are left
  out: ``null``, listed in the answer's ``omitted`` (``"inputs"``, ``"steps[2].result"``, ...),
  their ``*_preview`` cut and saying their size;
- ``GET /api/tree?id=RUN_ID``: the parent/child tree the run belongs to;
- ``POST /api/action`` (only with ``allow_actions``; see ``_ui_actions`` for the token and
  Origin checks): cancel, resume, or deliver a signal with a JSON payload.

Answers are strict JSON: NaN, Infinity and -Infinity, legal in stored values, are sent as the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.

Without ``allow_actions`` nothing writes to the store. Requests whose ``Host`` header names
another host than ``localhost``, an IP address, the ``host`` listened on or one of
``allowed_hosts`` are refused, whatever the interface (``0.0.0.0`` included), so a web page on
another site cannot read runs through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Coroutine, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from durable import _inspect, _ui_actions, _ui_api
from durable._plugins import as_store_url, get_plugin_manager
from durable._records import RunStatus
from durable._ui_api import first
from durable.errors import DurableError, UnknownRunError
from durable.store import Store, redact_text
from durable.workflow import Workflow

__all__ = ["UIServer"]

T = TypeVar("T")

MAX_LIMIT = _ui_api.MAX_LIMIT
DEFAULT_LIMIT = _ui_api.DEFAULT_LIMIT
REQUEST_TIMEOUT = 30.0
_LOCAL_NAMES = frozenset({"localhost"})
_ANY_INTERFACE = frozenset({"", "0.0.0.0", "::"})
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("style.css", "text/css; charset=utf-8"),
}


def static_file(name: str) -> bytes:
    """One of the page's files, package data in ``durable/ui/``."""
    return files("durable").joinpath("ui", name).read_bytes()


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
        allow_actions: bool = False,
        page_size: int = 50,
    ) -> None:
        self.store_url = as_store_url(store_url)
        self.host = host
        self.port = port
        self.poll_interval = poll_interval
        self.page_size = min(max(page_size, 1), MAX_LIMIT)
        names = {_host_name(name) for name in allowed_hosts}
        given = frozenset(names)
        if host not in _ANY_INTERFACE:
            names.add(_host_name(host))
        self.allowed_hosts: frozenset[str] = frozenset(names) | _LOCAL_NAMES
        """Names a request's ``Host`` header may give besides IP addresses (lower case)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._store: Store | None = None
        self._wf: Workflow | None = None
        self.actions = _ui_actions.ActionGuard(allow_actions, given)
        """Whether and how a POST may cancel, resume or signal runs (the flag and the token)."""
        self._static = {path: (static_file(name), kind) for path, (name, kind) in _STATIC.items()}
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
            self._wf = Workflow("durable-ui", db=self._store)
            self.call(self._bind_workflow(self._wf))
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
        loop, store, wf = self._loop, self._store, self._wf
        if loop is not None:
            if store is not None:
                try:
                    self.call(wf.close() if wf is not None else store.close())
                except Exception:  # closing is best effort on the way out
                    pass
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5)
            loop.close()
        self._loop = self._loop_thread = self._store = self._wf = None
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

    @staticmethod
    async def _bind_workflow(wf: Workflow) -> None:
        # The store is open on this loop already: the Workflow must not open it again.
        wf._opened_on = asyncio.get_running_loop()

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
        return self.call(_ui_api.runs_page(self._require_store(), _ui_api.parse_query(params)))

    def counts_json(self, params: dict[str, list[str]]) -> dict[str, Any]:
        return self.call(_ui_api.status_counts(self._require_store(), _ui_api.parse_query(params)))

    def tree_json(self, run_id: str) -> dict[str, Any]:
        return self.call(_ui_api.family_tree(self._require_store(), run_id))

    def run_json(self, run_id: str) -> dict[str, Any]:
        timeline = _inspect.load_timeline(self._require_store(), run_id, max_value=_inspect.DISPLAY_LIMIT)
        return self.call(timeline).to_json()

    def act_json(self, form: dict[str, list[str]]) -> dict[str, Any]:
        if self._wf is None:
            raise RuntimeError("the UI server is not running")
        return self.call(_ui_actions.act(self._wf, form))

    def config_json(self) -> dict[str, Any]:
        return {
            "store": _inspect.redact_url(self.store_url),
            "poll_interval": self.poll_interval,
            "page_size": self.page_size,
            "statuses": [str(s) for s in RunStatus],
            "actions": self.actions.allowed,
            # Only a page of this origin can read it (the browser keeps it from other sites).
            "token": self.actions.token if self.actions.allowed else None,
        }


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
            if not server.host_allowed(self.headers.get("Host", "")):
                self._send_json(HTTPStatus.FORBIDDEN, {"error": "unexpected Host header"})
                return
            parts = urlsplit(self.path)
            params = parse_qs(parts.query)
            static = server._static.get(parts.path)
            if static is not None:
                self._send(HTTPStatus.OK, static[1], static[0])
                return
            answers = {
                "/api/config": lambda: server.config_json(),
                "/api/runs": lambda: server.runs_json(params),
                "/api/counts": lambda: server.counts_json(params),
                "/api/run": lambda: server.run_json(self._run_id(params)),
                "/api/tree": lambda: server.tree_json(self._run_id(params)),
            }
            answer = answers.get(parts.path)
            if answer is None:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {parts.path}"})
                return
            self._answer(answer)

        def do_POST(self) -> None:
            client = self.client_address[0]
            if not server.host_allowed(self.headers.get("Host", "")):
                _ui_actions.log.warning("action refused from %s: unexpected Host header", client)
                self._send_json(HTTPStatus.FORBIDDEN, {"error": "unexpected Host header"})
                return
            if urlsplit(self.path).path != "/api/action":
                # Only actions are posted; everything else is read with GET.
                self._send_json(HTTPStatus.NOT_IMPLEMENTED, {"error": "only /api/action takes a POST"})
                return
            try:
                size = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                size = -1
            if not 0 <= size <= _ui_actions.MAX_FORM_BYTES:
                _ui_actions.log.warning("action refused from %s: form of %s bytes", client, size)
                self.close_connection = True
                self._send_json(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    {"error": f"an action form is at most {_ui_actions.MAX_FORM_BYTES} bytes"},
                )
                return
            kind = self.headers.get("Content-Type", "").partition(";")[0].strip()
            body = self.rfile.read(size)
            if kind != "application/x-www-form-urlencoded":
                self._send_json(HTTPStatus.BAD_REQUEST, {"error": "an action is a url-encoded form"})
                return
            try:
                form = parse_qs(body.decode(), keep_blank_values=True)
            except UnicodeDecodeError:
                self._send_json(HTTPStatus.BAD_REQUEST, {"error": "an action form is UTF-8"})
                return
            what = f"{first(form, 'action')!r} on run {first(form, 'run_id')!r}"
            refused = server.actions.refusal(self.headers, form)
            if refused is not None:
                _ui_actions.log.warning("action %s refused from %s: %s", what, client, refused)
                self._send_json(HTTPStatus(refused.status), {"error": str(refused)})
                return
            _ui_actions.log.info("action %s from %s", what, client)
            outcome = self._answer(lambda: server.act_json(form))
            _ui_actions.log.info("action %s from %s: %s", what, client, outcome)

        def _run_id(self, params: dict[str, list[str]]) -> str:
            run_id = first(params, "id")
            if not run_id:
                raise ValueError("missing ?id=RUN_ID")
            return run_id

        def _answer(self, answer: Any) -> str:
            """Send ``answer()`` as JSON, or the error it raises; returns what was sent, in short."""
            try:
                data = answer()
            except UnknownRunError as exc:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
                return str(exc)
            except ValueError as exc:
                self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return str(exc)
            except (DurableError, TimeoutError, OSError) as exc:
                message = redact_text(f"{type(exc).__name__}: {exc}", server.store_url)
                self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": message})
                return message
            self._send_json(HTTPStatus.OK, data)
            return str(data.get("message", "ok")) if isinstance(data, dict) else "ok"

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
