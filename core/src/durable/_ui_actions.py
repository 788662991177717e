"""``durable ui --allow-actions``: cancel, resume and signal a run from the page.

A request changes the store only if all of these hold (``ActionGuard.refusal``):

- the server was started with ``allow_actions`` (``durable ui --allow-actions``);
- it is a ``POST`` of a form whose ``token`` field is this process's token: a random value made
  at start, given to the page by ``GET /api/config``, which another site cannot read (the
  browser keeps other origins' answers from it);
- its ``Origin`` header is this server's own origin: ``http://`` or ``https://`` followed by the
  request's ``Host`` exactly (``https``: the page was reached through a TLS proxy that passes the
  ``Host`` on), or a name given with ``--allowed-host`` (a proxy that sends its own ``Host``,
  such as ``127.0.0.1:8765``, while the browser's page is ``https://durable.example.com``); and
  ``Sec-Fetch-Site``, when the browser sends it, says ``same-origin``.

``X-Forwarded-Host`` and ``X-Forwarded-Proto`` are not read: anything that reaches the port may set
them, and the two rules above need no trust in a proxy.

Every action, done or refused, is logged on the ``durable.ui`` logger with the client address.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from durable import _inspect
from durable._records import RunStatus
from durable.errors import UnknownRunError
from durable.workflow import Workflow

log = logging.getLogger("durable.ui")

ACTIONS = ("cancel", "resume", "signal")
MAX_FORM_BYTES = 1_000_000
"""A form (a signal's JSON payload, mostly) larger than this is refused (413)."""


class ActionRefused(Exception):
    """A request that may not act; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ActionGuard:
    """Decides whether a POST may act: the flag, the token, the Origin."""

    def __init__(self, allowed: bool, origin_hosts: Iterable[str] = ()) -> None:
        self.allowed = allowed
        self.token = secrets.token_urlsafe(32)
        """This process's token; the page reads it from ``/api/config``."""
        self.origin_hosts = frozenset(name.lower() for name in origin_hosts)
        """Host names (``--allowed-host``) whose pages may act whatever ``Host`` a proxy sends."""

    def origin_allowed(self, origin: str | None, host: str) -> bool:
        """Whether ``Origin`` names this server: ``http(s)://`` and the request's ``Host``, or an
        allowed host name (any port)."""
        if origin is None:
            return False
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or not rest or "/" in rest:
            return False
        if rest.lower() == host.strip().lower():
            return True
        try:
            name = urlsplit(origin).hostname
        except ValueError:
            return False
        return name is not None and name in self.origin_hosts

    def refusal(self, headers: Any, form: dict[str, list[str]]) -> ActionRefused | None:
        if not self.allowed:
            return ActionRefused(403, "actions are off: start durable ui with --allow-actions")
        host = headers.get("Host", "")
        origin = headers.get("Origin")
        if not self.origin_allowed(origin, host):
            return ActionRefused(403, f"cross-site request refused (Origin {str(origin)[:80]!r})")
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site != "same-origin":
            return ActionRefused(403, f"cross-site request refused (Sec-Fetch-Site {site[:40]!r})")
        given = (form.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return ActionRefused(403, "missing or wrong action token (reload the page)")
        return None


def _field(form: dict[str, list[str]], name: str, *, required: bool = True) -> str:
    value = (form.get(name) or [""])[0]
    if required and not value:
        raise ValueError(f"the action needs a {name!r} field")
    return value


async def act(wf: Workflow, form: dict[str, list[str]]) -> dict[str, Any]:
    """Do the action a checked form asks for; returns ``{"ok", "message", "run"}``.

    Raises ``ValueError`` for a malformed form, ``UnknownRunError`` for an unknown run."""
    action = _field(form, "action")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action[:40]!r}; choose from {', '.join(ACTIONS)}")
    run_id = _field(form, "run_id")
    store = await wf.get_store()
    before = await store.get_run(run_id)
    if before is None:
        raise UnknownRunError(f"cannot {action}: no run {run_id!r} in {store!r}", run_id=run_id)
    ok = True
    if action == "cancel":
        if before.status is RunStatus.COMPLETED:
            ok, message = False, f"run {run_id!r} is already completed; there is nothing to cancel"
        elif before.status is RunStatus.CANCELLED:
            ok, message = False, f"run {run_id!r} was already cancelled"
        else:
            after = await wf.cancel(run_id)
            message = (
                f"run {run_id!r} cancelled"
                if after.status is RunStatus.CANCELLED
                else f"cancel requested for run {run_id!r}: its executor stops it at its next lease renewal"
            )
    elif action == "resume":
        _, reset = await _inspect.resume_run(store, run_id)
        ok = reset
        message = (
            f"run {run_id!r} reset to pending: a worker for workflow {before.workflow!r} resumes it"
            if reset
            else f"run {run_id!r} is {before.status}, not failed or cancelled; left unchanged"
        )
    else:
        name = _field(form, "name")
        text = _field(form, "payload", required=False) or "null"
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the signal payload is not valid JSON ({exc}): {text[:80]!r}") from None
        delivery_id = _field(form, "delivery_id", required=False)
        ok = await wf.complete(run_id, name, payload, delivery_id=delivery_id)
        message = (
            f"signal {name!r} delivered to run {run_id!r}"
            if ok
            else f"signal {name!r} with delivery id {delivery_id!r} was already delivered to run {run_id!r}"
        )
    after_run = await store.get_run(run_id)
    summary = None if after_run is None else _inspect.RunSummary.of(after_run).to_json()
    return {"ok": ok, "action": action, "run_id": run_id, "message": message, "run": summary}
