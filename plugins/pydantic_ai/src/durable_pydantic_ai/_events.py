"""A streaming agent run's events, written to the durable stream ``"events"`` of its run.

Each item is the JSON of one pydantic-ai ``AgentStreamEvent`` exactly as
``TypeAdapter(AgentStreamEvent).dump_python(event, mode="json")`` gives it (``event_kind`` says
which: ``part_start``, ``part_delta``, ``part_end``, ``final_result``, ``function_tool_call``,
``function_tool_result``, ...; ``decode_event`` reads one back). After the agent run's last event
comes ``{"event_kind": "agent_run_result", "output": <the output as JSON>}``.

Exactly once per run, without a journal step per event: every append carries a ``write_id``
(``Store.append_stream`` makes it idempotent) derived from the journal. Model events are appended
live from inside the model request's step, as ``{step key}/{index in the response}``: a request
executed again after a crash (its checkpoint was never written) re-appends nothing it had
appended, only what comes after. The events pydantic-ai derives from recorded responses (tool
calls, tool results, final result) are appended from the run's body, keyed by the model request
they follow and their tool call id, so a replay appends none twice either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai.messages import AgentStreamEvent, PartDeltaEvent, PartEndEvent, PartStartEvent
from pydantic_core import to_jsonable_python

from durable import _codec
from durable.context import RunContext
from durable.store import Capability

__all__ = ["EVENTS_STREAM", "RUN_RESULT_KIND", "EventWriter", "decode_event", "encode_event", "is_unit_event"]

EVENTS_STREAM = "events"
"""The default name of the durable stream a streaming agent run writes its events to."""
RUN_RESULT_KIND = "agent_run_result"
"""``event_kind`` of the item that ends an agent run's events: ``{"event_kind": ..., "output": ...}``."""

_EVENT_ADAPTER: TypeAdapter[AgentStreamEvent] = TypeAdapter(AgentStreamEvent)
_UNIT_EVENTS = (PartStartEvent, PartDeltaEvent, PartEndEvent)


def encode_event(event: AgentStreamEvent) -> dict[str, Any]:
    """The stream item of ``event``: its JSON, with ``event_kind``."""
    item: dict[str, Any] = _EVENT_ADAPTER.dump_python(event, mode="json")
    return item


def decode_event(item: Mapping[str, Any]) -> AgentStreamEvent | None:
    """The ``AgentStreamEvent`` of a stream item, or ``None`` for the ``agent_run_result`` item."""
    if item.get("event_kind") == RUN_RESULT_KIND:
        return None
    return _EVENT_ADAPTER.validate_python(item)


def is_unit_event(event: object) -> bool:
    """Whether the model produces ``event`` inside a request's step (the rest pydantic-ai derives
    in the run's body from the responses, recorded or not)."""
    return isinstance(event, _UNIT_EVENTS)


class EventWriter:
    """Appends one agent run's events to the durable stream ``key`` of the durable run."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._counts: dict[str, int] = {}

    async def _append(self, ctx: RunContext, write_id: str, item: dict[str, Any]) -> None:
        if ctx.replay_only or Capability.STREAMS not in ctx.store.capabilities:
            return  # a replay check writes nothing; a store without streams keeps no events
        store, lease, text = ctx.store, ctx.lease, _codec.dumps(item)
        # None: the stream was closed by the workflow itself; its readers have ended anyway.
        await ctx.write(lambda: store.append_stream(lease, self.key, text, write_id=write_id))

    async def unit_event(self, ctx: RunContext, step_key: str, index: int, event: AgentStreamEvent) -> None:
        """The ``index``-th event of the model response streamed by step ``step_key``."""
        await self._append(ctx, f"{step_key}/{index}", encode_event(event))

    async def run_event(self, ctx: RunContext, after: str, event: AgentStreamEvent) -> None:
        """An event of the run's body, the last model request step being ``after``."""
        kind = str(getattr(event, "event_kind", type(event).__name__))
        call_id = getattr(event, "tool_call_id", None)
        if isinstance(call_id, str) and call_id:
            write_id = f"{after}/{kind}({call_id})"
        else:
            base = f"{after}/{kind}"
            n = self._counts.get(base, 0)
            self._counts[base] = n + 1
            write_id = f"{base}#{n}"
        await self._append(ctx, write_id, encode_event(event))

    async def run_result(self, ctx: RunContext, agent_run_id: str, output: Any) -> None:
        item = {"event_kind": RUN_RESULT_KIND, "output": to_jsonable_python(output, fallback=repr)}
        await self._append(ctx, f"{agent_run_id}/{RUN_RESULT_KIND}", item)
