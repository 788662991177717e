"""The worker side: the Workflow a worker serves, whose runs write a reply's tokens to stream "events".

    durable worker streaming_agent.agent:wf --store sqlite:///streaming.db

Each token becomes one item of the run's durable stream ``"events"``, shaped like pydantic-ai's
own events (``{"event_kind": "part_start" | "part_delta", ...}``), and the stream is closed at
the end, so a reader (the web app's SSE endpoint) ends with it. Set ``STREAMING_AGENT_HANG=N`` to
make a worker hang before token N (the tests kill it there).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from durable import Workflow

STREAM = "events"
REPLY = (
    "Durable streams keep every token: a worker killed mid-reply is replaced, "
    "and a browser that reconnects resumes exactly where it stopped."
)
TOKEN_CHARS = 6
PACE = float(os.environ.get("STREAMING_AGENT_PACE", "0.02"))
"""Seconds between tokens, so a reader sees them arrive one by one."""

# The store comes from $DURABLE_STORE (`durable worker --store URL` sets it for the worker).
wf = Workflow(
    "streaming-agent", db=os.environ.get("DURABLE_STORE", "sqlite:///streaming.db"), lease_seconds=2.0
)


def tokens(text: str = REPLY) -> list[str]:
    return [text[i : i + TOKEN_CHARS] for i in range(0, len(text), TOKEN_CHARS)]


def note(line: str) -> None:
    """One line in ``$STREAMING_AGENT_LOG`` (if set): what each process did, for the tests."""
    log = os.environ.get("STREAMING_AGENT_LOG")
    if log:
        with Path(log).open("a") as fh:
            fh.write(f"[pid {os.getpid()}] {line}\n")


def text_event(index: int, token: str) -> dict[str, Any]:
    """A text token as pydantic-ai's event JSON: the first starts the part, the others extend it."""
    if index == 0:
        return {"event_kind": "part_start", "index": 0, "part": {"part_kind": "text", "content": token}}
    return {
        "event_kind": "part_delta",
        "index": 0,
        "delta": {"part_delta_kind": "text", "content_delta": token},
    }


@wf.task
async def next_token(prompt: str, index: int) -> str | None:
    """Token ``index`` of the reply (``None`` past the end): one checkpointed step each."""
    reply = tokens()
    if index >= len(reply):
        return None
    hang = os.environ.get("STREAMING_AGENT_HANG")
    if hang is not None and index == int(hang):
        note(f"hangs before token {index}")
        await asyncio.sleep(3600)  # until the worker is killed
    await asyncio.sleep(PACE)
    note(f"token {index}")
    return reply[index]


@wf.workflow(id="chat-{chat_id}")
async def chat(chat_id: str, prompt: str) -> str:
    reply, index = "", 0
    while (token := await next_token(prompt, index)) is not None:
        # From the workflow body: exactly once per run, a replay after a crash writes nothing again.
        await wf.write_stream(STREAM, text_event(index, token))
        reply, index = reply + token, index + 1
    await wf.close_stream(STREAM)
    return reply


async def start_chat(chat_id: str, prompt: str) -> str:
    """Record the run for a worker; returns its id at once."""
    return await chat.start(chat_id=chat_id, prompt=prompt)
