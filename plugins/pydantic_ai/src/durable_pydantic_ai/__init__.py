"""Durable pydantic-ai agents: every model request, tool call and event dispatch is a checkpointed step.

    from durable import Workflow
    from durable.pydantic_ai import DurableAgent, TaskConfig

    wf = Workflow("my-app")
    durable_agent = DurableAgent(agent, wf, model_task_config=TaskConfig(retries=5))
    result = await durable_agent.run("...", run_id="ticket-42")   # resumes after a crash
    async with durable_agent.run_stream("...", run_id="ticket-43") as streamed:
        async for text in streamed.stream_text(delta=True): ...     # live, also in stream "events"

Registered under the ``durable`` entry-point group (``_plugin``); it implements no hooks
(pydantic-ai values are encoded with pydantic-ai's own type adapters inside each step).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from durable_pydantic_ai._agent import ApprovalHandler, DurableAgent
    from durable_pydantic_ai._capability import TOOL_CONFIG_KEY, DurableCapability, ResumeToken
    from durable_pydantic_ai._config import TaskConfig, default_non_retryable
    from durable_pydantic_ai._events import EVENTS_STREAM, RUN_RESULT_KIND, decode_event, encode_event
    from durable_pydantic_ai._inputs import DepsFactory, RunArgumentsMissing
    from durable_pydantic_ai._stream_result import DurableStreamedRunResult
    from durable_pydantic_ai._tools import durable_pipeline, durable_tool

__version__ = "0.3.0"

__all__ = [
    "EVENTS_STREAM",
    "RUN_RESULT_KIND",
    "TOOL_CONFIG_KEY",
    "ApprovalHandler",
    "DepsFactory",
    "DurableAgent",
    "DurableCapability",
    "DurableStreamedRunResult",
    "ResumeToken",
    "RunArgumentsMissing",
    "TaskConfig",
    "decode_event",
    "default_non_retryable",
    "durable_pipeline",
    "durable_tool",
    "encode_event",
]

# Imported on first use: the plugin loader imports this package for every Workflow(), and
# pydantic-ai takes about a second to import.
_WHERE = {
    "ApprovalHandler": "_agent",
    "DurableAgent": "_agent",
    "TOOL_CONFIG_KEY": "_capability",
    "DurableCapability": "_capability",
    "ResumeToken": "_capability",
    "DepsFactory": "_inputs",
    "DurableStreamedRunResult": "_stream_result",
    "EVENTS_STREAM": "_events",
    "RUN_RESULT_KIND": "_events",
    "decode_event": "_events",
    "encode_event": "_events",
    "RunArgumentsMissing": "_inputs",
    "TaskConfig": "_config",
    "default_non_retryable": "_config",
    "durable_pipeline": "_tools",
    "durable_tool": "_tools",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"durable_pydantic_ai.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'durable_pydantic_ai' has no attribute {name!r}")
