"""``@durable_tool`` and ``@durable_pipeline``: the README's decorators, on durable's tasks and workflows."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from durable import Workflow, WorkflowFunction
from durable.backoff import BackoffStrategy
from durable.errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic_ai.tools import Tool
    from pydantic_ai.toolsets import AbstractToolset

__all__ = ["durable_pipeline", "durable_tool", "find_plain_tool", "run_plain_tool"]

P = ParamSpec("P")
R = TypeVar("R")


def durable_tool(
    wf: Workflow,
    *,
    name: str | None = None,
    retries: int | None = None,
    backoff: BackoffStrategy | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Make an async function a checkpointed, retried step that can also be a pydantic-ai tool.

    Inside a durable run each call is a task step (``step_id=`` names it, as for ``@wf.task``);
    outside one it runs with retries only. The result is a real ``async def`` function with the
    original signature, so pydantic-ai builds the tool schema from it and awaits it directly.
    Registered on an agent run by ``DurableAgent``, it is not wrapped in a second tool step.
    """

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        task = wf.task(
            name=name or fn.__name__, retries=retries, backoff=backoff, retry_on=retry_on, timeout=timeout
        )(fn)

        @functools.wraps(fn)
        async def tool(*args: P.args, **kwargs: P.kwargs) -> R:
            return await task(*args, **kwargs)

        tool.__durable_task__ = task  # type: ignore[attr-defined]
        return tool

    return decorate


def durable_pipeline(
    wf: Workflow, *, id: str | None = None, name: str | None = None, timeout: float | None = None
) -> Callable[[Callable[P, Awaitable[R]]], WorkflowFunction[P, R]]:
    """``@wf.workflow(id=...)`` under the seed README's name: a multi-agent pipeline whose agents,
    tasks and tools are steps (agent runs started inside it become child runs)."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> WorkflowFunction[P, R]:
        return wf.workflow(id=id, name=name, timeout=timeout)(fn)

    return decorate


def find_plain_tool(agent_name: str, toolsets: Sequence[AbstractToolset[Any]], tool_name: str) -> Tool[Any]:
    """The agent's function tool ``tool_name``, for ``DurableAgent.tool(tool_name, tool_args)``
    (python-durable 0.2's durable tool call): one that takes no ``RunContext``."""
    from pydantic_ai.toolsets import FunctionToolset

    available: list[str] = []
    for toolset in toolsets:
        if isinstance(toolset, FunctionToolset):
            tool = toolset.tools.get(tool_name)
            if tool is not None:
                if tool.function_schema.takes_ctx:
                    raise ConfigurationError(
                        f"DurableAgent {agent_name!r}: tool {tool_name!r} takes a RunContext, which "
                        "exists only inside an agent run; let the model call it through DurableAgent.run"
                    )
                return tool
            available += toolset.tools
    raise ConfigurationError(
        f"DurableAgent {agent_name!r} has no function tool {tool_name!r} "
        f"(available: {', '.join(sorted(available)) or 'none'})"
    )


async def run_plain_tool(tool: Tool[Any], tool_args: dict[str, Any]) -> Any:
    schema = tool.function_schema
    # Validated as pydantic-ai validates a model's tool call; no RunContext exists outside one.
    return await schema.call(schema.validator.validate_python(tool_args), None)  # type: ignore[arg-type]
