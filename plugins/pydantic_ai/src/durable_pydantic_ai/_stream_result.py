"""What ``DurableAgent.run_stream`` hands its caller: the run's events as they happen, and its result.

The run executes in a task of the caller's process; its events reach ``LiveEvents`` from two places:
a model request being executed delivers each event from inside its step as the model produces it,
and a model request replayed from the journal (finished before a crash) is re-emitted at once,
each part whole, as pydantic-ai replays it; tool calls and results come from the run's body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_ai.messages import (
    AgentStreamEvent,
    ModelMessage,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
    ToolCallPartDelta,
)
from pydantic_ai.run import AgentRunResult
from pydantic_ai.usage import RunUsage

__all__ = ["DurableStreamedRunResult", "LiveEvents"]

OutputT = TypeVar("OutputT")


class LiveEvents:
    """The events of one run for its ``run_stream`` caller, kept so that every reader sees all of them.

    A model request's step may be attempted more than once in a process (a retried failure): its
    events are keyed by step and index like the durable stream's, so an attempt delivers only what
    the ones before it had not.
    """

    def __init__(self) -> None:
        self.events: list[AgentStreamEvent] = []
        self.done = False
        self.output_tools: set[str] = set()
        """Names of the output tools of the model requests seen (structured output)."""
        self._delivered: dict[str, int] = {}
        self._changed = asyncio.Event()

    def put(self, event: AgentStreamEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def put_unit_event(self, step_key: str, index: int, event: AgentStreamEvent) -> None:
        if index < self._delivered.get(step_key, 0):
            return
        self._delivered[step_key] = index + 1
        self.put(event)

    def close(self) -> None:
        self.done = True
        self._changed.set()

    async def follow(self) -> AsyncIterator[AgentStreamEvent]:
        at = 0
        while True:
            while at < len(self.events):
                yield self.events[at]
                at += 1
            if self.done:
                return
            self._changed.clear()
            if at == len(self.events) and not self.done:
                await self._changed.wait()


class DurableStreamedRunResult(Generic[OutputT]):
    """The streamed run of ``async with durable_agent.run_stream(...) as result``.

    Like pydantic-ai's ``StreamedRunResult``: ``stream_text``, ``stream_output`` and
    ``stream_events`` yield while the model produces; ``get_output``, ``usage``, ``all_messages``
    and ``new_messages`` give the finished run. Unlike it, the run goes on to its end (the tool
    calls after a final output included), and it is a durable run: ``run_id`` names it, and a
    reader in another process follows its events with ``wf.read_stream(run_id, "events")``.
    """

    def __init__(
        self,
        run_id: str | None,
        live: LiveEvents,
        task: asyncio.Task[AgentRunResult[Any]],
        output_adapter: Callable[[], TypeAdapter[Any] | None],
    ) -> None:
        self.run_id = run_id
        """The durable run's id (``None`` for a child run, whose id its parent derives)."""
        self._live = live
        self._task = task
        self._output_adapter = output_adapter

    @property
    def is_complete(self) -> bool:
        return self._task.done()

    async def stream_events(self) -> AsyncIterator[AgentStreamEvent]:
        """Every event of the run, from its first (replayed ones at once) to its last."""
        async for event in self._live.follow():
            yield event

    async def stream_text(
        self, *, delta: bool = False, debounce_by: float | None = None
    ) -> AsyncIterator[str]:
        """The text of each model response as it grows (``delta=True``: the new text only). A new
        response starts again from its own text. ``debounce_by`` is accepted and ignored: each
        token is yielded as it arrives."""
        text: dict[int, str] = {}
        async for event in self._live.follow():
            piece = _text_of(event)
            if isinstance(event, PartStartEvent) and event.index == 0:
                text = {}
            if piece is None:
                continue
            index = event.index  # type: ignore[union-attr]
            text[index] = text.get(index, "") + piece
            if piece:
                yield piece if delta else "".join(text[i] for i in sorted(text))

    async def stream_output(self, *, debounce_by: float | None = None) -> AsyncIterator[OutputT]:
        """The output as it grows: the text for text output; for structured output, each valid
        partial value of the output tool's arguments (pydantic's partial JSON validation)."""
        adapter = self._output_adapter()
        if adapter is None:
            async for text in self.stream_text():
                yield text  # type: ignore[misc]
            return
        args: dict[int, str] = {}
        output_part: int | None = None
        last: Any = None
        async for event in self._live.follow():
            if isinstance(event, PartStartEvent):
                if event.index == 0:
                    args, output_part = {}, None
                if isinstance(event.part, ToolCallPart) and event.part.tool_name in self._live.output_tools:
                    output_part = event.index
                    start = event.part.args
                    args[event.index] = start if isinstance(start, str) else json.dumps(start or {})
            elif (
                isinstance(event, PartDeltaEvent)
                and isinstance(event.delta, ToolCallPartDelta)
                and event.index == output_part
            ):
                delta = event.delta.args_delta
                args[event.index] = args.get(event.index, "") + (
                    delta if isinstance(delta, str) else json.dumps(delta)
                )
            else:
                continue
            if output_part is None or not args.get(output_part):
                continue
            try:
                value = adapter.validate_json(
                    args[output_part], experimental_allow_partial="trailing-strings"
                )
            except ValidationError:
                continue
            if value != last:
                last = value
                yield value

    async def result(self) -> AgentRunResult[OutputT]:
        """The finished run (waits for it)."""
        return await asyncio.shield(self._task)

    async def get_output(self) -> OutputT:
        """The run's output (waits for the run to end)."""
        return (await self.result()).output

    def _finished(self, what: str) -> AgentRunResult[OutputT]:
        if not self._task.done():
            raise RuntimeError(f"{what} is known once the run ended: await result.get_output() first")
        return self._task.result()

    @property
    def usage(self) -> RunUsage:
        return self._finished("usage").usage

    def all_messages(self) -> list[ModelMessage]:
        return self._finished("all_messages()").all_messages()

    def new_messages(self) -> list[ModelMessage]:
        return self._finished("new_messages()").new_messages()


def _text_of(event: AgentStreamEvent) -> str | None:
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    return None
