"""A client without a browser: read a chat's SSE relay, and resume it as ``EventSource`` would.

``events(base_url, run_id, last_id=None)`` yields ``(offset, event)`` for each message and stops at
the ``end`` message (``("end", {"status": ...})``) or when the connection drops; calling it again
with ``last_id=`` the last offset seen sends ``Last-Event-ID`` and continues right after it.
Standard library only (``http.client``), blocking.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit


def start(base_url: str, prompt: str) -> str:
    """``POST /chats``: the new run's id."""
    request = urllib.request.Request(
        base_url.rstrip("/") + "/chats",
        data=json.dumps({"prompt": prompt}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        run_id: str = json.load(response)["run_id"]
        return run_id


def events(base_url: str, run_id: str, last_id: int | None = None) -> Iterator[tuple[int | str, Any]]:
    """The chat's messages from after ``last_id`` on, as ``(offset, event)``, then ``("end", ...)``."""
    parts = urlsplit(base_url)
    connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    try:
        connection.request("GET", f"/chats/{run_id}/events", headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET events of {run_id!r}: HTTP {response.status}: {response.read()!r}")
        fields: dict[str, str] = {}
        for raw in response:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "data" in fields:  # a blank line ends a message
                data = json.loads(fields["data"])
                if fields.get("event") == "end":
                    yield "end", data
                    return
                yield int(fields["id"]), data
            fields = {}
    finally:
        connection.close()


def text_of(event: Any) -> str:
    """The text a pydantic-ai event adds to the reply (``""`` for other events)."""
    if event.get("event_kind") == "part_start" and event["part"].get("part_kind") == "text":
        return str(event["part"]["content"])
    if event.get("event_kind") == "part_delta" and event["delta"].get("part_delta_kind") == "text":
        return str(event["delta"]["content_delta"])
    return ""
