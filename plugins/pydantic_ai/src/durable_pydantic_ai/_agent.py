"""``DurableAgent``: an existing pydantic-ai agent whose runs are durable runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar, Union
from weakref import WeakKeyDictionary

from pydantic import TypeAdapter
from pydantic_ai import Agent, RunContext
from pydantic_ai.agent import AbstractAgent, EventStreamHandler
from pydantic_ai.capabilities import AbstractCapability, RequestInput
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, UserContent
from pydantic_ai.models import Model
from pydantic_ai.output import NativeOutput, PromptedOutput, TextOutput, ToolOutput
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, Tool
from pydantic_ai.toolsets import FunctionToolset

from durable import TaskFunction, Workflow, WorkflowFunction
from durable.context import current_run
from durable.errors import ConfigurationError
from durable_pydantic_ai._capability import DurableCapability, ResumeToken, escape_key_part
from durable_pydantic_ai._config import TaskConfig, resolve

__all__ = ["ApprovalHandler", "DurableAgent"]

OutputT = TypeVar("OutputT")

ApprovalHandler = Callable[
    [RunContext[Any], DeferredToolRequests, ResumeToken], Awaitable[DeferredToolResults | None]
]
"""Called once per approval wait (its answer is journaled): answer at once, or hand the token to
whoever decides and return ``None`` to wait for ``wf.complete(token.run_id, token.signal, ...)``."""

_PROMPT_ADAPTER: TypeAdapter[str | list[UserContent] | None] = TypeAdapter(str | list[UserContent] | None)

# Arguments of agent.run that cannot be part of a durable run's stored inputs (objects, callables):
# they reach the run's body through this context variable, which the run's task inherits.
_CALL: ContextVar[_Call | None] = ContextVar("durable_pydantic_ai_call", default=None)


@dataclass
class _Call:
    agent: DurableAgent[Any]
    prompt: str | Sequence[UserContent] | None
    message_history: Sequence[ModelMessage] | None
    output_type: Any
    event_stream_handler: EventStreamHandler[Any] | None
    capabilities: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


def _output_data_type(spec: Any) -> Any:
    """The Python type of ``result.output`` for an output spec, to rebuild it from JSON."""
    if isinstance(spec, ToolOutput):
        return _output_data_type(spec.output)
    if isinstance(spec, NativeOutput | PromptedOutput):
        return _output_data_type(spec.outputs)
    if isinstance(spec, TextOutput):
        return str
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        members = tuple(_output_data_type(item) for item in spec)
        return members[0] if len(members) == 1 else Union[members]  # noqa: UP007 - built at runtime
    if callable(spec) and not isinstance(spec, type) and getattr(spec, "__origin__", None) is None:
        # An output function: its return annotation is the output type.
        import inspect

        annotation = inspect.signature(spec).return_annotation
        return Any if annotation is inspect.Signature.empty else annotation
    return spec


class DurableAgent(Generic[OutputT]):
    """Wraps an agent so that each ``run`` is a durable run of ``wf``.

    Every model request, tool call and event-stream dispatch is its own step: after a crash, the
    same ``run_id`` replays the finished requests from the store (no model call is repeated) and
    re-executes only what had not finished. A finished run returns its stored result.

    Run ids: ``run_id=`` names the run; without it, inside an enclosing durable run the agent run
    is a child run with an id derived from the parent's (deterministic on replay), and outside
    one a fresh id is generated (so it cannot be resumed unless you pass one).

    Deferred tools (``requires_approval=True``, ``CallDeferred``) wait for durable signal
    ``approval_signal`` (``wf.complete(run_id, "approval", {"approvals": {call_id: True}})``);
    pass ``handle_deferred=False`` to end the run with ``DeferredToolRequests`` instead.
    """

    def __init__(
        self,
        agent: AbstractAgent[Any, OutputT],
        wf: Workflow,
        *,
        name: str | None = None,
        model_task_config: TaskConfig | None = None,
        tool_task_config: TaskConfig | None = None,
        mcp_task_config: TaskConfig | None = None,
        event_stream_handler_task_config: TaskConfig | None = None,
        event_stream_handler: EventStreamHandler[Any] | None = None,
        models: Mapping[str, Model] | None = None,
        approval_signal: str = "approval",
        on_approval_request: ApprovalHandler | None = None,
        handle_deferred: bool = True,
    ) -> None:
        agent_name = name or agent.name
        if not agent_name:
            raise ConfigurationError(
                "DurableAgent needs a name: it identifies the agent's runs and persisted step names, so two "
                "agents must not share one. Pass Agent(..., name='...') or "
                "DurableAgent(agent, wf, name='...')"
            )
        if not agent_name.isprintable():
            raise ConfigurationError(f"DurableAgent name {agent_name!r} must be printable")
        self.wrapped = agent
        self.workflow = wf
        self.name = agent_name
        self._capability_options: dict[str, Any] = {
            "name": agent_name,
            "model_task_config": model_task_config,
            "tool_task_config": tool_task_config,
            "mcp_task_config": mcp_task_config,
            "event_stream_handler_task_config": event_stream_handler_task_config,
            "models": models,
        }
        # Built once so configuration errors surface here rather than in the first run.
        DurableCapability(wf, event_stream_handler=event_stream_handler, **self._capability_options)
        self._event_stream_handler = event_stream_handler
        self.approval_signal = approval_signal
        self._on_approval_request = on_approval_request
        self._handle_deferred = handle_deferred
        self._adapters: dict[Any, TypeAdapter[Any]] = {}
        self.workflow_name = f"pydantic_ai.{escape_key_part(agent_name)}"
        self._run_workflow = _register(self)
        tool_config = resolve(tool_task_config, wf.default_retries, wf.default_backoff)
        self._tool_call_task: TaskFunction[[str, dict[str, Any]], Any] = wf.task(
            name=f"{escape_key_part(agent_name)}.tool_call",
            retries=tool_config.retries,
            backoff=tool_config.backoff,
            retry_on=tool_config.retry_on,
            timeout=tool_config.timeout,
        )(self._run_tool)

    # -- running -----------------------------------------------------------------------------

    async def run(
        self,
        user_prompt: str | Sequence[UserContent] | None = None,
        *,
        run_id: str | None = None,
        message_history: Sequence[ModelMessage] | None = None,
        output_type: Any = None,
        event_stream_handler: EventStreamHandler[Any] | None = None,
        capabilities: Sequence[AbstractCapability[Any]] | None = None,
        **kwargs: Any,
    ) -> AgentRunResult[Any]:
        """Run the agent as durable run ``run_id`` (or resume it, or return its stored result).

        Other keyword arguments (``deps``, ``model_settings``, ``usage_limits``, ...) go to the
        agent's ``run`` unchanged; they are not stored, so pass them again when resuming.
        """
        for unsupported in ("toolsets", "conversation", "cancellation_token"):
            if kwargs.get(unsupported) is not None:
                raise ConfigurationError(
                    f"DurableAgent.run does not take {unsupported}=: it would run outside the run's journal"
                )
        inputs = {
            "prompt": _PROMPT_ADAPTER.dump_python(
                list(user_prompt)
                if user_prompt is not None and not isinstance(user_prompt, str)
                else user_prompt,
                mode="json",
            ),
            "message_history": None
            if message_history is None
            else ModelMessagesTypeAdapter.dump_python(list(message_history), mode="json"),
        }
        call = _Call(
            agent=self,
            prompt=user_prompt,
            message_history=message_history,
            output_type=output_type,
            event_stream_handler=event_stream_handler,
            capabilities=list(capabilities or ()),
            kwargs=kwargs,
        )
        if run_id is None and current_run() is None:
            run_id = f"{self.name}-{uuid.uuid4().hex}"
        token = _CALL.set(call)
        try:
            data = await self._run_workflow.call(run_id, (), inputs)
        finally:
            _CALL.reset(token)
        result: AgentRunResult[Any] = self._result_adapter(output_type).validate_python(data)
        return result

    def run_sync(
        self, user_prompt: str | Sequence[UserContent] | None = None, **kwargs: Any
    ) -> AgentRunResult[Any]:
        """``run`` in a new event loop (not from inside one)."""
        return asyncio.run(self.run(user_prompt, **kwargs))

    def run_id_for_new_run(self) -> str:
        return f"{self.name}-{uuid.uuid4().hex}"

    async def signal(self, name: str, *, timeout: float | None = None, poll: float | None = None) -> Any:
        """``wf.signal(name)`` of the agent's Workflow: wait durably for external input (a human
        approval) inside a durable run. ``poll`` is accepted for python-durable 0.2 code and ignored
        (see ``Workflow.signal``)."""
        return await self.workflow.signal(name, timeout=timeout, poll=poll)

    async def approve(
        self,
        run_id: str,
        approvals: Mapping[str, bool | Any] | None = None,
        *,
        calls: Mapping[str, Any] | None = None,
        delivery_id: str = "",
    ) -> bool:
        """Answer run ``run_id``'s pending deferred tool calls (``{tool_call_id: True/False}``)."""
        results = DeferredToolResults(approvals=dict(approvals or {}), calls=dict(calls or {}))
        payload = TypeAdapter(DeferredToolResults).dump_python(results, mode="json")
        return await self.workflow.complete(run_id, self.approval_signal, payload, delivery_id=delivery_id)

    async def resolve(self, token: ResumeToken | str, results: DeferredToolResults) -> bool:
        """Answer the wait that handed out ``token``."""
        parsed = ResumeToken.parse(token) if isinstance(token, str) else token
        payload = TypeAdapter(DeferredToolResults).dump_python(results, mode="json")
        return await self.workflow.complete(
            parsed.run_id, parsed.signal, payload, delivery_id=parsed.delivery_id
        )

    def run_stream(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ConfigurationError(
            "DurableAgent.run_stream is not durable: a stream handed to the caller cannot be replayed. "
            "Use DurableAgent.run(..., event_stream_handler=...) to receive the events durably "
            "(each model request is still one step, and replayed steps do not deliver their events again)"
        )

    def iter(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ConfigurationError(
            "DurableAgent.iter is not durable: the caller would drive the graph outside the run's journal. "
            "Use DurableAgent.run, or Agent(..., capabilities=[DurableCapability(wf)]).iter() inside your "
            "own @wf.workflow"
        )

    # -- tools -------------------------------------------------------------------------------

    def _agent(self) -> Agent[Any, Any]:
        if not isinstance(self.wrapped, Agent):
            raise ConfigurationError(
                f"{type(self.wrapped).__name__} has no tool decorators; register tools on it"
            )
        return self.wrapped

    def tool(self, *args: Any, **kwargs: Any) -> Any:
        """``agent.tool`` of the wrapped agent: the tool's calls are steps of the durable run.

        Called with a tool's name, ``await durable.tool(tool_name, tool_args, step_id=None)`` is
        python-durable 0.2's durable tool call: it runs the agent's tool ``tool_name`` (one that
        takes no ``RunContext``) with the arguments ``tool_args`` as a checkpointed step of the
        current run, retried as ``tool_task_config`` says; outside a run it just calls the tool.
        """
        if (args and isinstance(args[0], str)) or "tool_name" in kwargs:
            return self._call_tool(*args, **kwargs)
        return self._agent().tool(*args, **kwargs)

    async def _call_tool(
        self, tool_name: str, tool_args: Mapping[str, Any] | None = None, *, step_id: str | None = None
    ) -> Any:
        self._find_tool(tool_name)  # an unknown tool fails here, not as a failed (and retried) step
        arguments = dict(tool_args or {})
        if step_id is None:
            return await self._tool_call_task(tool_name, arguments)
        return await self._tool_call_task.with_step_id(step_id)(tool_name, arguments)

    async def _run_tool(self, tool_name: str, tool_args: dict[str, Any]) -> Any:
        schema = self._find_tool(tool_name).function_schema
        # Validated as pydantic-ai validates a model's tool call; no RunContext exists outside one.
        return await schema.call(schema.validator.validate_python(tool_args), None)  # type: ignore[arg-type]

    def _find_tool(self, tool_name: str) -> Tool[Any]:
        available: list[str] = []
        for toolset in self.wrapped.toolsets:
            if isinstance(toolset, FunctionToolset):
                tool = toolset.tools.get(tool_name)
                if tool is not None:
                    if tool.function_schema.takes_ctx:
                        raise ConfigurationError(
                            f"DurableAgent {self.name!r}: tool {tool_name!r} takes a RunContext, which "
                            "exists only inside an agent run; let the model call it through DurableAgent.run"
                        )
                    return tool
                available += toolset.tools
        raise ConfigurationError(
            f"DurableAgent {self.name!r} has no function tool {tool_name!r} "
            f"(available: {', '.join(sorted(available)) or 'none'})"
        )

    def tool_plain(self, *args: Any, **kwargs: Any) -> Any:
        """``agent.tool_plain`` of the wrapped agent."""
        return self._agent().tool_plain(*args, **kwargs)

    # -- internals ---------------------------------------------------------------------------

    def _result_adapter(self, output_type: Any) -> TypeAdapter[Any]:
        spec = self.wrapped.output_type if output_type is None else output_type
        key = id(spec)
        adapter = self._adapters.get(key)
        if adapter is None:
            data_type = _output_data_type(spec)
            adapter = TypeAdapter(AgentRunResult[data_type])  # type: ignore[valid-type]
            self._adapters[key] = adapter
        return adapter

    def _capabilities(self, call: _Call, pydantic_run_id: str) -> list[AbstractCapability[Any]]:
        handler = call.event_stream_handler or self._event_stream_handler
        capabilities: list[AbstractCapability[Any]] = list(call.capabilities)
        if self._handle_deferred:
            capabilities.append(RequestInput(ask=self._ask, name=self.approval_signal))
        capabilities.append(
            DurableCapability(
                self.workflow,
                event_stream_handler=handler,
                pydantic_run_id=pydantic_run_id,
                **self._capability_options,
            )
        )
        return capabilities

    async def _ask(
        self, ctx: RunContext[Any], requests: DeferredToolRequests, token: str
    ) -> DeferredToolResults | None:
        if self._on_approval_request is None:
            return None
        return await self._on_approval_request(ctx, requests, ResumeToken.parse(token))

    async def _execute(self, call: _Call | None, prompt: Any, message_history: Any) -> Any:
        ctx = current_run()
        assert ctx is not None
        if call is None:
            # Resumed from its stored inputs (a worker, wf.resume): only the JSON arguments are known.
            call = _Call(
                agent=self,
                prompt=_PROMPT_ADAPTER.validate_python(prompt),
                message_history=None
                if message_history is None
                else ModelMessagesTypeAdapter.validate_python(message_history),
                output_type=None,
                event_stream_handler=None,
            )
        kwargs = dict(call.kwargs)
        if call.output_type is not None:
            kwargs["output_type"] = call.output_type
        result = await self.wrapped.run(
            call.prompt,
            message_history=call.message_history,
            capabilities=self._capabilities(call, ctx.run_id),
            **kwargs,
        )
        return self._result_adapter(call.output_type).dump_python(result, mode="json")

    def __repr__(self) -> str:
        return f"<DurableAgent {self.name!r} on {self.workflow!r}>"


@dataclass
class _Registration:
    function: WorkflowFunction[Any, Any]
    agent: DurableAgent[Any]


_REGISTRY: WeakKeyDictionary[Workflow, dict[str, _Registration]] = WeakKeyDictionary()


def _register(agent: DurableAgent[Any]) -> WorkflowFunction[Any, Any]:
    """The durable workflow that runs ``agent``: one per (Workflow, agent name).

    A process may build its DurableAgent again (tests, a reloaded module): the newest one then
    serves runs resumed from stored inputs (workers, ``wf.resume``), while a ``run`` call always
    executes the agent it was called on.
    """
    by_name = _REGISTRY.setdefault(agent.workflow, {})
    existing = by_name.get(agent.workflow_name)
    if existing is not None:
        existing.agent = agent
        return existing.function

    async def run_agent(prompt: Any = None, message_history: Any = None) -> Any:
        call = _CALL.get()
        target = call.agent if call is not None else registration.agent
        return await target._execute(call, prompt, message_history)

    function = agent.workflow.workflow(name=agent.workflow_name)(run_agent)
    registration = _Registration(function, agent)
    by_name[agent.workflow_name] = registration
    return function
