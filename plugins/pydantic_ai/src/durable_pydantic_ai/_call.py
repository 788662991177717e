"""What one call of ``run``/``start``/``run_stream`` hands the durable run's body.

The data goes into the run's stored inputs (prompt, message history, recorded options); what is
not data (deps, handlers, capabilities, the ``run_stream`` channel) reaches the body through a
context variable, in the caller's process only: a process resuming the run from the store has
only the recorded options (``_inputs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai.agent import EventStreamHandler
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, UserContent

from durable.errors import ConfigurationError
from durable_pydantic_ai._stream_result import LiveEvents

__all__ = ["CALL", "PROMPT_ADAPTER", "Call", "refuse_unrecordable", "stored_inputs"]

PROMPT_ADAPTER: TypeAdapter[str | list[UserContent] | None] = TypeAdapter(str | list[UserContent] | None)


@dataclass
class Call:
    workflow_name: str
    inputs: dict[str, Any]
    """The run's stored inputs: prompt, message history and the recorded options."""
    kwargs: dict[str, Any]
    """The caller's own arguments for the wrapped agent's ``run`` (live objects included)."""
    output_spec: Any
    event_stream_handler: EventStreamHandler[Any] | None = None
    capabilities: list[Any] = field(default_factory=list)
    live: LiveEvents | None = None
    """The ``run_stream`` caller's channel."""


CALL: ContextVar[Call | None] = ContextVar("durable_pydantic_ai_call", default=None)


def refuse_unrecordable(agent_name: str, conversation: Any, cancellation_token: Any) -> None:
    if conversation is not None:
        raise ConfigurationError(
            f"DurableAgent {agent_name!r}: run(conversation=...) is not recorded with a run; pass its "
            "parts instead: message_history=, usage= and conversation_id="
        )
    if cancellation_token is not None:
        raise ConfigurationError(
            f"DurableAgent {agent_name!r}: a cancellation_token would stop the run outside its journal; "
            "cancel a durable run with wf.cancel(run_id) (it stays resumable)"
        )


def stored_inputs(
    user_prompt: str | Sequence[UserContent] | None,
    message_history: Sequence[ModelMessage] | None,
    options: dict[str, Any] | None,
) -> dict[str, Any]:
    prompt = (
        list(user_prompt) if user_prompt is not None and not isinstance(user_prompt, str) else user_prompt
    )
    return {
        "prompt": PROMPT_ADAPTER.dump_python(prompt, mode="json"),
        "message_history": None
        if message_history is None
        else ModelMessagesTypeAdapter.dump_python(list(message_history), mode="json"),
        "options": options or None,
    }
