"""One durable workflow per (``Workflow``, agent name): the workflow that runs a ``DurableAgent``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from durable import Workflow, WorkflowFunction
from durable.errors import ConfigurationError

if TYPE_CHECKING:
    from durable_pydantic_ai._agent import DurableAgent

__all__ = ["register"]

Body = Callable[[Any, Any, Any], Awaitable[Any]]


@dataclass
class _Registration:
    function: WorkflowFunction[Any, Any]
    agent: DurableAgent[Any, Any]
    body: Body


_REGISTRY: WeakKeyDictionary[Workflow, dict[str, _Registration]] = WeakKeyDictionary()


def _describe(agent: DurableAgent[Any, Any]) -> str:
    wrapped = agent.wrapped
    model = getattr(wrapped.model, "model_id", wrapped.model)
    return f"{type(wrapped).__name__} object at {id(wrapped):#x} (model {model!r})"


def register(
    agent: DurableAgent[Any, Any], body: Body, *, workflow_name: str | None = None
) -> WorkflowFunction[Any, Any]:
    """The durable workflow that runs ``agent``'s runs, those it starts and those resumed from the
    store (workers, ``wf.resume``).

    A name stands for one agent on a Workflow: a second DurableAgent under the name is accepted
    only around the same pydantic-ai agent object (a module built again, a test), and then serves
    the runs; another agent is refused, or it would finish runs the first one started.
    ``workflow_name``: another name its runs were started under (an old agent name in ``aliases``).
    """
    name = workflow_name or agent.workflow_name
    by_name = _REGISTRY.setdefault(agent.workflow, {})
    existing = by_name.get(name)
    if existing is not None:
        if existing.agent.wrapped is not agent.wrapped:
            raise ConfigurationError(
                f"{agent.workflow!r} already has a DurableAgent named {agent.name!r}, wrapping "
                f"{_describe(existing.agent)}; another agent, {_describe(agent)}, cannot take the same name: "
                "it would finish the runs the first one started. Give it another name "
                "(DurableAgent(agent, wf, name=...)), or use another Workflow"
            )
        existing.agent, existing.body = agent, body
        return existing.function

    async def run_agent(prompt: Any = None, message_history: Any = None, options: Any = None) -> Any:
        return await registration.body(prompt, message_history, options)

    function = agent.workflow.workflow(name=name)(run_agent)
    registration = _Registration(function, agent, body)
    by_name[name] = registration
    return function
