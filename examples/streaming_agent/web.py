"""The web side: start a run, and relay its stream "events" to the browser as Server-Sent Events.

    uvicorn streaming_agent.web:app            # DURABLE_STORE names the store the workers use

``POST /chats`` (JSON ``{"prompt": ...}``) records a run for a worker and answers its id at once.
``GET /chats/{run_id}/events`` relays ``wf.read_stream(run_id, "events", offset=...)``: each item is
one SSE message whose ``id:`` is its offset. A browser's ``EventSource`` that loses the connection
reconnects with ``Last-Event-ID: <last offset>``, and the relay resumes at the next offset: nothing
lost, nothing twice (``?offset=N`` does the same for a client without the header). When the stream
ends (closed, or the run finished) an ``end`` event says how the run stands, and the page closes
its ``EventSource`` (else it would reconnect). ``GET /`` is the page (``page.html``).

No keep-alive comments are sent while the model is silent: a proxy that drops an idle connection
only makes the browser reconnect, and it resumes after its last id like any other reconnect.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from pydantic_core import to_jsonable_python
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from durable.errors import UnknownRunError
from streaming_agent.agent import STREAM, start_chat, wf

PAGE = files("streaming_agent").joinpath("page.html").read_text(encoding="utf-8")


def sse(data: Any, *, event: str | None = None, id: int | None = None) -> bytes:
    """One Server-Sent Events message (data as one line of JSON)."""
    head = "" if event is None else f"event: {event}\n"
    head += "" if id is None else f"id: {id}\n"
    return f"{head}data: {json.dumps(to_jsonable_python(data), ensure_ascii=False)}\n\n".encode()


def first_offset(request: Request) -> int:
    """Where to resume: after the ``Last-Event-ID`` a reconnecting browser sends, else ``?offset=``."""
    last = request.headers.get("last-event-id", "").strip()
    if last.isdigit():
        return int(last) + 1
    offset = request.query_params.get("offset", "0")
    return int(offset) if offset.isdigit() else 0


async def index(request: Request) -> Response:
    return HTMLResponse(PAGE)


async def new_chat(request: Request) -> Response:
    body = await request.json()
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompt, str) or not prompt:
        return JSONResponse({"error": "send {'prompt': '...'}"}, status_code=400)
    run_id = await start_chat(uuid.uuid4().hex[:12], prompt)
    return JSONResponse({"run_id": run_id})


async def chat_events(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    offset = first_offset(request)
    if await wf.get_run(run_id) is None:
        return JSONResponse({"error": f"no run {run_id!r}"}, status_code=404)

    async def relay() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"  # a dropped connection is retried after a second
        try:
            async for at, event in wf.read_stream(run_id, STREAM, offset=offset):
                yield sse(event, id=at)
        except UnknownRunError:  # deleted meanwhile
            yield sse({"status": "deleted"}, event="end")
            return
        run = await wf.get_run(run_id)
        yield sse({"status": None if run is None else str(run.status)}, event="end")

    # No buffering anywhere on the way: each token is sent as it is read.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with wf:  # the store is opened on the server's event loop, and closed with it
        yield


app = Starlette(
    routes=[
        Route("/", index),
        Route("/chats", new_chat, methods=["POST"]),
        Route("/chats/{run_id}/events", chat_events),
    ],
    lifespan=lifespan,
)
