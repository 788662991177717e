"""The worker side: a durable pydantic-ai agent whose runs write their events to stream "events".

    durable worker streaming_agent.agent:wf --store sqlite:///streaming.db

The model is pydantic-ai's ``FunctionModel`` with a ``stream_function`` (offline, no key): it
streams a fixed reply a few characters at a time. ``DurableAgent(..., stream_events=True)`` makes
every run (a worker's too) stream its model requests and append each pydantic-ai event to the run's
durable stream ``"events"`` as its JSON (``{"event_kind": "part_start" | "part_delta" | ...}``),
exactly once: a request executed again after a crash re-appends nothing it had appended. Set
``STREAMING_AGENT_HANG=N`` to make the model hang before token N (the tests kill that worker there).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic_ai import Agent, models
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel

from durable import Workflow
from durable.pydantic_ai import DurableAgent

models.ALLOW_MODEL_REQUESTS = False  # offline: no real provider can be reached

STREAM = "events"
REPLY = (
    "Durable streams keep every token: a worker killed mid-reply is replaced, "
    "and a browser that reconnects resumes exactly where it stopped."
)
TOKEN_CHARS = 6
PACE = float(os.environ.get("STREAMING_AGENT_PACE", "0.02"))
"""Seconds between tokens, so a reader sees them arrive one by one."""


def tokens(text: str = REPLY) -> list[str]:
    return [text[i : i + TOKEN_CHARS] for i in range(0, len(text), TOKEN_CHARS)]


def note(line: str) -> None:
    """One line in ``$STREAMING_AGENT_LOG`` (if set): what each process did, for the tests."""
    log = os.environ.get("STREAMING_AGENT_LOG")
    if log:
        with Path(log).open("a") as fh:
            fh.write(f"[pid {os.getpid()}] {line}\n")


async def stream_reply(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    """The model: ``REPLY``, token by token."""
    hang = os.environ.get("STREAMING_AGENT_HANG")
    for i, token in enumerate(tokens()):
        if hang is not None and i == int(hang):
            note(f"hangs before token {i}")
            await asyncio.sleep(3600)  # until the worker is killed
        await asyncio.sleep(PACE)
        note(f"token {i}")
        yield token


# The store comes from $DURABLE_STORE (`durable worker --store URL` names it for the worker).
STORE = os.environ.get("DURABLE_STORE", "sqlite:///streaming.db")
wf = Workflow("streaming-agent", db=STORE, lease_seconds=2.0)
agent = Agent(FunctionModel(stream_function=stream_reply), name="streamer")
durable_agent = DurableAgent(agent, wf, stream_events=True, events_stream=STREAM)


async def start_chat(chat_id: str, prompt: str) -> str:
    """Record the agent run for a worker; returns its id at once."""
    return await durable_agent.start(prompt, run_id=f"chat-{chat_id}")
